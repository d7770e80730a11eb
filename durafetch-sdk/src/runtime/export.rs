//! An export session inside the object: a snapshot or the changes since the client's cursor,
//! paged and flow-controlled, ending with the cursor the client now holds.

use std::collections::BTreeSet;
use std::rc::Rc;

use js_sys::{Array, Map, Object};
use wasm_bindgen::JsCast;
use worker::WebSocket;

use super::flow::{FlowSession, Hello, Outbox, SessionError};
use super::json_page;
use super::object_log::ObjectLog;
use super::sql_export::{until_no_open_transaction, SqlExport};
use super::storage::{get_many, RangeScan};
use super::value::{encode, key_text};
use crate::core::cursor::{settled, Cursor, ReadPlan};
use crate::core::keys::{is_reserved, log_key, parse_log_key, LOG_END, RESERVED_END, RESERVED_PREFIX};
use crate::core::page_writer::PageWriter;
use crate::core::pending_row::MAX_ROW_KEYS;
use crate::core::protocol::{Change, ChangeValue, ExportMode, ServerMessage, MAX_PAGE_CHANGES, PAGE_TARGET_BYTES};
use crate::core::storage_api::{ReadSizer, MAX_KEYS_PER_CALL, WHOLE_READ_ENTRIES};

/// Log rows read at a time by an incremental export. The keys of one read are held at once, so
/// this bounds them at 128,000 names.
const LOG_ROWS_PER_READ: usize = 128_000 / MAX_ROW_KEYS;

/// Serves an export session on the server end of the socket the object answered with.
pub(crate) async fn run(log: Rc<ObjectLog>, ws: WebSocket) {
    let mut session = match FlowSession::accept(&ws) {
        Ok(session) => session,
        Err(e) => {
            worker::console_error!("durafetch: cannot accept export socket: {e}");
            return;
        }
    };
    let outcome = match session.hello().await {
        Ok(hello) => export(&log, &hello, &mut session).await,
        Err(e) => Err(e),
    };
    session.finish(outcome);
}

/// Writes the export `hello` asks for to `out`: begin, pages, end.
pub(crate) async fn export(log: &ObjectLog, hello: &Hello, out: &mut impl Outbox) -> Result<(), SessionError> {
    match log.storage() {
        Ok(storage) => ExportSession { log, storage, pages: PageWriter::default() }.serve(hello, out).await,
        Err(_) => Err(SessionError::Server("the object's storage is gone".into())),
    }
}

struct ExportSession<'a> {
    log: &'a ObjectLog,
    storage: Object,
    pages: PageWriter,
}

impl ExportSession<'_> {
    async fn serve(mut self, hello: &Hello, session: &mut impl Outbox) -> Result<(), SessionError> {
        // Every read of SQL rows waits for the app's open transactions to end, this first one
        // included: a backup never holds a row that may still roll back.
        until_no_open_transaction(self.log).await?;
        let head = self.log.head().ok_or_else(|| SessionError::Server("change log not loaded".into()))?;
        let sql = self.log.sql.get().map(|sql| SqlExport::open(self.log, sql)).transpose()?;
        let sql_head = sql.as_ref().map_or(0, |sql| sql.head);
        // A SQL cursor from the future (a head `deleteAll` took away) starts over.
        let since = hello.since.filter(|_| hello.since_sql <= sql_head);
        let (from, sql_since, read_log) = match ReadPlan::choose(since, self.log.floor(), head) {
            ReadPlan::Snapshot => {
                // Writes made while the scan runs are in the log after `head`, or after the head
                // an open transaction started from: its rows appear only once it commits.
                let start = settled(head, self.log.oldest_open_transaction());
                session.send(&ServerMessage::Begin { mode: ExportMode::Snapshot, epoch: head.epoch })?;
                if let Some(sql) = &sql {
                    sql.send_refusals(session)?;
                }
                // Read in the same turn as the head: nothing written after it is in the read.
                let read_whole = self.send_whole_if_small(session).await?;
                if !read_whole {
                    // User keys are the two ranges either side of the reserved one.
                    self.send_range(session, None, Some(RESERVED_PREFIX)).await?;
                    self.send_range(session, Some(RESERVED_END), None).await?;
                }
                self.flush(session).await?;
                if let Some(sql) = &sql {
                    sql.send_tables(session).await?;
                }
                // One read saw the object as of `head`: no write can have come between, so
                // there is no log to read after it. Every SQL table went whole.
                (start, None, !read_whole)
            }
            ReadPlan::ChangesSince(since) => {
                session.send(&ServerMessage::Begin { mode: ExportMode::Changes, epoch: since.epoch })?;
                if let Some(sql) = &sql {
                    sql.send_refusals(session)?;
                }
                (since, Some(hello.since_sql), true)
            }
        };
        let cursor = if read_log {
            let cursor = self.send_changes_since(session, from).await?;
            self.flush(session).await?;
            cursor
        } else {
            from
        };
        // The SQL cursor is the head the session closed: a change made since, committed or not,
        // is in a later generation, which the next export sends.
        let sql_cursor = match (&sql, sql_since) {
            (Some(sql), Some(since)) => sql.send_changes_since(session, since).await?,
            (Some(sql), None) => sql.head,
            (None, _) => 0,
        };
        session.send(&ServerMessage::End { cursor, sql: sql_cursor })?;
        Ok(())
    }

    /// Sends every user key if the whole storage, durafetch's rows included, comes in one read of
    /// [`WHOLE_READ_ENTRIES`]: most objects are small, and one read costs the object a third of
    /// the two ranges and the log scan after them. Answers whether it did; a larger object is
    /// read range by range, and this read is dropped.
    async fn send_whole_if_small(&mut self, session: &mut impl Outbox) -> Result<bool, SessionError> {
        let mut scan = RangeScan::new(None, None);
        let page = scan.next_page(&self.storage, WHOLE_READ_ENTRIES).await?;
        if !scan.is_done() {
            return Ok(false);
        }
        let Some(page) = page else { return Ok(true) };
        let entries: Array =
            Array::from(&page).iter().filter(|entry| !Array::from(entry).get(0).as_string().is_some_and(|key| is_reserved(&key))).collect();
        self.send_entries(session, &entries).await?;
        Ok(true)
    }

    async fn send_range(&mut self, session: &mut impl Outbox, start: Option<&str>, end: Option<&str>) -> Result<(), SessionError> {
        let mut scan = RangeScan::new(start, end);
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        loop {
            // As for SQL rows: a key read while the app's transaction is open could see its
            // writes before they commit, or roll back.
            until_no_open_transaction(self.log).await?;
            let Some(page) = scan.next_page(&self.storage, sizer.limit()).await? else { break };
            let entries = Array::from(&page);
            let size = self.send_entries(session, &entries).await?;
            sizer.observe(entries.length() as usize, size);
        }
        Ok(())
    }

    /// Sends `[key, value]` entries: runs of plain-JSON values as pages the runtime writes
    /// itself ([`json_page`]), any other value through the exact encoder. Answers the size of
    /// what was sent, in characters.
    async fn send_entries(&mut self, session: &mut impl Outbox, entries: &Array) -> Result<usize, SessionError> {
        let mut size = 0;
        let mut at = 0;
        while at < entries.length() {
            let (page, next) = json_page::page(entries, at, MAX_PAGE_CHANGES, PAGE_TARGET_BYTES);
            if let Some(page) = page {
                size += page.length() as usize;
                session.send_page_text(&page).await?;
                at = next;
                continue;
            }
            let entry: Array = entries.get(at).unchecked_into();
            let before = self.pages.pushed_bytes();
            let (key, value) = (entry.get(0), entry.get(1));
            let change = match key_text(&key) {
                Ok(key) => Change { key, value: encode(&value) },
                // Such a key cannot be named faithfully: the file gets a row saying so.
                Err(why) => Change { key: key.as_string().unwrap_or_default(), value: ChangeValue::Unsupported(why) },
            };
            self.push(session, change).await?;
            size += self.pages.pushed_bytes() - before;
            at += 1;
        }
        Ok(size)
    }

    /// Sends the current state of every key a log row after `from` names; returns the cursor the
    /// client holds once it has applied them: the last row read, held back behind every
    /// transaction that was open during any of the reads (its rows may commit out of order).
    async fn send_changes_since(&mut self, session: &mut impl Outbox, from: Cursor) -> Result<Cursor, SessionError> {
        let mut last = from;
        let mut open: Option<Cursor> = None;
        let mut scan = RangeScan::new(Some(&log_key(from.next_seq())), Some(LOG_END));
        let mut sizer = ReadSizer::new(MAX_KEYS_PER_CALL);
        loop {
            open = open.into_iter().chain(self.log.oldest_open_transaction()).min();
            until_no_open_transaction(self.log).await?;
            let Some(rows) = scan.next_page(&self.storage, LOG_ROWS_PER_READ).await? else { break };
            let mut keys = BTreeSet::new();
            for row in rows.entries() {
                let row: Array = row.map_err(worker::Error::from)?.unchecked_into();
                let Some(at) = row.get(0).as_string().and_then(|k| parse_log_key(&k)) else { continue };
                if at.epoch != from.epoch {
                    return Err(SessionError::Server("the object was cleared (delete_all) during the export; pull again".into()));
                }
                last = at;
                if let Some(names) = row.get(1).dyn_ref::<Array>() {
                    keys.extend(names.iter().filter_map(|k| k.as_string()));
                }
            }
            let keys: Vec<String> = keys.into_iter().collect();
            let mut rest = keys.as_slice();
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(sizer.limit().min(rest.len()));
                rest = after;
                let before = self.pages.pushed_bytes();
                until_no_open_transaction(self.log).await?;
                let values: Map = get_many(&self.storage, chunk).await?;
                for key in chunk {
                    let value = values.get(&key.into());
                    let value = if value.is_undefined() && !values.has(&key.into()) { ChangeValue::Deleted } else { encode(&value) };
                    self.push(session, Change { key: key.clone(), value }).await?;
                }
                sizer.observe(chunk.len(), self.pages.pushed_bytes() - before);
            }
        }
        Ok(settled(last, open))
    }

    async fn push(&mut self, session: &mut impl Outbox, change: Change) -> Result<(), SessionError> {
        self.pages.push(change);
        if self.pages.is_full() {
            self.flush(session).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, session: &mut impl Outbox) -> Result<(), SessionError> {
        match self.pages.take() {
            Some(page) => session.send_page(&page).await,
            None => Ok(()),
        }
    }
}
