//! A restore session inside the object: the client's requests carried out one at a time, each
//! answered before the next is read. Keys are written and deleted through the object's own
//! hooked `put` and `delete`, at most 128 keys a call, so each call commits with its change-log
//! row as any write of the user's does; SQL statements go through the wrapped `exec`, so the
//! triggers record the rows and the registry hears of the object. What the mode forbids is
//! refused before anything is written.

use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{EventStream, WebSocket};

use super::flow::{self, SessionError};
use super::object_log::ObjectLog;
use super::sql_storage::SqlStorage;
use super::storage::RangeScan;
use super::value_decode::decode;
use crate::core::keys::{RESERVED_END, RESERVED_PREFIX};
use crate::core::protocol::{Change, ChangeValue, SqlPage};
use crate::core::restore_protocol::{ImportMode, ImportReply, ImportRequest, TableRows, LIST_KEYS_LIMIT};
use crate::core::sql_capture::{ident, TableShape};
use crate::core::sql_restore::{count_rows, insert_rows, is_schema_statement, rows_json};
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// Serves a restore session on the server end of the socket the object answered with.
pub(crate) async fn run(log: Rc<ObjectLog>, ws: WebSocket) {
    let events = match ws.accept().and_then(|()| ws.events()) {
        Ok(events) => events,
        Err(e) => {
            worker::console_error!("durafetch: cannot accept restore socket: {e}");
            return;
        }
    };
    let outcome = match log.storage() {
        Ok(storage) => Import { log: &log, ws: &ws, events, storage, tables: BTreeMap::new() }.serve().await,
        Err(_) => Err(SessionError::Server("the object's storage is gone".into())),
    };
    flow::close(&ws, outcome, |message| serde_json::to_string(&ImportReply::Error { message }).unwrap_or_default());
}

struct Import<'a> {
    log: &'a ObjectLog,
    ws: &'a WebSocket,
    events: EventStream<'a>,
    storage: Object,
    /// The object's user tables as they now are, read again after each schema change.
    tables: BTreeMap<String, TableShape>,
}

impl Import<'_> {
    async fn serve(mut self) -> Result<(), SessionError> {
        let ImportRequest::Hello { mode, .. } = self.next().await? else {
            return Err(SessionError::BadRequest("expected a hello message first".into()));
        };
        self.read_tables()?;
        let holds_keys = self.holds_keys().await?;
        let tables: Vec<TableRows> = self
            .tables
            .keys()
            .map(|table| Ok(TableRows { table: table.clone(), rows: self.count(table)? }))
            .collect::<Result<_, SessionError>>()?;
        if mode == ImportMode::Empty && (holds_keys || !tables.is_empty()) {
            let message = format!(
                "{} {} holds data ({}); --mode empty writes only into objects that hold none: use --mode replace or --mode merge",
                self.log.class,
                self.log.id,
                if holds_keys { "keys" } else { "SQL tables" }
            );
            return self.reply(&ImportReply::Refused { message });
        }
        let worker = super::config::Config::cached(&self.log.env).map(|c| c.worker.clone()).unwrap_or_default();
        self.reply(&ImportReply::Ready { worker, holds_keys, tables })?;
        loop {
            let reply = match self.next().await? {
                ImportRequest::ListKeys { after } => {
                    let (keys, done) = self.list_keys(after).await?;
                    ImportReply::Keys { keys, done }
                }
                ImportRequest::Put { changes } => self.put(&changes).await?,
                ImportRequest::CreateTable { table, statements } => self.create_table(mode, &table, &statements)?,
                ImportRequest::DropTable { table } => self.drop_table(&table)?,
                ImportRequest::Rows(page) => self.rows(&page)?,
                ImportRequest::End {} => return self.reply(&ImportReply::Ack { written: 0, deleted: 0 }),
                ImportRequest::Hello { .. } => return Err(SessionError::BadRequest("hello sent twice".into())),
            };
            self.reply(&reply)?;
        }
    }

    async fn next(&mut self) -> Result<ImportRequest, SessionError> {
        let text = flow::owed(flow::next_text(&mut self.events)).await?;
        ImportRequest::parse(&text).map_err(|e| SessionError::BadRequest(e.to_string()))
    }

    fn reply(&self, reply: &ImportReply) -> Result<(), SessionError> {
        let text = serde_json::to_string(reply).map_err(|e| SessionError::Server(e.to_string()))?;
        self.ws.send_with_str(text)?;
        Ok(())
    }

    /// Whether the object holds a key of its user's: one either side of the reserved range.
    async fn holds_keys(&self) -> Result<bool, SessionError> {
        for (start, end) in [(None, Some(RESERVED_PREFIX)), (Some(RESERVED_END), None)] {
            if RangeScan::new(start, end).next_page(&self.storage, 1).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Up to [`LIST_KEYS_LIMIT`] user keys after `after`, read [`MAX_KEYS_PER_CALL`] at a time
    /// (a read brings the values too, which are dropped at once), and whether none follows.
    async fn list_keys(&self, after: Option<String>) -> Result<(Vec<String>, bool), SessionError> {
        let mut keys = Vec::new();
        let below_reserved = after.as_deref().is_none_or(|a| a < RESERVED_PREFIX);
        let ranges =
            if below_reserved { vec![(None, Some(RESERVED_PREFIX)), (Some(RESERVED_END), None)] } else { vec![(Some(RESERVED_END), None)] };
        for (start, end) in ranges {
            let mut scan = RangeScan::new(start, end);
            if let Some(after) = after.as_deref().filter(|a| start.is_none_or(|s| *a >= s)) {
                scan.resume_after(after);
            }
            while keys.len() < LIST_KEYS_LIMIT {
                let Some(page) = scan.next_page(&self.storage, MAX_KEYS_PER_CALL.min(LIST_KEYS_LIMIT - keys.len())).await? else { break };
                keys.extend(page.keys().into_iter().filter_map(|k| k.ok().and_then(|k| k.as_string())));
            }
            if keys.len() >= LIST_KEYS_LIMIT {
                return Ok((keys, false));
            }
        }
        Ok((keys, true))
    }

    /// Writes the page's values and deletes its deletions, through the hooked methods, at most
    /// 128 keys a call.
    async fn put(&self, changes: &[Change]) -> Result<ImportReply, SessionError> {
        let (deletions, writes): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| c.value == ChangeValue::Deleted);
        let mut deleted = 0;
        for chunk in deletions.chunks(MAX_KEYS_PER_CALL) {
            let keys: Array = chunk.iter().map(|c| JsValue::from_str(&c.key)).collect();
            deleted += self.call_hooked("delete", &keys).await?.as_f64().unwrap_or(0.0) as u64;
        }
        // Every value is made first, so a page with a value that has no form writes nothing.
        let mut calls = Vec::new();
        for chunk in writes.chunks(MAX_KEYS_PER_CALL) {
            let entries = Array::new();
            for change in chunk {
                let value = decode(&change.value).map_err(|why| SessionError::BadRequest(format!("key {:?}: {why}", change.key)))?;
                entries.push(&Array::of2(&JsValue::from_str(&change.key), &value));
            }
            // Defined property by property, so a key such as `__proto__` is a key.
            calls.push(Object::from_entries(&entries)?);
        }
        // The calls go out together and are awaited together: storage takes them in order.
        let puts: Array = calls.iter().map(|entries| self.start_hooked("put", entries)).collect::<Result<_, _>>()?;
        JsFuture::from(js_sys::Promise::all(&puts)).await.map_err(|e| SessionError::BadRequest(worker::Error::from(e).to_string()))?;
        Ok(ImportReply::Ack { written: writes.len() as u64, deleted })
    }

    /// Calls the storage's method `name` as the user's code would: through durafetch's hook,
    /// which records the keys in the same commit.
    async fn call_hooked(&self, name: &str, argument: &JsValue) -> Result<JsValue, SessionError> {
        let promise = self.start_hooked(name, argument)?;
        JsFuture::from(promise).await.map_err(|e| SessionError::BadRequest(worker::Error::from(e).to_string()))
    }

    /// [`Self::call_hooked`], not awaited: the call's promise. A call the hook refuses at once
    /// (a reserved key) fails here.
    fn start_hooked(&self, name: &str, argument: &JsValue) -> Result<js_sys::Promise, SessionError> {
        let method: js_sys::Function = Reflect::get(&self.storage, &name.into())?.dyn_into()?;
        let promise = method.call1(&self.storage, argument).map_err(|e| SessionError::BadRequest(worker::Error::from(e).to_string()))?;
        Ok(promise.dyn_into()?)
    }

    fn sql(&self) -> Result<&SqlStorage, SessionError> {
        self.log.sql.get().ok_or_else(|| {
            SessionError::BadRequest(format!(
                "{} is a key-value-backed class: it has no SQL tables to restore into; restore the tables into a class whose migration \
                 is new_sqlite_classes",
                self.log.class
            ))
        })
    }

    fn read_tables(&mut self) -> Result<(), SessionError> {
        self.tables = match self.log.sql.get() {
            Some(sql) => sql.tables()?.into_iter().map(|t| (t.name.clone(), t)).collect(),
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn count(&self, table: &str) -> Result<u64, SessionError> {
        let rows = self.sql()?.rows(&count_rows(table), &[])?;
        Ok(Array::from(&rows.get(0)).get(0).as_f64().unwrap_or(0.0) as u64)
    }

    /// Makes `table` from the backup's statements: replace drops the table the object has first
    /// (its rows count as deleted), merge keeps it.
    fn create_table(&mut self, mode: ImportMode, table: &str, statements: &[String]) -> Result<ImportReply, SessionError> {
        let creates_table =
            statements.first().is_some_and(|s| s.split_whitespace().nth(1).is_some_and(|w| w.eq_ignore_ascii_case("table")));
        if !creates_table || !statements.iter().all(|s| is_schema_statement(s)) {
            return Err(SessionError::BadRequest(format!(
                "the schema of table {table} must be its CREATE TABLE statement, then CREATE INDEX statements, one statement each"
            )));
        }
        let exists = self.tables.contains_key(table);
        if exists && mode == ImportMode::Merge {
            return Ok(ImportReply::Ack { written: 0, deleted: 0 });
        }
        let deleted = if exists { self.drop(table)? } else { 0 };
        for statement in statements {
            self.sql()?.run_recorded(statement, &[]).map_err(|e| statement_error(table, e))?;
        }
        self.read_tables()?;
        if !self.tables.contains_key(table) {
            return Err(SessionError::BadRequest(format!("the schema sent for table {table} made no table of that name")));
        }
        Ok(ImportReply::Ack { written: 0, deleted })
    }

    fn drop_table(&mut self, table: &str) -> Result<ImportReply, SessionError> {
        let deleted = if self.tables.contains_key(table) { self.drop(table)? } else { 0 };
        Ok(ImportReply::Ack { written: 0, deleted })
    }

    /// Drops a table the object has; answers how many rows it held.
    fn drop(&mut self, table: &str) -> Result<u64, SessionError> {
        let rows = self.count(table)?;
        self.sql()?.run_recorded(&format!("DROP TABLE {}", ident(table)), &[]).map_err(|e| statement_error(table, e))?;
        self.tables.remove(table);
        Ok(rows)
    }

    /// Writes a page of rows into a table of the object, in one statement. The page names the
    /// columns of every object of the class (the file's table is their union): a column this
    /// table lacks is left out if the page holds only NULL in it, and refused otherwise.
    fn rows(&self, page: &SqlPage) -> Result<ImportReply, SessionError> {
        let shape = self
            .tables
            .get(&page.table)
            .ok_or_else(|| SessionError::BadRequest(format!("table {} does not exist; send its schema first", page.table)))?;
        let mut picked = Vec::new();
        for (i, column) in page.columns.iter().enumerate() {
            match shape.columns.iter().find(|c| c.eq_ignore_ascii_case(column)) {
                Some(name) => picked.push((i, name.clone())),
                None if page
                    .rows
                    .iter()
                    .all(|r| r.v.as_ref().is_none_or(|v| v.get(i).is_none_or(|x| *x == crate::core::protocol::SqlValue::Null))) => {}
                None => {
                    return Err(SessionError::BadRequest(format!(
                        "table {} of the object has no column {column}, which the backup's rows have values in",
                        page.table
                    )))
                }
            }
        }
        let with_rowid = shape.rowid.as_deref().filter(|_| shape.key.is_empty());
        let indexes: Vec<usize> = picked.iter().map(|(i, _)| *i).collect();
        let names: Vec<String> = picked.into_iter().map(|(_, name)| name).collect();
        let json = rows_json(&page.rows, &indexes, with_rowid.is_some()).map_err(SessionError::BadRequest)?;
        self.sql()?
            .run_recorded(&insert_rows(&page.table, &names, with_rowid), &[json.into()])
            .map_err(|e| statement_error(&page.table, e))?;
        Ok(ImportReply::Ack { written: page.rows.iter().filter(|r| r.v.is_some()).count() as u64, deleted: 0 })
    }
}

/// A statement of the restore that SQLite refused: the client's to fix (a schema that does not
/// fit, a constraint the rows break), so it is told SQLite's reason.
fn statement_error(table: &str, e: JsValue) -> SessionError {
    SessionError::BadRequest(format!("table {table}: {}", worker::Error::from(e)))
}
