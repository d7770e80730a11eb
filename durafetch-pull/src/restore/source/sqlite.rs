//! A backup in the SQLite file a pull wrote, read only.

use durafetch_sdk::core::protocol::{SqlRow, SqlValue};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::restore::source::interface::{
    page_start, BackupObject, BackupSource, HistoryPage, KeyRecord, Moment, SourceError, TableSchema, TableSource, PAGE_ROWS,
};
use crate::sink::naming::{ident, local_column_name};

pub struct SqliteBackup {
    conn: Connection,
    moment: Moment,
    /// Whether `sql_schemas` has `autoincrement_counter`: a file no pull has written since the
    /// column was added lacks it, and is read, never changed.
    has_counters: bool,
}

impl SqliteBackup {
    pub fn open(path: &std::path::Path, moment: Moment) -> Result<Self, SourceError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        if let Moment::At(_) = moment {
            // A file from before history tables existed has neither: no rows either way.
            let holds = |query: &str| conn.query_row(query, [], |r| r.get(0)).unwrap_or(false);
            if !holds("SELECT EXISTS (SELECT 1 FROM kv_history)") && !holds("SELECT EXISTS (SELECT 1 FROM sql_history)") {
                return Err(SourceError::NoHistory);
            }
        }
        let has_counters = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('sql_schemas') WHERE name = 'autoincrement_counter')",
            [],
            |r| r.get(0),
        )?;
        Ok(SqliteBackup { conn, moment, has_counters })
    }

    fn local_table(&self, object: &BackupObject, table: &str) -> Result<Option<String>, SourceError> {
        Ok(self
            .conn
            .prepare_cached("SELECT local_table FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2 AND table_name = ?3")?
            .query_row(params![object.worker, object.class, table], |r| r.get(0))
            .optional()?)
    }
}

impl BackupSource for SqliteBackup {
    fn moment(&self) -> Moment {
        self.moment
    }

    fn finished_objects(&self) -> Result<Vec<BackupObject>, SourceError> {
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
        if !scoped {
            return Ok(objects);
        }
        let mut in_scope = self.conn.prepare(
            "SELECT EXISTS (SELECT 1 FROM undo_scope WHERE class_name = ?1 AND (name = ?2 OR (name IS NULL AND ?2 IS NULL AND id = ?3)))",
        )?;
        let mut kept = Vec::new();
        for object in objects {
            if in_scope.query_row(params![object.class, object.name, object.id], |r| r.get(0))? {
                kept.push(object);
            }
        }
        Ok(kept)
    }

    fn knows(&self, object: &BackupObject) -> Result<bool, SourceError> {
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

    fn key_page(&self, object: &BackupObject, after: Option<&str>) -> Result<(Vec<KeyRecord>, Option<String>), SourceError> {
        let (op, after) = page_start(after);
        let (query, at) = match self.moment {
            Moment::Latest => (
                format!("SELECT key, 0, val, val_type, val_blob, val_error FROM kv WHERE do_id = ?1 AND key {op} ?2 ORDER BY key LIMIT ?3"),
                0,
            ),
            Moment::At(at) => (
                format!(
                    "SELECT key, deleted, val, val_type, val_blob, val_error FROM kv_history h
                     WHERE do_id = ?1 AND key {op} ?2
                       AND history_id = (SELECT max(history_id) FROM kv_history WHERE do_id = h.do_id AND key = h.key AND pulled_at <= ?4)
                     ORDER BY key LIMIT ?3"
                ),
                at,
            ),
        };
        let mut stmt = self.conn.prepare_cached(&query)?;
        let bound: Vec<&dyn rusqlite::ToSql> = match self.moment {
            Moment::Latest => vec![&object.do_id, &after, &PAGE_ROWS],
            Moment::At(_) => vec![&object.do_id, &after, &PAGE_ROWS, &at],
        };
        let records = stmt
            .query_map(bound.as_slice(), |row| {
                Ok(KeyRecord {
                    key: row.get(0)?,
                    deleted: row.get(1)?,
                    text: row.get(2)?,
                    kind: row.get(3)?,
                    blob: row.get(4)?,
                    error: row.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let last = records.last().map(|r| r.key.clone());
        Ok((records, last))
    }

    fn has_key(&self, object: &BackupObject, key: &str) -> Result<bool, SourceError> {
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

    fn table_names(&self, object: &BackupObject) -> Result<Vec<String>, SourceError> {
        let names = match self.moment {
            Moment::Latest => self
                .conn
                .prepare_cached("SELECT table_name FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2 ORDER BY table_name")?
                .query_map(params![object.worker, object.class], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?,
            Moment::At(at) => self
                .conn
                .prepare_cached("SELECT DISTINCT table_name FROM sql_history WHERE do_id = ?1 AND pulled_at <= ?2 ORDER BY table_name")?
                .query_map(params![object.do_id, at], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?,
        };
        Ok(names)
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

    fn local_rows_exist(&self, object: &BackupObject, table: &str) -> Result<bool, SourceError> {
        let Some(local) = self.local_table(object, table)? else { return Ok(false) };
        Ok(self
            .conn
            .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = ?1)", ident(&local)), [object.do_id], |r| r.get(0))?)
    }

    fn table_source(&self, object: &BackupObject, schema: &TableSchema) -> Result<TableSource, SourceError> {
        let local = self.local_table(object, &schema.table)?;
        let locals = match &local {
            Some(local) => self
                .conn
                .prepare_cached("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
                .query_map([local], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        Ok(TableSource::new(schema, local, locals, local_column_name))
    }

    fn latest_rows(&self, object: &BackupObject, source: &TableSource, after: Option<&str>) -> Result<Vec<SqlRow>, SourceError> {
        let TableSource { local, columns, .. } = source;
        let Some(local) = local else { return Ok(Vec::new()) };
        let (op, after) = page_start(after);
        let selected: Vec<String> = columns.iter().map(|(l, _)| format!(", {}", l.as_deref().map_or("NULL".into(), ident))).collect();
        let query = format!(
            "SELECT _row_key{} FROM {} WHERE do_id = ?1 AND _row_key {op} ?2 ORDER BY _row_key LIMIT ?3",
            selected.concat(),
            ident(local)
        );
        let mut stmt = self.conn.prepare_cached(&query)?;
        let rows = stmt
            .query_map(params![object.do_id, after, PAGE_ROWS], |row| {
                let values = (0..columns.len()).map(|i| row.get::<_, Value>(i + 1).map(sql_value)).collect::<Result<Vec<_>, _>>()?;
                Ok(SqlRow { k: row.get(0)?, v: Some(values) })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn history_rows(&self, object: &BackupObject, table: &str, after: Option<&str>, at: i64) -> Result<HistoryPage, SourceError> {
        let (op, after) = page_start(after);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT row_key, CASE WHEN deleted THEN NULL ELSE coalesce(row, '{{}}') END FROM sql_history h
             WHERE do_id = ?1 AND table_name = ?4 AND row_key {op} ?2
               AND history_id = (SELECT max(history_id) FROM sql_history
                                 WHERE do_id = h.do_id AND table_name = h.table_name AND row_key = h.row_key AND pulled_at <= ?5)
             ORDER BY row_key LIMIT ?3"
        ))?;
        let records = stmt
            .query_map(params![object.do_id, after, PAGE_ROWS, table, at], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(records)
    }
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
