//! What the end-to-end tests of SQL tables share: statements run in the example's `CounterSql`
//! objects, their rows read back exactly, and pulls until each local table equals the object's own
//! `SELECT`, row for row, type for type.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{LocalWorker, PullRun, TOKEN};

/// Every column of a row as its type and exact value: INTEGER as text, BLOB as hex, REAL as
/// itself (or `inf` / `-inf`), TEXT as itself.
pub fn exact(column: &str) -> String {
    let c = format!("\"{}\"", column.replace('"', "\"\""));
    format!(
        "typeof({c}), CASE typeof({c}) WHEN 'integer' THEN CAST({c} AS TEXT) WHEN 'blob' THEN hex({c}) \
         WHEN 'real' THEN CASE WHEN {c} = 1e999 THEN 'inf' WHEN {c} = -1e999 THEN '-inf' ELSE {c} END ELSE {c} END"
    )
}

/// A JSON value with every number as a double: JS renders the REAL 3.0 as `3`.
pub fn normal(value: Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        other => other,
    }
}

pub type Rows = Vec<Vec<Value>>;

pub fn sorted(mut rows: Rows) -> Rows {
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

pub fn sql(worker: &LocalWorker, object: &str, statements: &str) {
    worker.post(&format!("sql/{object}/ops"), &json!([{"op": "sql", "sql": statements}]).to_string());
}

pub fn query(worker: &LocalWorker, object: &str, query: &str) -> Rows {
    let rows: Rows = serde_json::from_str(&worker.post_text(&format!("sql/{object}/sql_query"), query)).unwrap();
    rows.into_iter().map(|r| r.into_iter().map(normal).collect()).collect()
}

/// The object's user tables and their columns, as `SELECT *` sees them: generated columns
/// included (`pragma_table_xinfo`, where `pragma_table_info` leaves them out).
pub fn source_tables(worker: &LocalWorker, object: &str) -> BTreeMap<String, Vec<String>> {
    let tables = query(
        worker,
        object,
        r"SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'
          AND name NOT LIKE '\_cf\_%' ESCAPE '\' AND name NOT LIKE '\_durafetch\_%' ESCAPE '\' AND name NOT LIKE '\_\_miniflare\_%' ESCAPE '\'",
    );
    tables
        .into_iter()
        .map(|t| {
            let name = t[0].as_str().unwrap().to_owned();
            let columns = query(worker, object, &format!("SELECT name FROM pragma_table_xinfo('{name}') ORDER BY cid"));
            (name, columns.into_iter().map(|c| c[0].as_str().unwrap().to_owned()).collect())
        })
        .collect()
}

/// Each table's rows as the object holds them, and as the file holds them for that object.
pub fn both_sides(worker: &LocalWorker, db: &Path, object: &str) -> (BTreeMap<String, Rows>, BTreeMap<String, Rows>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let do_id: Option<i64> =
        conn.query_row("SELECT do_id FROM durable_objects WHERE class_name = 'CounterSql' AND name = ?1", [object], |r| r.get(0)).ok();
    let mut source = BTreeMap::new();
    let mut local = BTreeMap::new();
    let tables = source_tables(worker, object);
    for (table, columns) in &tables {
        let projection: Vec<String> = columns.iter().map(|c| exact(c)).collect();
        source.insert(table.clone(), sorted(query(worker, object, &format!("SELECT {} FROM \"{table}\"", projection.join(", ")))));
        let rows = local_rows(&conn, table, &projection, do_id).unwrap_or_default();
        local.insert(table.clone(), sorted(rows));
    }
    // A table the object does not have holds none of its rows in the file.
    let mut stmt = conn.prepare("SELECT table_name, local_table FROM sql_tables WHERE class_name = 'CounterSql'").unwrap();
    let catalog: Vec<(String, String)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    for (table, local_table) in catalog.iter().filter(|(t, _)| !tables.contains_key(t)) {
        let held: i64 =
            conn.query_row(&format!("SELECT count(*) FROM \"{local_table}\" WHERE do_id IS ?1"), [do_id], |r| r.get(0)).unwrap();
        local.insert(table.clone(), vec![vec![json!(format!("{held} rows of a table the object lacks"))]; usize::from(held > 0)]);
        source.insert(table.clone(), vec![]);
    }
    (source, local)
}

pub fn local_rows(conn: &rusqlite::Connection, table: &str, projection: &[String], do_id: Option<i64>) -> Option<Rows> {
    let local_table: String = conn
        .query_row("SELECT local_table FROM sql_tables WHERE class_name = 'CounterSql' AND table_name = ?1", [table], |r| r.get(0))
        .ok()?;
    let mut stmt = conn.prepare(&format!("SELECT {} FROM \"{local_table}\" WHERE do_id IS ?1", projection.join(", "))).ok()?;
    let width = stmt.column_count();
    let rows = stmt
        .query_map([do_id], |r| {
            (0..width)
                .map(|i| {
                    Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Null => Value::Null,
                        rusqlite::types::Value::Integer(n) => json!(n as f64),
                        rusqlite::types::Value::Real(x) => json!(x),
                        rusqlite::types::Value::Text(t) => json!(t),
                        rusqlite::types::Value::Blob(_) => json!("<blob>"),
                    })
                })
                .collect::<rusqlite::Result<Vec<Value>>>()
        })
        .ok()?;
    Some(rows.map(Result::unwrap).collect())
}

/// Pulls until every listed object's tables in the file equal the object's own.
pub fn pull_until_tables_match(worker: &LocalWorker, db: &Path, objects: &[&str], step: &str) -> Vec<PullRun> {
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..50 {
        let run = worker.pull(db, TOKEN);
        assert_eq!(run.code, Some(0), "{step}: {}", run.stderr);
        runs.push(run);
        let sides: Vec<_> = objects.iter().map(|o| both_sides(worker, db, o)).collect();
        if sides.iter().all(|(source, local)| source == local) {
            return runs;
        }
        last = Some(sides);
        std::thread::sleep(Duration::from_millis(100));
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").unwrap();
    let schema: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    panic!(
        "{step}: the file never matched the objects: {last:#?}\nthe file's schema: {schema:#?}\nlast pull: {}\n{:?}",
        runs.last().unwrap().stderr,
        runs.last().unwrap().summary
    );
}
