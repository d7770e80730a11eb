//! What instrumenting a SQLite-backed object must never do: run stored data as SQL, change what
//! the app's own statements do, or lose a row in the cases apps hit (schema changes while an
//! export is open, `deleteAll()`, NULL keys, rows a `REPLACE` removes, open transactions).

use durafetch_e2e::sql_tables::{pull_until_tables_match, query, sql};
use durafetch_e2e::{LocalWorker, TOKEN};
use serde_json::json;

/// A user column named `rowid` hides the rowid; its text, however hostile, is only ever bound.
/// A snapshot of 6,000 such rows pages through all of them and runs none of them.
#[test]
fn stored_text_is_never_run_as_sql() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.sqlite");
    let hostile = r#"0 LIMIT 0; DELETE FROM victims; SELECT 1 FROM "rt" AS t WHERE 0"#;
    sql(
        &worker,
        "hostile",
        &format!(
            "CREATE TABLE victims (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO victims VALUES (1, 'a'), (2, 'b'), (3, 'c');
             CREATE TABLE rt (rowid TEXT, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
                 INSERT INTO rt SELECT '{}', i FROM n;
             CREATE TABLE keyed (a TEXT, b BLOB, c INTEGER, v, PRIMARY KEY (a, b, c)) WITHOUT ROWID;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                 INSERT INTO keyed SELECT '{}' || (i % 7), X'00' || randomblob(i % 3), 9007199254740993 + i, i FROM n;",
            hostile.replace('\'', "''"),
            hostile.replace('\'', "''")
        ),
    );
    pull_until_tables_match(&worker, &dir.path().join("hostile.sqlite"), &["hostile"], "snapshot of hostile text");
    assert_eq!(query(&worker, "hostile", "SELECT count(*) FROM victims"), vec![vec![json!(3.0)]], "a pull ran stored text");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rt: i64 = conn.query_row(r#"SELECT count(*) FROM "CounterSql.rt""#, [], |r| r.get(0)).unwrap();
    assert_eq!(rt, 6000);
    let keyed: i64 = conn.query_row(r#"SELECT count(*) FROM "CounterSql.keyed""#, [], |r| r.get(0)).unwrap();
    assert_eq!(keyed, 3000);
}
