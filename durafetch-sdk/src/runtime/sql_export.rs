//! The SQL half of an export: a SQLite-backed object's tables, whole for a snapshot, or the rows
//! their change sets mark in the generations after the client's SQL cursor, in `sql_page`
//! messages, each table's rows after its `sql_schema`; a dropped table as `sql_table_gone`.

use std::collections::BTreeMap;

use js_sys::Array;
use wasm_bindgen::JsValue;

use super::flow::{Outbox, SessionError};
use super::object_log::ObjectLog;
use super::sql_page::SqlPages;
use super::sql_storage::SqlStorage;
use crate::core::protocol::{ServerMessage, SqlPage, SqlValue, MAX_PAGE_CHANGES, PAGE_TARGET_BYTES};
use crate::core::sql_capture::{change_set, decode_value, scan_binding, KnownTable, ScanBinding, TableShape, MARK_REPLACE};
use crate::core::sql_restore::SCHEMA_STATEMENTS;
use crate::core::storage_api::ReadSizer;

/// How long an export waits for the app's open transactions to end before it gives up (the
/// puller retries).
const OPEN_TRANSACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until no transaction the app opened with `transaction()` is open. SQLite-backed
/// storage runs such a transaction on the object's one connection, so a read made while it is
/// open sees its uncommitted rows; a read made in the same turn as this returns sees only
/// committed ones, as no transaction can open between.
pub(crate) async fn until_no_open_transaction(log: &ObjectLog) -> Result<(), SessionError> {
    // Key-value-backed storage keeps a transaction's writes from other readers until it commits.
    if log.sql.get().is_none() {
        return Ok(());
    }
    let mut waited = std::time::Duration::ZERO;
    let mut step = std::time::Duration::from_millis(1);
    while !log.open_transactions.borrow().is_empty() {
        if waited >= OPEN_TRANSACTION_WAIT {
            return Err(SessionError::Server(format!("a transaction of the object stayed open for {} s", waited.as_secs())));
        }
        worker::Delay::from(step).await;
        waited += step;
        step = (step * 2).min(std::time::Duration::from_millis(50));
    }
    Ok(())
}

/// One export session's view of the SQL storage, as of the generation it closed: its tables,
/// what the log knew of them, and the head.
pub(crate) struct SqlExport<'a> {
    log: &'a ObjectLog,
    sql: &'a SqlStorage,
    tables: BTreeMap<String, TableShape>,
    /// The tables durafetch cannot record, and why.
    refused: Vec<(String, String)>,
    /// Each recorded table's `CREATE TABLE` and `CREATE INDEX` statements.
    schemas: BTreeMap<String, Vec<String>>,
    /// The AUTOINCREMENT counter of each table that has one.
    counters: BTreeMap<String, i64>,
    /// What the log knew of each table, markers included, when the generation closed.
    known: Vec<KnownTable>,
    /// The head once the session closed the generation: every change at or below it is in what
    /// the session sends, and the client's cursor becomes it.
    pub head: u64,
}

impl<'a> SqlExport<'a> {
    /// Closes the generation and opens the view; call it in the same turn as
    /// [`until_no_open_transaction`] returned, so that no transaction spans the close.
    pub fn open(log: &'a ObjectLog, sql: &'a SqlStorage) -> Result<Self, SessionError> {
        sql.ensure_schema(log.sql_head.get())?;
        // A head reported and then rolled back is put back first: closed now, it is below the
        // cursor this session hands out, and no reader stays behind for ever.
        sql.raise_head(log.sql_head.get())?;
        let head = sql.close_generation()?;
        // The close is not reported: a reader at this head is not behind, and one below it is
        // told by the odd head it was already reported.
        log.sql_head.set(head);
        let known = sql.known()?;
        let mut export = SqlExport {
            log,
            sql,
            tables: BTreeMap::new(),
            refused: Vec::new(),
            schemas: BTreeMap::new(),
            counters: BTreeMap::new(),
            known,
            head,
        };
        export.read_tables()?;
        Ok(export)
    }

    /// The tables and their schemas as they now are.
    fn read_tables(&mut self) -> Result<(), SessionError> {
        self.tables.clear();
        self.refused.clear();
        for table in self.sql.tables()? {
            match table.recordable() {
                Ok(()) => drop(self.tables.insert(table.name.clone(), table)),
                Err(why) => self.refused.push((table.name, why)),
            }
        }
        self.schemas.clear();
        for row in self.sql.rows(SCHEMA_STATEMENTS, &[])?.iter() {
            let row = Array::from(&row);
            let table = row.get(0).as_string().unwrap_or_default();
            if self.tables.contains_key(&table) {
                self.schemas.entry(table).or_default().push(row.get(1).as_string().unwrap_or_default());
            }
        }
        self.counters = self.sql.autoincrement_counters()?;
        Ok(())
    }

    /// The table's schema, which the client keeps for a restore; sent before its rows.
    fn send_schema(&self, session: &mut impl Outbox, table: &TableShape) -> Result<(), SessionError> {
        let statements = self.schemas.get(&table.name).cloned().unwrap_or_default();
        let autoincrement = self.counters.get(&table.name).copied();
        session.send(&ServerMessage::SqlSchema { table: table.name.clone(), statements, autoincrement, refused: None })
    }

    /// Names each table durafetch cannot record, and why, so that the puller's summary says so.
    pub fn send_refusals(&self, session: &mut impl Outbox) -> Result<(), SessionError> {
        for (table, why) in &self.refused {
            session.send(&ServerMessage::SqlSchema {
                table: table.clone(),
                statements: Vec::new(),
                autoincrement: None,
                refused: Some(why.clone()),
            })?;
        }
        Ok(())
    }

    /// Every row of every recorded table.
    pub async fn send_tables(&self, session: &mut impl Outbox) -> Result<(), SessionError> {
        for table in self.tables.values() {
            self.send_table(session, table).await?;
        }
        Ok(())
    }

    async fn send_table(&self, session: &mut impl Outbox, table: &TableShape) -> Result<(), SessionError> {
        self.send_schema(session, table)?;
        let lead = table.scan_position_values();
        let pages = pages_of(table, lead, false)?;
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        // The key values of the last row sent, bound from the query's `?2` on.
        let mut after: Option<Vec<SqlValue>> = None;
        loop {
            let mut bindings: Vec<JsValue> = vec![(sizer.limit() as f64).into()];
            bindings.extend(after.iter().flatten().map(bind));
            until_no_open_transaction(self.log).await?;
            let read = match self.sql.run(&table.scan_page(after.as_deref()), &bindings).and_then(|rows| pages.read(&rows)) {
                Ok(read) => read,
                Err(_) if self.changed_since_open(&table.name) => break,
                Err(e) => return Err(e.into()),
            };
            for page in &read.pages {
                session.send_page_text(page).await?;
            }
            let Some(row) = read.last else { break };
            sizer.observe(read.rows, read.chars);
            let last = if lead == 1 {
                table.page_end(row.get(0).as_string().as_deref(), &[])
            } else {
                table.page_end(None, &typed_values(&row, table.key_len(), table.exported_columns().len())?)
            };
            // A page that ends where the last one did would be read again for ever.
            if last.is_none() || last == after {
                return Err(SessionError::Server(format!("durafetch: the snapshot of table {} does not advance", table.name)));
            }
            after = last;
        }
        send_rest(session, &pages).await
    }

    /// Whether `table` was marked after this session closed its generation: altered, renamed or
    /// dropped while the session read it. The next export replaces or drops its rows whole, so
    /// a read the change broke is not an error.
    fn changed_since_open(&self, table: &str) -> bool {
        match self.sql.known() {
            Ok(known) => known.iter().any(|k| k.name == table && k.gen > self.head),
            Err(_) => false,
        }
    }

    /// What changed after the client's cursor `from`: tables gone or refused, then tables to
    /// replace whole, then the rows each other table's change set marks after `from`. Answers
    /// the head, the client's next cursor.
    pub async fn send_changes_since(&self, session: &mut impl Outbox, from: u64) -> Result<u64, SessionError> {
        let marked: Vec<&KnownTable> = self.known.iter().filter(|k| k.gen > from).collect();
        // Gone first: a file that folds case keeps `c2` and `C2` in the same place.
        for gone in marked.iter().filter(|k| k.mark != MARK_REPLACE) {
            session.send(&ServerMessage::SqlTableGone { table: gone.name.clone() })?;
        }
        for replaced in marked.iter().filter(|k| k.mark == MARK_REPLACE) {
            session.send(&ServerMessage::SqlTableGone { table: replaced.name.clone() })?;
            if let Some(table) = self.tables.get(&replaced.name) {
                self.send_table(session, table).await?;
            }
        }
        for known in self.known.iter().filter(|k| k.gen <= from && k.shape.is_some()) {
            if let Some(table) = self.tables.get(&known.name) {
                self.send_changed_rows(session, table, &change_set(known.id), from).await?;
            }
        }
        Ok(self.head)
    }

    async fn send_changed_rows(&self, session: &mut impl Outbox, table: &TableShape, set: &str, from: u64) -> Result<(), SessionError> {
        let positions = table.change_set_key_len();
        let pages = pages_of(table, 2 * positions, true)?;
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        let mut after: Option<Vec<SqlValue>> = None;
        let mut schema_sent = false;
        loop {
            let mut bindings: Vec<JsValue> = vec![(from as f64).into(), (sizer.limit() as f64).into()];
            bindings.extend(after.iter().flatten().map(bind));
            until_no_open_transaction(self.log).await?;
            let read = match self.sql.run(&table.changed_rows(set, after.as_deref()), &bindings).and_then(|rows| pages.read(&rows)) {
                Ok(read) => read,
                Err(_) if self.changed_since_open(&table.name) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(row) = read.last else { break };
            if !schema_sent {
                self.send_schema(session, table)?;
                schema_sent = true;
            }
            for page in &read.pages {
                session.send_page_text(page).await?;
            }
            sizer.observe(read.rows, read.chars);
            let last = Some(typed_values(&row, 0, positions)?);
            // A page that ends where the last one did would be read again for ever.
            if last == after {
                return Err(SessionError::Server(format!("durafetch: the changes of table {} do not advance", table.name)));
            }
            after = last;
        }
        send_rest(session, &pages).await
    }
}

/// The pages of `table`'s rows, from reads whose rows lead with `lead` position values and, if
/// `flagged`, say whether the row exists.
fn pages_of(table: &TableShape, lead: usize, flagged: bool) -> Result<SqlPages, SessionError> {
    let empty = ServerMessage::SqlPage(SqlPage { table: table.name.clone(), columns: table.exported_columns(), rows: Vec::new() });
    let text = serde_json::to_string(&empty).map_err(|e| SessionError::Server(e.to_string()))?;
    let head = text.strip_suffix("]}").ok_or_else(|| SessionError::Server(format!("an empty page ends oddly: {text}")))?;
    Ok(SqlPages::build(head, lead, table.key_len(), flagged, table.exported_columns().len(), MAX_PAGE_CHANGES, PAGE_TARGET_BYTES))
}

async fn send_rest(session: &mut impl Outbox, pages: &SqlPages) -> Result<(), SessionError> {
    match pages.rest() {
        Some(page) => session.send_page_text(&page).await,
        None => Ok(()),
    }
}

/// `count` typed values of a read's row from `start`, each a type and a value (see
/// `TableShape::changed_rows`): a page's last position, decoded exactly.
fn typed_values(row: &Array, start: usize, count: usize) -> Result<Vec<SqlValue>, SessionError> {
    (0..count)
        .map(|i| {
            let at = (start + 2 * i) as u32;
            let kind = row.get(at).as_string().unwrap_or_default();
            let value = row.get(at + 1);
            let json = match (value.as_string(), value.as_f64()) {
                (Some(text), _) => serde_json::Value::String(text),
                (None, Some(number)) => serde_json::Number::from_f64(number).map_or(serde_json::Value::Null, serde_json::Value::Number),
                (None, None) => serde_json::Value::Null,
            };
            decode_value(&kind, &json).map_err(SessionError::Server)
        })
        .collect()
}

/// A position value bound into a read (see `core::sql_capture::scan_binding`).
fn bind(value: &SqlValue) -> JsValue {
    match scan_binding(value) {
        ScanBinding::Text(text) => text.into(),
        ScanBinding::Real(real) => real.into(),
        ScanBinding::Blob(bytes) => js_sys::Uint8Array::from(bytes).buffer().into(),
        ScanBinding::Null => JsValue::NULL,
    }
}
