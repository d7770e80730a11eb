//! The SQL half of an export: a SQLite-backed object's tables, whole for a snapshot, or the rows
//! its change records name since the client's SQL cursor, in `sql_page` messages, each table's
//! rows after its `sql_schema`; a dropped table as `sql_table_gone`.

use std::collections::BTreeMap;

use js_sys::Array;
use wasm_bindgen::JsValue;

use super::flow::{Outbox, SessionError};
use super::sql_hooks::SqlStorage;
use crate::core::protocol::{ServerMessage, SqlPage, SqlRow, SqlValue, MAX_PAGE_CHANGES, PAGE_TARGET_BYTES};
use crate::core::sql_capture::{self, decode_value, key_json, row_key, TableShape, MARK_GONE, MARK_REPLACE, MARK_ROW};
use crate::core::sql_restore::SCHEMA_STATEMENTS;
use crate::core::storage_api::ReadSizer;

/// Change records read at a time: their sequence, table and mark only.
const RECORDS_PER_READ: usize = 4000;

/// One export session's view of the SQL storage: its tables, read once when the session starts
/// (a snapshot's scan and the changes after it both need them), and its newest change record.
pub(crate) struct SqlExport<'a> {
    sql: &'a SqlStorage,
    tables: BTreeMap<String, TableShape>,
    /// Each recorded table's `CREATE TABLE` and `CREATE INDEX` statements.
    schemas: BTreeMap<String, Vec<String>>,
    /// The newest change record when the session started, where a snapshot's changes start.
    pub head: u64,
}

impl<'a> SqlExport<'a> {
    pub fn open(sql: &'a SqlStorage) -> Result<Self, SessionError> {
        sql.ensure_schema()?;
        let tables: BTreeMap<String, TableShape> =
            sql.tables()?.into_iter().filter(|t| t.recordable().is_ok()).map(|t| (t.name.clone(), t)).collect();
        let mut schemas: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sql.rows(SCHEMA_STATEMENTS, &[])?.iter() {
            let row = Array::from(&row);
            let table = row.get(0).as_string().unwrap_or_default();
            if tables.contains_key(&table) {
                schemas.entry(table).or_default().push(row.get(1).as_string().unwrap_or_default());
            }
        }
        Ok(SqlExport { sql, tables, schemas, head: sql.head()? })
    }

    /// The table's schema, which the client keeps for a restore; sent before its rows.
    fn send_schema(&self, session: &mut impl Outbox, table: &TableShape) -> Result<(), SessionError> {
        let statements = self.schemas.get(&table.name).cloned().unwrap_or_default();
        session.send(&ServerMessage::SqlSchema { table: table.name.clone(), statements })
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
        let mut pages = Pages::new(table);
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        // The position to continue from, bound as the query's `?2`: the rowid as text, or the
        // key's values as JSON.
        let mut after: Option<String> = None;
        let keyed_at = table.key_positions();
        loop {
            let mut bindings: Vec<JsValue> = vec![(sizer.limit() as f64).into()];
            bindings.extend(after.as_deref().map(JsValue::from_str));
            let rows = self.sql.json_rows(&table.scan_page(after.is_some()), &bindings)?;
            if rows.is_empty() {
                break;
            }
            let before = pages.bytes;
            let skip = table.scan_position_values();
            let read = rows.len();
            let mut last = None;
            for row in rows {
                let literals = texts(&row, skip, table.key_len());
                let values = values(&row, skip + table.key_len(), table.columns.len())?;
                last = Some(if skip == 1 { texts(&row, 0, 1).remove(0) } else { key_json(&values, &keyed_at) });
                pages.push(session, SqlRow { k: row_key(&literals), v: Some(values) }).await?;
            }
            sizer.observe(read, pages.bytes - before);
            after = last;
        }
        pages.flush(session).await
    }

    /// The rows named by change records after `from`; answers the last record read.
    pub async fn send_changes_since(&self, session: &mut impl Outbox, from: u64) -> Result<u64, SessionError> {
        let mut last = from;
        loop {
            let records = self.sql.rows(sql_capture::CHANGES_SINCE, &[(last as f64).into(), (RECORDS_PER_READ as f64).into()])?;
            if records.length() == 0 {
                return Ok(last);
            }
            let upto = Array::from(&records.get(records.length() - 1)).get(0).as_f64().unwrap_or(0.0) as u64;
            // A table's marker is older than its row records: a marker deletes every older record.
            let mut touched: Vec<String> = Vec::new();
            for record in records.iter() {
                let record = Array::from(&record);
                let table = record.get(1).as_string().unwrap_or_default();
                match record.get(2).as_f64().unwrap_or(0.0) as i64 {
                    MARK_GONE => session.send(&ServerMessage::SqlTableGone { table: table.clone() })?,
                    MARK_REPLACE => {
                        session.send(&ServerMessage::SqlTableGone { table: table.clone() })?;
                        if let Some(shape) = self.tables.get(&table) {
                            self.send_table(session, shape).await?;
                        }
                    }
                    MARK_ROW if !touched.contains(&table) => touched.push(table),
                    _ => {}
                }
            }
            for table in touched.iter().filter_map(|name| self.tables.get(name)) {
                self.send_changed_rows(session, table, last, upto).await?;
            }
            last = upto;
        }
    }

    async fn send_changed_rows(&self, session: &mut impl Outbox, table: &TableShape, from: u64, upto: u64) -> Result<(), SessionError> {
        self.send_schema(session, table)?;
        let mut pages = Pages::new(table);
        let mut sizer = ReadSizer::new(MAX_PAGE_CHANGES);
        let mut after = from;
        let query = table.changed_rows();
        loop {
            let rows = self.sql.json_rows(&query, &[(after as f64).into(), (upto as f64).into(), (sizer.limit() as f64).into()])?;
            if rows.is_empty() {
                break;
            }
            let before = pages.bytes;
            let read = rows.len();
            for row in rows {
                after = row.first().and_then(serde_json::Value::as_u64).unwrap_or(after);
                let literals = texts(&row, 1, table.key_len());
                let present = row.get(1 + table.key_len()).and_then(serde_json::Value::as_u64).unwrap_or(0) != 0;
                let v = if present { Some(values(&row, 2 + table.key_len(), table.columns.len())?) } else { None };
                pages.push(session, SqlRow { k: row_key(&literals), v }).await?;
            }
            sizer.observe(read, pages.bytes - before);
        }
        pages.flush(session).await
    }
}

/// Pages of one table's rows, sent once full.
struct Pages {
    page: SqlPage,
    /// Estimated bytes of the rows pushed, in all pages.
    bytes: usize,
    page_bytes: usize,
}

impl Pages {
    fn new(table: &TableShape) -> Self {
        Pages { page: SqlPage { table: table.name.clone(), columns: table.columns.clone(), rows: Vec::new() }, bytes: 0, page_bytes: 0 }
    }

    async fn push(&mut self, session: &mut impl Outbox, row: SqlRow) -> Result<(), SessionError> {
        let size = row.k.len() + 16 + row.v.as_ref().map_or(0, |v| v.iter().map(SqlValue::wire_size).sum());
        self.bytes += size;
        self.page_bytes += size;
        self.page.rows.push(row);
        if self.page.rows.len() >= MAX_PAGE_CHANGES || self.page_bytes >= PAGE_TARGET_BYTES {
            self.flush(session).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, session: &mut impl Outbox) -> Result<(), SessionError> {
        if self.page.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.page.rows);
        self.page_bytes = 0;
        let page = SqlPage { table: self.page.table.clone(), columns: self.page.columns.clone(), rows };
        let text = serde_json::to_string(&ServerMessage::SqlPage(page)).map_err(|e| SessionError::Server(e.to_string()))?;
        session.send_page(&text).await
    }
}

fn texts(row: &[serde_json::Value], start: usize, count: usize) -> Vec<String> {
    (start..start + count).map(|i| row.get(i).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned()).collect()
}

/// `count` columns from `start`, each as its type and value (see `TableShape::value_exprs`).
fn values(row: &[serde_json::Value], start: usize, count: usize) -> Result<Vec<SqlValue>, SessionError> {
    (0..count)
        .map(|i| {
            let at = start + 2 * i;
            let kind = row.get(at).and_then(serde_json::Value::as_str).unwrap_or_default();
            decode_value(kind, row.get(at + 1).unwrap_or(&serde_json::Value::Null)).map_err(SessionError::Server)
        })
        .collect()
}
