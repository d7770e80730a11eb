//! The backup a restore reads: the objects of the file, and each object's keys and SQL tables,
//! as the file holds them now or, with `--at`, as its history tables held them at that moment.
//! Reads come in pages in key order, so a restore of any size holds one page at a time.

use durafetch_sdk::core::protocol::{Change, ChangeValue, SqlPage, SqlRow, SqlValue};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::settings::filter::Filter;
use crate::sink::naming::{ident, source_column_name};

/// An object of the backup.
#[derive(Debug, Clone)]
pub struct BackupObject {
    pub do_id: i64,
    pub worker: String,
    pub class: String,
    pub name: Option<String>,
    pub id: String,
}

/// Why the backup cannot be read as asked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the backup file: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the file holds no history, so it cannot say how objects were at an earlier time; --at needs a file that every pull since the first wrote with --history"
    )]
    NoHistory,
    #[error(
        "its history starts after its first pull (keys without history rows), so the file cannot say how it was at that time; --at needs every pull since the first to have run with --history"
    )]
    PartialHistory,
    #[error(
        "no schema is recorded for its SQL table {0} (the file was pulled by an older durafetch-pull); run `durafetch-pull --verify=full` once to record it"
    )]
    NoSchema(String),
    #[error("a value in the file does not parse: {0}")]
    BadValue(String),
}

/// One SQL table of a class in the file: its local table (none if the file never held its rows)
/// and that table's columns, each as (local name, source name).
pub struct TableSource {
    table: String,
    local: Option<String>,
    columns: Vec<(String, String)>,
}

/// Which state of the file a restore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// What the file holds now: the objects as of their last pull.
    Latest,
    /// The history's last record of each key and row at or before this time (ms since the
    /// Unix epoch): the objects as the last pull before it left them.
    At(i64),
}

/// How the file says one of an object's SQL tables is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub table: String,
    /// Its `CREATE TABLE`, then its indexes.
    pub statements: Vec<String>,
    /// Its AUTOINCREMENT counter, when it has one.
    pub autoincrement: Option<i64>,
}

impl TableSchema {
    /// The table made alone from its `CREATE TABLE`, in a database of its own in memory, so that
    /// SQLite itself says what the statement makes; `None` if SQLite cannot make it alone.
    pub(crate) fn made_alone(&self) -> Option<Connection> {
        let scratch = Connection::open_in_memory().ok()?;
        scratch.execute_batch(self.statements.first()?).ok()?;
        Some(scratch)
    }

    /// The columns its `CREATE TABLE` makes generated.
    fn generated_columns(&self) -> Vec<String> {
        let Some(scratch) = self.made_alone() else { return Vec::new() };
        let names = scratch
            .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden IN (2, 3)")
            .and_then(|mut stmt| stmt.query_map([&self.table], |r| r.get(0))?.collect());
        names.unwrap_or_default()
    }

    /// Whether its `CREATE TABLE` makes an AUTOINCREMENT table: SQLite makes `sqlite_sequence`
    /// with the first one.
    fn is_autoincrement(&self) -> bool {
        let made = self.made_alone().map(|scratch| {
            scratch.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')", [], |r| r.get(0))
        });
        matches!(made, Some(Ok(true)))
    }
}

/// The backup file, read only.
pub struct Backup {
    conn: Connection,
    moment: Moment,
    /// Whether `sql_schemas` has `autoincrement_counter`: a file no pull has written since the
    /// column was added lacks it, and is read, never changed.
    has_counters: bool,
}

/// Keys or rows read per page.
const PAGE_ROWS_I64: i64 = 1000;

/// How a page after `after` starts: the first page at the smallest text (the empty key
/// included), the others after the last key read. One comparison, so that the index seeks.
fn page_start(after: Option<&str>) -> (&'static str, &str) {
    match after {
        None => (">=", ""),
        Some(after) => (">", after),
    }
}

impl Backup {
    pub fn open(path: &std::path::Path, moment: Moment) -> Result<Self, SourceError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        if let Moment::At(_) = moment {
            let has = |table: &str| -> rusqlite::Result<bool> {
                conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), [], |r| r.get(0)).or(Ok(false))
            };
            if !has("kv_history")? && !has("sql_history")? {
                return Err(SourceError::NoHistory);
            }
        }
        let has_counters = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('sql_schemas') WHERE name = 'autoincrement_counter')",
            [],
            |r| r.get(0),
        )?;
        Ok(Backup { conn, moment, has_counters })
    }

    /// The objects the filter keeps that some pull finished, in class and name order.
    pub fn objects(&self, filter: &Filter) -> Result<Vec<BackupObject>, SourceError> {
        let mut stmt = self.conn.prepare(
            "SELECT do_id, worker_name, class_name, name, id FROM durable_objects WHERE local_max_log_id IS NOT NULL
             ORDER BY worker_name, class_name, name, id",
        )?;
        let objects = stmt
            .query_map([], |r| Ok(BackupObject { do_id: r.get(0)?, worker: r.get(1)?, class: r.get(2)?, name: r.get(3)?, id: r.get(4)? }))?
            .collect::<Result<Vec<_>, _>>()?;
        // An undo file names the objects its restore wrote into: only those are put back.
        let scoped: bool =
            self.conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'undo_scope')", [], |r| r.get(0))?;
        let mut in_scope = self.conn.prepare(if scoped {
            "SELECT EXISTS (SELECT 1 FROM undo_scope WHERE class_name = ?1 AND (name = ?2 OR (name IS NULL AND ?2 IS NULL AND id = ?3)))"
        } else {
            "SELECT ?1 IS NOT NULL OR ?2 IS NULL OR ?3 IS NULL"
        })?;
        let mut kept = Vec::new();
        for object in objects {
            let in_scope: bool = in_scope.query_row(params![object.class, object.name, object.id], |r| r.get(0))?;
            if in_scope && filter.keeps_object(&object.class, object.name.as_deref()) {
                kept.push(object);
            }
        }
        Ok(kept)
    }

    /// Whether the file can say how `object` was at the restore's moment: always for the
    /// latest state; at a time, if its history has a record by then (an object first pulled
    /// later did not exist for the file), and fails if its history is partial.
    pub fn knows(&self, object: &BackupObject) -> Result<bool, SourceError> {
        let Moment::At(at) = self.moment else { return Ok(true) };
        let partial: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM kv k WHERE do_id = ?1
                AND NOT EXISTS (SELECT 1 FROM kv_history h WHERE h.do_id = k.do_id AND h.key = k.key))",
            [object.do_id],
            |r| r.get(0),
        )?;
        if partial {
            return Err(SourceError::PartialHistory);
        }
        let recorded: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM kv_history WHERE do_id = ?1 AND pulled_at <= ?2)
                 OR EXISTS (SELECT 1 FROM sql_history WHERE do_id = ?1 AND pulled_at <= ?2)",
            params![object.do_id, at],
            |r| r.get(0),
        )?;
        Ok(recorded)
    }

    /// The next page of the object's keys after `after`, with their values; keys the filter
    /// drops are left out, and values the file holds as errors (none to restore) are counted in
    /// `errors` and sent without a value, which the object keeps as it has it.
    pub fn keys(
        &self,
        object: &BackupObject,
        after: Option<&str>,
        filter: &Filter,
        errors: &mut Vec<String>,
    ) -> Result<(Vec<Change>, Option<String>), SourceError> {
        let (op, after) = page_start(after);
        let query = match self.moment {
            Moment::Latest => {
                format!("SELECT key, 0, val, val_type, val_blob, val_error FROM kv WHERE do_id = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3")
            }
            Moment::At(_) => format!(
                "SELECT key, deleted, val, val_type, val_blob, val_error FROM kv_history h
                 WHERE do_id = ?1 AND key {op} ?2
                   AND history_id = (SELECT max(history_id) FROM kv_history WHERE do_id = h.do_id AND key = h.key AND pulled_at <= ?4)
                 ORDER BY key LIMIT ?3"
            ),
        };
        let at = match self.moment {
            Moment::At(at) => at,
            Moment::Latest => 0,
        };
        let mut stmt = self.conn.prepare_cached(&query)?;
        let bound: Vec<&dyn rusqlite::ToSql> = match self.moment {
            Moment::Latest => vec![&object.do_id, &after, &PAGE_ROWS_I64],
            Moment::At(_) => vec![&object.do_id, &after, &PAGE_ROWS_I64, &at],
        };
        let mut rows = stmt.query(bound.as_slice())?;
        let mut changes = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            last = Some(key.clone());
            let deleted: bool = row.get(1)?;
            if deleted || !filter.keeps_key(&key) {
                continue;
            }
            let kind: String = row.get(3)?;
            let value = match kind.as_str() {
                "json" => ChangeValue::Json(json(&key, row.get::<_, Option<String>>(2)?)?),
                "tagged" => ChangeValue::Tagged(json(&key, row.get::<_, Option<String>>(2)?)?),
                "bytes" => ChangeValue::Bytes(row.get::<_, Option<Vec<u8>>>(4)?.unwrap_or_default()),
                _ => {
                    let why = row.get::<_, Option<String>>(5)?.unwrap_or_default();
                    errors.push(format!("{key}: {why}"));
                    // Sent all the same, so that a replace keeps the object's value of a key
                    // the backup holds but cannot restore.
                    ChangeValue::Unsupported(why)
                }
            };
            changes.push(Change { key, value });
        }
        Ok((changes, last))
    }

    /// Whether the backup has `key` for the object (a replace deletes the keys it lacks).
    pub fn has_key(&self, object: &BackupObject, key: &str) -> Result<bool, SourceError> {
        Ok(match self.moment {
            Moment::Latest => self
                .conn
                .prepare_cached("SELECT 1 FROM kv WHERE do_id = ?1 AND key = ?2")?
                .query_row(params![object.do_id, key], |_| Ok(()))
                .optional()?
                .is_some(),
            Moment::At(at) => self
                .conn
                .prepare_cached(
                    "SELECT deleted FROM kv_history WHERE do_id = ?1 AND key = ?2 AND pulled_at <= ?3 ORDER BY history_id DESC LIMIT 1",
                )?
                .query_row(params![object.do_id, key, at], |r| r.get::<_, bool>(0))
                .optional()?
                .is_some_and(|deleted| !deleted),
        })
    }

    /// The object's SQL tables the filter keeps, each with its schema. At a time, the tables
    /// the history holds rows of then; their schema is the latest the file has (a table that no
    /// longer has one is reported in `errors`), and so is their AUTOINCREMENT counter, which
    /// the object only ever raises.
    pub fn tables(&self, object: &BackupObject, filter: &Filter, errors: &mut Vec<String>) -> Result<Vec<TableSchema>, SourceError> {
        let names: Vec<String> = match self.moment {
            Moment::Latest => {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT table_name FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2 ORDER BY table_name")?;
                let listed = stmt.query_map(params![object.worker, object.class], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
                listed
            }
            Moment::At(at) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT DISTINCT table_name FROM sql_history WHERE do_id = ?1 AND pulled_at <= ?2 ORDER BY table_name",
                )?;
                let names = stmt.query_map(params![object.do_id, at], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
                names
            }
        };
        let mut tables = Vec::new();
        for table in names.into_iter().filter(|t| filter.keeps_table(t)) {
            match (self.schema(object, &table)?, self.moment) {
                (Some(schema), _) => {
                    if schema.autoincrement.is_none() && schema.is_autoincrement() && self.local_rows_exist(object, &table)? {
                        errors.push(format!(
                            "table {table}: its AUTOINCREMENT counter is not in the file (pulled by a release before counters were \
                             recorded), so the restored table hands out keys after its largest restored row's, which may reuse a \
                             deleted row's key; `durafetch-pull --verify=full` once records it"
                        ));
                    }
                    tables.push(schema)
                }
                // Another object of the class has the table, this one neither its rows nor its schema.
                (None, Moment::Latest) if !self.local_rows_exist(object, &table)? => {}
                (None, Moment::Latest) => return Err(SourceError::NoSchema(table)),
                (None, Moment::At(_)) => errors.push(format!("table {table}: dropped since, and its schema with it; not restored")),
            }
        }
        Ok(tables)
    }

    fn schema(&self, object: &BackupObject, table: &str) -> Result<Option<TableSchema>, SourceError> {
        let held: Option<(String, Option<i64>)> = self
            .conn
            .prepare_cached(if self.has_counters {
                "SELECT statements, autoincrement_counter FROM sql_schemas WHERE do_id = ?1 AND table_name = ?2"
            } else {
                "SELECT statements, NULL FROM sql_schemas WHERE do_id = ?1 AND table_name = ?2"
            })?
            .query_row(params![object.do_id, table], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((text, autoincrement)) = held else { return Ok(None) };
        let statements = serde_json::from_str(&text).map_err(|e| SourceError::BadValue(format!("the schema of {table}: {e}")))?;
        Ok(Some(TableSchema { table: table.to_owned(), statements, autoincrement }))
    }

    fn local_table(&self, object: &BackupObject, table: &str) -> Result<Option<String>, SourceError> {
        Ok(self
            .conn
            .prepare_cached("SELECT local_table FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2 AND table_name = ?3")?
            .query_row(params![object.worker, object.class, table], |r| r.get(0))
            .optional()?)
    }

    fn local_rows_exist(&self, object: &BackupObject, table: &str) -> Result<bool, SourceError> {
        let Some(local) = self.local_table(object, table)? else { return Ok(false) };
        Ok(self
            .conn
            .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = ?1)", ident(&local)), [object.do_id], |r| r.get(0))?)
    }

    /// Where the file holds `table`'s rows for the class of `object`, read once for all its pages.
    /// The columns `schema`'s table generates are left out: the object computes them again, and
    /// an object whose table lacks one takes the rest all the same.
    pub fn table_source(&self, object: &BackupObject, schema: &TableSchema) -> Result<TableSource, SourceError> {
        let table = schema.table.as_str();
        let local = self.local_table(object, table)?;
        let generated = schema.generated_columns();
        let columns = match &local {
            Some(local) => {
                let mut stmt = self.conn.prepare_cached("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
                let names = stmt.query_map([local], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                names
                    .into_iter()
                    .filter_map(|local| source_column_name(&local).map(|source| (local, source)))
                    .filter(|(_, source)| !generated.iter().any(|g| g.eq_ignore_ascii_case(source)))
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(TableSource { table: table.to_owned(), local, columns })
    }

    /// The next page of the table's rows after the row key `after`, as the object held them,
    /// in a page whose columns are those of the file's table (every object's of the class).
    pub fn rows(&self, object: &BackupObject, source: &TableSource, after: Option<&str>) -> Result<(SqlPage, Option<String>), SourceError> {
        let TableSource { table, local, columns } = source;
        let mut page = SqlPage { table: table.to_owned(), columns: columns.iter().map(|(_, s)| s.clone()).collect(), rows: Vec::new() };
        let (op, after) = page_start(after);
        let mut last = None;
        match self.moment {
            Moment::Latest => {
                let Some(local) = local else { return Ok((page, None)) };
                let selected: Vec<String> = columns.iter().map(|(l, _)| ident(l)).collect();
                let query = format!(
                    "SELECT _row_key{}{} FROM {} WHERE do_id = ?1 AND _row_key {op} ?2 ORDER BY _row_key LIMIT ?3",
                    if selected.is_empty() { "" } else { ", " },
                    selected.join(", "),
                    ident(local)
                );
                let mut stmt = self.conn.prepare_cached(&query)?;
                let mut rows = stmt.query(params![object.do_id, after, PAGE_ROWS_I64])?;
                while let Some(row) = rows.next()? {
                    let k: String = row.get(0)?;
                    let values = (0..columns.len()).map(|i| row.get::<_, Value>(i + 1).map(sql_value)).collect::<Result<Vec<_>, _>>()?;
                    last = Some(k.clone());
                    page.rows.push(SqlRow { k, v: Some(values) });
                }
            }
            Moment::At(at) => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT row_key, deleted, row FROM sql_history h WHERE do_id = ?1 AND table_name = ?4 AND row_key {op} ?2
                       AND history_id = (SELECT max(history_id) FROM sql_history
                                         WHERE do_id = h.do_id AND table_name = h.table_name AND row_key = h.row_key AND pulled_at <= ?5)
                     ORDER BY row_key LIMIT ?3"
                ))?;
                let mut rows = stmt.query(params![object.do_id, after, PAGE_ROWS_I64, table, at])?;
                while let Some(row) = rows.next()? {
                    let k: String = row.get(0)?;
                    last = Some(k.clone());
                    if row.get::<_, bool>(1)? {
                        continue;
                    }
                    let text: String = row.get::<_, Option<String>>(2)?.unwrap_or_default();
                    let mut named: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(&text).map_err(|e| SourceError::BadValue(format!("{table} row {k}: {e}")))?;
                    // A column the object had then but the file's table no longer names.
                    for name in named.keys() {
                        if !page.columns.contains(name) {
                            return Err(SourceError::BadValue(format!("{table} row {k}: column {name} is not in the file's table")));
                        }
                    }
                    let values = page
                        .columns
                        .iter()
                        .map(|c| named.remove(c).map_or(Ok(SqlValue::Null), serde_json::from_value))
                        .collect::<Result<Vec<SqlValue>, _>>()
                        .map_err(|e| SourceError::BadValue(format!("{table} row {k}: {e}")))?;
                    page.rows.push(SqlRow { k, v: Some(values) });
                }
            }
        }
        Ok((page, last))
    }
}

fn json(key: &str, text: Option<String>) -> Result<serde_json::Value, SourceError> {
    serde_json::from_str(text.as_deref().unwrap_or("null")).map_err(|e| SourceError::BadValue(format!("key {key:?}: {e}")))
}

fn sql_value(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

#[cfg(test)]
mod tests;
