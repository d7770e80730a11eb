//! One export session inside an object: a snapshot or the changes since the client's cursor,
//! paged and flow-controlled, ending with the cursor the client now holds.

use std::collections::BTreeSet;
use std::rc::Rc;

use js_sys::{Array, Map};
use wasm_bindgen::JsCast;
use worker::WebSocket;

use super::flow::{FlowSession, SessionError};
use super::object::ObjectLog;
use super::storage::{get_many, RangeScan};
use super::value::encode;
use crate::core::cursor::{settled, Cursor, ReadPlan};
use crate::core::keys::{log_key, parse_log_key, LOG_END, RESERVED_END, RESERVED_PREFIX};
use crate::core::protocol::{Change, ChangeValue, ExportMode, PageWriter, ReadSizer, ServerMessage, MAX_PAGE_CHANGES, MAX_PAGE_KEYS};

pub(crate) async fn run(log: Rc<ObjectLog>, ws: WebSocket) {
    let mut session = match FlowSession::accept(&ws) {
        Ok(session) => session,
        Err(e) => {
            worker::console_error!("durafetch: cannot accept export socket: {e}");
            return;
        }
    };
    let outcome = ExportSession { log: &log, pages: PageWriter::default() }.serve(&mut session).await;
    session.finish(outcome);
}

struct ExportSession<'a> {
    log: &'a ObjectLog,
    pages: PageWriter,
}

impl ExportSession<'_> {
    async fn serve(mut self, session: &mut FlowSession<'_>) -> Result<(), SessionError> {
        let hello = session.hello().await?;
        let head = self.log.head().ok_or_else(|| SessionError::Server("change log not loaded".into()))?;
        let from = match ReadPlan::choose(hello.since, self.log.floor(), head) {
            ReadPlan::Snapshot => {
                // Writes made while the scan runs are in the log after `head`, or after the head
                // an open transaction started from: its rows appear only once it commits.
                let start = settled(head, self.log.oldest_open_transaction());
                session.send(&ServerMessage::Begin { mode: ExportMode::Snapshot, epoch: head.epoch })?;
                // User keys are the two ranges either side of the reserved one.
                self.send_range(session, None, Some(RESERVED_PREFIX)).await?;
                self.send_range(session, Some(RESERVED_END), None).await?;
                start
            }
            ReadPlan::ChangesSince(since) => {
                session.send(&ServerMessage::Begin { mode: ExportMode::Changes, epoch: since.epoch })?;
                since
            }
        };
        let cursor = self.send_changes_since(session, from).await?;
        self.flush(session).await?;
        session.send(&ServerMessage::End { cursor })?;
        Ok(())
    }

    async fn send_range(&mut self, session: &mut FlowSession<'_>, start: Option<&str>, end: Option<&str>) -> Result<(), SessionError> {
        let mut scan = RangeScan::new(start, end);
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        while let Some(page) = scan.next_page(&self.log.storage, sizer.limit()).await? {
            let before = self.pages.pushed_bytes();
            // One call from JS per entry; an entries iterator would cost three crossings each.
            let mut changes = Vec::with_capacity(page.size() as usize);
            page.for_each(&mut |value, key| changes.push(Change { key: key.as_string().unwrap_or_default(), value: encode(&value) }));
            for change in changes {
                self.push(session, change).await?;
            }
            sizer.observe(page.size() as usize, self.pages.pushed_bytes() - before);
        }
        Ok(())
    }

    /// Sends the current state of every key a log row after `from` names; returns the cursor the
    /// client holds once it has applied them: the last row read, held back behind every
    /// transaction that was open during any of the reads (its rows may commit out of order).
    async fn send_changes_since(&mut self, session: &mut FlowSession<'_>, from: Cursor) -> Result<Cursor, SessionError> {
        let mut last = from;
        let mut open: Option<Cursor> = None;
        let mut scan = RangeScan::new(Some(&log_key(from.next_seq())), Some(LOG_END));
        let mut sizer = ReadSizer::new(MAX_PAGE_KEYS);
        loop {
            open = open.into_iter().chain(self.log.oldest_open_transaction()).min();
            // Log rows are short lists of key names: they are read a full page at a time.
            let Some(rows) = scan.next_page(&self.log.storage, MAX_PAGE_CHANGES).await? else { break };
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
                let values: Map = get_many(&self.log.storage, chunk).await?;
                for key in chunk {
                    let value = values.get(&key.into());
                    let value = if value.is_undefined() && !values.has(&key.into()) {
                        ChangeValue::Deleted
                    } else {
                        encode(&value)
                    };
                    self.push(session, Change { key: key.clone(), value }).await?;
                }
                sizer.observe(chunk.len(), self.pages.pushed_bytes() - before);
            }
        }
        Ok(settled(last, open))
    }

    async fn push(&mut self, session: &mut FlowSession<'_>, change: Change) -> Result<(), SessionError> {
        self.pages.push(change);
        if self.pages.is_full() {
            self.flush(session).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, session: &mut FlowSession<'_>) -> Result<(), SessionError> {
        match self.pages.take() {
            Some(page) => session.send_page(&page).await,
            None => Ok(()),
        }
    }
}
