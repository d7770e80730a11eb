//! The SQL tables of SQLite-backed objects in the file: one local table per (class, table),
//! named `<class>.<table>`, holding every object's rows with `do_id` (the object), `_row_key`
//! (the row's key within its object: its primary key's SQL literals, or its rowid) and
//! `_pull_gen` (the write stamp of the page that wrote it), then the source's columns.
//!
//! Objects of one class whose tables differ (migrations applied object by object) share the
//! local table: its columns are the union of theirs, and a row has NULL where its object's table
//! lacks a column. Local columns declare no type, so each value keeps the exact SQLite type the
//! object stored it with (`typeof` agrees), whatever type another object stored in that column.
//! `sql_tables` maps each (worker, class, table) to its local table.

use std::collections::HashSet;

use durafetch_sdk::core::protocol::{SqlPage, SqlValue};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql};

use crate::sink::interface::ApplyStats;
use crate::sink::naming::{ident, local_column_name, local_table_name};
use crate::sink::plan::row_json;
use crate::sink::plan::ObjectWrite;

pub(crate) const SQL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sql_tables (
    worker_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    local_table TEXT NOT NULL,
    PRIMARY KEY (worker_name, class_name, table_name)
);
CREATE TABLE IF NOT EXISTS sql_history (
    history_id INTEGER PRIMARY KEY,
    do_id INTEGER NOT NULL REFERENCES durable_objects (do_id),
    table_name TEXT NOT NULL,
    row_key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    row TEXT,
    pulled_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sql_history_by_row ON sql_history (do_id, table_name, row_key, history_id);
CREATE TABLE IF NOT EXISTS sql_schemas (
    do_id INTEGER NOT NULL REFERENCES durable_objects (do_id),
    table_name TEXT NOT NULL,
    statements TEXT NOT NULL,
    _pull_gen INTEGER,
    autoincrement_counter INTEGER,
    PRIMARY KEY (do_id, table_name)
);
";

/// A wire value bound as SQLite holds it, borrowed: a page's texts and blobs are bound where
/// they are, not copied per row.
struct Bound<'a>(&'a SqlValue);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::from(self)))
    }
}

/// A wire value as SQLite holds it, owned: what a row read back from the file is compared with.
fn to_sql(value: &SqlValue) -> Value {
    ValueRef::from(&Bound(value)).into()
}

impl<'a> From<&'a Bound<'a>> for ValueRef<'a> {
    fn from(bound: &'a Bound<'a>) -> Self {
        match bound.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(r) => ValueRef::Real(*r),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }
    }
}

/// The local table of `table` for the download's class, made (with any columns it lacks) if
/// `columns` is given; without, only looked up.
fn local_table(conn: &Connection, write: &ObjectWrite, table: &str, columns: Option<&[String]>) -> rusqlite::Result<Option<String>> {
    let known: Option<String> = conn
        .query_row(
            "SELECT local_table FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2 AND table_name = ?3",
            params![write.worker, write.class, table],
            |r| r.get(0),
        )
        .optional()?;
    let Some(columns) = columns else { return Ok(known) };
    let local = match known {
        Some(local) => local,
        None => {
            let local = local_table_name(&write.class, table);
            conn.execute(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {} (do_id INTEGER NOT NULL REFERENCES durable_objects (do_id), _row_key TEXT NOT NULL,
                        _pull_gen INTEGER, PRIMARY KEY (do_id, _row_key))",
                    ident(&local)
                ),
                [],
            )?;
            conn.execute(
                "INSERT INTO sql_tables (worker_name, class_name, table_name, local_table) VALUES (?1, ?2, ?3, ?4)",
                params![write.worker, write.class, table, local],
            )?;
            local
        }
    };
    let mut stmt = conn.prepare("SELECT lower(name) FROM pragma_table_info(?1)")?;
    let have: HashSet<String> = stmt.query_map([&local], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for column in columns.iter().map(|c| local_column_name(c)) {
        if !have.contains(&column.to_lowercase()) {
            conn.execute(&format!("ALTER TABLE {} ADD COLUMN {}", ident(&local), ident(&column)), [])?;
        }
    }
    Ok(Some(local))
}

/// What a page's rows are checked against before they are written: the file's copy of each row,
/// read only with `--history` (which keeps real changes, not a snapshot's resend of an unchanged
/// row) or `--verify=full` (which counts the rows that differ).
struct RowNotes<'a> {
    /// The row as the file holds it.
    current: Option<rusqlite::CachedStatement<'a>>,
    /// With `--history`: one row per SQL row change seen, the row as a JSON object of its
    /// columns, each value as `plan::value_json` writes it, or a deletion.
    history: Option<rusqlite::CachedStatement<'a>>,
    now: i64,
}

impl<'a> RowNotes<'a> {
    fn new(tx: &'a Connection, write: &ObjectWrite, local: &str, columns: &[String]) -> rusqlite::Result<Self> {
        let current = if write.history || write.compare {
            let selected = if columns.is_empty() { "1".to_owned() } else { columns.join(", ") };
            Some(tx.prepare_cached(&format!("SELECT {selected} FROM {} WHERE do_id = ?1 AND _row_key = ?2", ident(local)))?)
        } else {
            None
        };
        let history = if write.history {
            Some(tx.prepare_cached(
                "INSERT INTO sql_history (do_id, table_name, row_key, deleted, row, pulled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?)
        } else {
            None
        };
        Ok(RowNotes { current, history, now: crate::sink::plan::now_ms() })
    }

    /// Notes the row `key` about to be written with `values`, or deleted (`None`); answers
    /// whether the file held it otherwise (always false when nothing is checked).
    fn note(&mut self, do_id: i64, page: &SqlPage, key: &str, values: Option<&[SqlValue]>) -> rusqlite::Result<bool> {
        let Some(current) = &mut self.current else { return Ok(false) };
        if let Some(values) = values {
            let wanted: Vec<Value> = values.iter().map(to_sql).collect();
            let held: Option<Vec<Value>> =
                current.query_row(params![do_id, key], |r| (0..wanted.len()).map(|i| r.get::<_, Value>(i)).collect()).optional()?;
            if held.as_ref() == Some(&wanted) {
                return Ok(false);
            }
        }
        if let Some(history) = &mut self.history {
            let row = values.map(|values| row_json(&page.columns, values));
            history.execute(params![do_id, page.table, key, values.is_none(), row, self.now])?;
        }
        Ok(true)
    }
}

/// Writes a page of one table's rows: each present row replaces the file's (columns the page
/// does not name become NULL: the object's table lacks them), each absent one is deleted.
pub(crate) fn apply_sql_page(tx: &Connection, write: &ObjectWrite, stamp: i64, page: &SqlPage) -> rusqlite::Result<ApplyStats> {
    let local = local_table(tx, write, &page.table, Some(&page.columns))?.unwrap_or_default();
    let columns: Vec<String> = page.columns.iter().map(|c| ident(&local_column_name(c))).collect();
    let slots: Vec<String> = (0..columns.len()).map(|i| format!("?{}", i + 4)).collect();
    let mut replace = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {} (do_id, _row_key, _pull_gen{}{}) VALUES (?1, ?2, ?3{}{})",
        ident(&local),
        if columns.is_empty() { "" } else { ", " },
        columns.join(", "),
        if slots.is_empty() { "" } else { ", " },
        slots.join(", ")
    ))?;
    // What every row shares is bound once (SQLite keeps bindings from one execution to the next).
    replace.raw_bind_parameter(1, write.do_id)?;
    replace.raw_bind_parameter(3, stamp)?;
    let mut delete = tx.prepare_cached(&format!("DELETE FROM {} WHERE do_id = ?1 AND _row_key = ?2", ident(&local)))?;
    let mut notes = RowNotes::new(tx, write, &local, &columns)?;
    let mut stats = ApplyStats::default();
    for row in &page.rows {
        match &row.v {
            Some(values) => {
                if notes.note(write.do_id, page, &row.k, Some(values))? && write.compare {
                    stats.differed += 1;
                }
                // Every slot is bound anew for each row: a row short of the page's columns must
                // not keep the values of the row before it.
                if values.len() != columns.len() {
                    return Err(rusqlite::Error::InvalidParameterCount(values.len() + 3, columns.len() + 3));
                }
                replace.raw_bind_parameter(2, &row.k)?;
                for (i, value) in values.iter().enumerate() {
                    replace.raw_bind_parameter(i + 4, Bound(value))?;
                }
                replace.raw_execute()?;
                stats.written += 1;
            }
            None => {
                let deleted = delete.execute(params![write.do_id, row.k])? as u64;
                if deleted > 0 {
                    notes.note(write.do_id, page, &row.k, None)?;
                }
                stats.deleted += deleted;
            }
        }
    }
    Ok(stats)
}

/// Keeps the latest schema of one of the object's tables (`sql_schemas.statements`, a JSON
/// array of its `CREATE TABLE` and `CREATE INDEX` statements): what a restore makes it from.
pub(crate) fn save_schema(
    tx: &Connection,
    write: &ObjectWrite,
    stamp: i64,
    table: &str,
    statements: &[String],
    autoincrement: Option<i64>,
) -> rusqlite::Result<ApplyStats> {
    let text = serde_json::to_string(statements).unwrap_or_default();
    tx.execute(
        "INSERT OR REPLACE INTO sql_schemas (do_id, table_name, statements, _pull_gen, autoincrement_counter) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![write.do_id, table, text, stamp, autoincrement],
    )?;
    Ok(ApplyStats::default())
}

/// Drops the object's rows of a table it no longer has, and its schema.
pub(crate) fn drop_sql_table(tx: &Connection, write: &ObjectWrite, table: &str) -> rusqlite::Result<ApplyStats> {
    tx.execute("DELETE FROM sql_schemas WHERE do_id = ?1 AND table_name = ?2", params![write.do_id, table])?;
    let Some(local) = local_table(tx, write, table, None)? else { return Ok(ApplyStats::default()) };
    note_deletions(tx, write, table, &local, "do_id = ?1", params![write.do_id])?;
    let deleted = tx.execute(&format!("DELETE FROM {} WHERE do_id = ?1", ident(&local)), [write.do_id])? as u64;
    Ok(ApplyStats { deleted, ..ApplyStats::default() })
}

/// With `--history`, a deletion for each of the object's rows of `local` that `condition` selects.
fn note_deletions(
    tx: &Connection,
    write: &ObjectWrite,
    table: &str,
    local: &str,
    condition: &str,
    bound: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<()> {
    if !write.history {
        return Ok(());
    }
    let mut all: Vec<&dyn rusqlite::ToSql> = bound.to_vec();
    all.push(&table);
    let now = crate::sink::plan::now_ms();
    all.push(&now);
    let (table_slot, now_slot) = (bound.len() + 1, bound.len() + 2);
    tx.execute(
        &format!(
            "INSERT INTO sql_history (do_id, table_name, row_key, deleted, pulled_at)
             SELECT do_id, ?{table_slot}, _row_key, 1, ?{now_slot} FROM {} WHERE {condition}",
            ident(local)
        ),
        all.as_slice(),
    )?;
    Ok(())
}

/// The local tables of the download's class, with their source table names.
fn class_tables(conn: &Connection, worker: &str, class: &str) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT table_name, local_table FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2")?;
    let tables = stmt.query_map(params![worker, class], |r| Ok((r.get(0)?, r.get(1)?)))?.collect();
    tables
}

/// Whether the file holds SQL rows of the object.
pub(crate) fn holds_sql_rows(conn: &Connection, worker: &str, class: &str, do_id: i64) -> rusqlite::Result<bool> {
    for (_, local) in class_tables(conn, worker, class)? {
        let held: bool =
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = ?1)", ident(&local)), [do_id], |r| r.get(0))?;
        if held {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops the object's SQL rows (and schemas) stamped below `below`: what a snapshot did not send.
pub(crate) fn sweep_sql_rows(tx: &Connection, write: &ObjectWrite, below: i64) -> rusqlite::Result<u64> {
    let mut swept = 0;
    const UNSEEN: &str = "do_id = ?1 AND (_pull_gen IS NULL OR _pull_gen < ?2)";
    tx.execute(&format!("DELETE FROM sql_schemas WHERE {UNSEEN}"), params![write.do_id, below])?;
    for (table, local) in class_tables(tx, &write.worker, &write.class)? {
        note_deletions(tx, write, &table, &local, UNSEEN, params![write.do_id, below])?;
        swept += tx.execute(&format!("DELETE FROM {} WHERE {UNSEEN}", ident(&local)), params![write.do_id, below])? as u64;
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use durafetch_sdk::core::cursor::Cursor;
    use durafetch_sdk::core::protocol::{ExportMode, IndexEntry, SqlRow};

    use super::*;
    use crate::sink::interface::Swept;
    use crate::sink::sqlite::SqliteSink;

    /// A file in memory (with `--history`) that knows two objects of one class, and their `do_id`s.
    fn two_objects() -> (SqliteSink, i64, i64) {
        let mut sink = SqliteSink::open(Path::new(":memory:"), true).unwrap();
        let entry =
            |id: &str| IndexEntry { class: "Shop".into(), id: id.into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
        sink.record_index_page("ws://s", "w", &[entry("aa"), entry("bb")]).unwrap();
        let targets = sink.targets("ws://s", "", false).unwrap();
        (sink, targets[0].do_id, targets[1].do_id)
    }

    fn page(columns: &[&str], rows: Vec<(&str, Option<Vec<SqlValue>>)>) -> SqlPage {
        SqlPage {
            table: "items".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows.into_iter().map(|(k, v)| SqlRow { k: k.into(), v }).collect(),
        }
    }

    fn rows(sink: &SqliteSink, query: &str) -> Vec<Vec<Value>> {
        let mut stmt = sink.conn.prepare(query).unwrap();
        let width = stmt.column_count();
        stmt.query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect()).unwrap().map(Result::unwrap).collect()
    }

    /// A row short of (or past) its page's columns fails the page whole: no row of it is
    /// written, and none takes the values the row before it bound.
    #[test]
    fn a_row_of_the_wrong_width_fails_its_page_whole() {
        let (mut sink, a, _) = two_objects();
        let write = sink.begin(a, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        let (int, text) = (SqlValue::Integer, |t: &str| SqlValue::Text(t.into()));
        let (int_value, text_value) = (Value::Integer, |t: &str| Value::Text(t.into()));
        for short in [vec![int(2)], vec![int(2), text("b"), int(3)]] {
            let bad = page(&["id", "name"], vec![("1", Some(vec![int(1), text("a")])), ("2", Some(short))]);
            assert!(sink.apply_sql(write, &bad).is_err());
        }
        sink.apply_sql(write, &page(&["id", "name"], vec![("3", Some(vec![int(3), text("c")]))])).unwrap();
        assert_eq!(
            rows(&sink, r#"SELECT _row_key, id, name FROM "Shop.items""#),
            [vec![Value::Text("3".into()), int_value(3), text_value("c")]]
        );
    }

    /// Objects of one class on different schemas share one local table whose columns are the
    /// union; a changes page replaces rows and deletes them; a snapshot sweeps what it did not
    /// send; `--history` keeps each real change, not a snapshot's resend of an unchanged row.
    #[test]
    fn one_local_table_per_class_and_table_with_history_of_real_changes() {
        let (mut sink, a, b) = two_objects();
        let (int, text) = (SqlValue::Integer, |t: &str| SqlValue::Text(t.into()));
        let write = sink.begin(a, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply_sql(
            write,
            &page(&["id", "name"], vec![("1", Some(vec![int(1), text("tea")])), ("2", Some(vec![int(2), text("cake")]))]),
        )
        .unwrap();
        sink.finish(write, Cursor::new(1, 0), 5).unwrap();
        let write = sink.begin(b, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply_sql(write, &page(&["id", "name", "do_id"], vec![("1", Some(vec![int(1), text("old"), int(7)]))])).unwrap();
        sink.finish(write, Cursor::new(1, 0), 1).unwrap();
        assert_eq!(
            rows(&sink, r#"SELECT do_id, _row_key, id, name, do_id_sql FROM "Shop.items" ORDER BY do_id, _row_key"#),
            [
                vec![Value::Integer(a), Value::Text("1".into()), Value::Integer(1), Value::Text("tea".into()), Value::Null],
                vec![Value::Integer(a), Value::Text("2".into()), Value::Integer(2), Value::Text("cake".into()), Value::Null],
                vec![Value::Integer(b), Value::Text("1".into()), Value::Integer(1), Value::Text("old".into()), Value::Integer(7)],
            ]
        );

        let write = sink.begin(a, ExportMode::Changes, Cursor::new(1, 0), "", false).unwrap();
        let stats = sink.apply_sql(write, &page(&["id", "name"], vec![("1", Some(vec![int(1), text("green tea")])), ("2", None)])).unwrap();
        assert_eq!((stats.written, stats.deleted), (1, 1));
        sink.finish(write, Cursor::new(1, 0), 7).unwrap();
        let write = sink.begin(a, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply_sql(
            write,
            &page(&["id", "name"], vec![("3", Some(vec![int(3), text("scone")])), ("1", Some(vec![int(1), text("green tea")]))]),
        )
        .unwrap();
        assert_eq!(sink.finish(write, Cursor::new(1, 0), 9).unwrap(), Swept::default(), "nothing unsent to sweep");
        let write = sink.begin(a, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply_sql(write, &page(&["id", "name"], vec![("3", Some(vec![int(3), text("scone")]))])).unwrap();
        assert_eq!(sink.finish(write, Cursor::new(1, 0), 9).unwrap(), Swept { keys: 0, rows: 1 }, "row 1 was not sent: swept");
        assert_eq!(
            rows(&sink, &format!("SELECT row_key, deleted, row FROM sql_history WHERE do_id = {a} ORDER BY history_id")),
            [
                vec![Value::Text("1".into()), Value::Integer(0), Value::Text(r#"{"id":1,"name":"tea"}"#.into())],
                vec![Value::Text("2".into()), Value::Integer(0), Value::Text(r#"{"id":2,"name":"cake"}"#.into())],
                vec![Value::Text("1".into()), Value::Integer(0), Value::Text(r#"{"id":1,"name":"green tea"}"#.into())],
                vec![Value::Text("2".into()), Value::Integer(1), Value::Null],
                vec![Value::Text("3".into()), Value::Integer(0), Value::Text(r#"{"id":3,"name":"scone"}"#.into())],
                vec![Value::Text("1".into()), Value::Integer(1), Value::Null],
            ]
        );
        let held: i64 = sink.conn.query_row("SELECT local_sql_seq FROM durable_objects WHERE do_id = ?1", [a], |r| r.get(0)).unwrap();
        assert_eq!(held, 9, "the SQL cursor is saved with the rows");

        // --verify=full counts the rows that differ from the file's; a plain pull counts none.
        let write = sink.begin(a, ExportMode::Snapshot, Cursor::new(1, 0), "", true).unwrap();
        let stats = sink
            .apply_sql(
                write,
                &page(&["id", "name"], vec![("3", Some(vec![int(3), text("scone")])), ("4", Some(vec![int(4), text("new")]))]),
            )
            .unwrap();
        assert_eq!(stats.differed, 1);
        sink.finish(write, Cursor::new(1, 0), 10).unwrap();
        let write = sink.begin(a, ExportMode::Changes, Cursor::new(1, 0), "", false).unwrap();
        let stats = sink.apply_sql(write, &page(&["id", "name"], vec![("4", Some(vec![int(4), text("changed")]))])).unwrap();
        assert_eq!(stats.differed, 0, "only --verify=full compares");
    }
}
