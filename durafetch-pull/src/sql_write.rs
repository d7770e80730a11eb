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
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::object_write::{ApplyStats, ObjectWrite};

pub(crate) const SQL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sql_tables (
    worker_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    table_name TEXT NOT NULL,
    local_table TEXT NOT NULL,
    PRIMARY KEY (worker_name, class_name, table_name)
);
";

/// durafetch's own columns of a local table. A source column of one of these names (any case)
/// lands as `<name>_sql`.
const OWN_COLUMNS: [&str; 3] = ["do_id", "_row_key", "_pull_gen"];

fn local_table_name(class: &str, table: &str) -> String {
    format!("{class}.{table}")
}

fn local_column_name(column: &str) -> String {
    if OWN_COLUMNS.iter().any(|own| own.eq_ignore_ascii_case(column)) {
        format!("{column}_sql")
    } else {
        column.to_owned()
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_sql(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(t) => Value::Text(t.clone()),
        SqlValue::Blob(b) => Value::Blob(b.clone()),
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
    let mut delete = tx.prepare_cached(&format!("DELETE FROM {} WHERE do_id = ?1 AND _row_key = ?2", ident(&local)))?;
    let mut stats = ApplyStats::default();
    for row in &page.rows {
        match &row.v {
            Some(values) => {
                let mut bound: Vec<Value> = vec![Value::Integer(write.do_id), Value::Text(row.k.clone()), Value::Integer(stamp)];
                bound.extend(values.iter().map(to_sql));
                replace.execute(params_from_iter(bound))?;
                stats.written += 1;
            }
            None => stats.deleted += delete.execute(params![write.do_id, row.k])? as u64,
        }
    }
    Ok(stats)
}

/// Drops the object's rows of a table it no longer has.
pub(crate) fn drop_sql_table(tx: &Connection, write: &ObjectWrite, table: &str) -> rusqlite::Result<ApplyStats> {
    let Some(local) = local_table(tx, write, table, None)? else { return Ok(ApplyStats::default()) };
    let deleted = tx.execute(&format!("DELETE FROM {} WHERE do_id = ?1", ident(&local)), [write.do_id])? as u64;
    Ok(ApplyStats { deleted, ..ApplyStats::default() })
}

/// The local tables of the download's class.
fn class_tables(conn: &Connection, worker: &str, class: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT local_table FROM sql_tables WHERE worker_name = ?1 AND class_name = ?2")?;
    let tables = stmt.query_map(params![worker, class], |r| r.get(0))?.collect();
    tables
}

/// Whether the file holds SQL rows of the object.
pub(crate) fn holds_sql_rows(conn: &Connection, worker: &str, class: &str, do_id: i64) -> rusqlite::Result<bool> {
    for local in class_tables(conn, worker, class)? {
        let held: bool =
            conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {} WHERE do_id = ?1)", ident(&local)), [do_id], |r| r.get(0))?;
        if held {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops the object's SQL rows stamped below `below`: rows a snapshot did not send.
pub(crate) fn sweep_sql_rows(tx: &Connection, write: &ObjectWrite, below: i64) -> rusqlite::Result<u64> {
    let mut swept = 0;
    for local in class_tables(tx, &write.worker, &write.class)? {
        swept += tx.execute(
            &format!("DELETE FROM {} WHERE do_id = ?1 AND (_pull_gen IS NULL OR _pull_gen < ?2)", ident(&local)),
            params![write.do_id, below],
        )? as u64;
    }
    Ok(swept)
}
