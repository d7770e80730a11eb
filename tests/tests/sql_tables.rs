//! The SQL tables of a SQLite-backed object, end to end: statements of every kind run in the
//! example's `CounterSql` objects from fetch, alarm and a hibernated WebSocket, inside committed
//! and rolled-back transactions, and schema changes mid-life; after each step a pull, and each
//! local table must equal the object's own `SELECT` row for row, type for type.

use std::time::Duration;

use durafetch_e2e::sql_tables::{pull_until_tables_match, query, sql};
use durafetch_e2e::{LocalWorker, TOKEN};
use serde_json::json;

#[test]
fn sql_tables_are_pulled_exactly_through_every_kind_of_change() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sql.sqlite");

    // A composite key without rowid, an INTEGER PRIMARY KEY with a UNIQUE column, a table with
    // no declared key, made in one multi-statement exec; then the exact values.
    sql(
        &worker,
        "shop",
        "CREATE TABLE pairs (a INTEGER, b TEXT, v, PRIMARY KEY (a, b)) WITHOUT ROWID;
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, qty REAL);
         CREATE TABLE notes (body);
         CREATE TABLE pairs_rowid (a, b, v, PRIMARY KEY (a, b));
         INSERT INTO pairs_rowid VALUES (1, 'x', 'a' || char(0) || 'b'), ('1', X'00', 2.5), (NULL, 1, 'a null in a key');
         INSERT INTO pairs VALUES (-9223372036854775808, 'min', 9223372036854775807), (9007199254740993, 'é😀\"''', 3.0),
             (1, '', X'00FF00'), (2, 'null', NULL), (3, 'inf', 1e999), (4, '-inf', -1e999), (5, 'x', '');",
    );
    sql(&worker, "shop", "INSERT INTO items (id, name, qty) VALUES (1, 'apple', 1.5), (2, 'pear', 2), (5, 'dup', 7)");
    // A blob larger than the chunks its page is written in, and reals whose shortest text has
    // no fraction.
    sql(&worker, "shop", "INSERT INTO notes VALUES ('first'), ('second'), ('third'), (randomblob(100000)), (1e21), (5e-324), (3.0)");
    let runs = pull_until_tables_match(&worker, &db, &["shop"], "created and filled");
    assert!(runs[0].snapshots() >= 1);
    // The object holds rows and no keys, and the summary counts them so.
    let total = |field: &str| runs.iter().map(|run| run.count_of(field)).sum::<u64>();
    assert_eq!(total("keys_written"), 0);
    assert!(total("rows_written") >= 20, "20 rows: {}", total("rows_written"));

    // UPDATE (of a key too), DELETE, UPSERT, INSERT OR REPLACE over a UNIQUE column (its
    // removed row fires no trigger unless recursive_triggers is on), multi-statement.
    sql(
        &worker,
        "shop",
        "UPDATE items SET qty = qty * 2;
         UPDATE pairs SET a = 100 WHERE a = 1;
         DELETE FROM notes WHERE body = 'second';
         INSERT INTO items (id, name, qty) VALUES (2, 'pear', 9) ON CONFLICT (id) DO UPDATE SET qty = excluded.qty;
         INSERT OR REPLACE INTO items (id, name, qty) VALUES (10, 'dup', 1);
         UPDATE notes SET rowid = 50 WHERE body = 'third';",
    );
    let runs = pull_until_tables_match(&worker, &db, &["shop"], "updated");
    assert_eq!(runs.last().unwrap().snapshots(), 0, "changes are pulled incrementally");

    // INSERT OR REPLACE over a UNIQUE column removes another row, which fires no delete trigger
    // unless recursive_triggers is on; that row changed in no other way since the last pull.
    sql(&worker, "shop", "INSERT OR REPLACE INTO items (id, name, qty) VALUES (11, 'pear', 4)");
    sql(&worker, "shop", "UPDATE pairs_rowid SET b = 'y' WHERE a = 1; DELETE FROM pairs_rowid WHERE a IS NULL");
    // Inside transactions: committed, and rolled back (which leaves no record).
    let txn = |sql: &[&str], rollback: bool| json!([{"op": "transaction", "sql": sql, "rollback": rollback}]).to_string();
    worker.post("sql/shop/ops", &txn(&["INSERT INTO notes VALUES ('in a transaction')", "DELETE FROM items WHERE id = 1"], false));
    worker.post("sql/shop/ops", &txn(&["INSERT INTO notes VALUES ('rolled back')", "DELETE FROM items"], true));
    // Inside `transactionSync`, called as the README shows: committed, and failed (none commits).
    let sync = |sql: &[&str], fail: bool| json!([{"op": "sql_sync", "sql": sql, "fail": fail}]).to_string();
    worker
        .post("sql/shop/ops", &sync(&["INSERT INTO notes VALUES ('in transactionSync')", "UPDATE items SET qty = 0 WHERE id = 2"], false));
    worker.post("sql/shop/ops", &sync(&["INSERT INTO notes VALUES ('failed transactionSync')", "DELETE FROM items"], true));
    assert_eq!(
        query(&worker, "shop", "SELECT body FROM notes WHERE body LIKE '%transactionSync'"),
        vec![vec![json!("in transactionSync")]]
    );
    // From an alarm and from a hibernated WebSocket's message handler.
    worker.post("sql/shop/ops_in_alarm", &json!([{"op": "sql", "sql": "INSERT INTO notes VALUES ('from the alarm')"}]).to_string());
    let (mut socket, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/sql/shop/socket", worker.port)).unwrap();
    socket
        .send(tungstenite::Message::text(format!("ops:{}", json!([{"op": "sql", "sql": "INSERT INTO notes VALUES ('from a socket')"}]))))
        .unwrap();
    assert_eq!(socket.read().unwrap().into_text().unwrap().as_str(), "ok");
    let mut alarm_ran = false;
    for _ in 0..100 {
        alarm_ran = !query(&worker, "shop", "SELECT 1 FROM notes WHERE body = 'from the alarm'").is_empty();
        if alarm_ran {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(alarm_ran, "the alarm never ran");
    pull_until_tables_match(&worker, &db, &["shop"], "transactions, alarm and socket");
    assert_eq!(query(&worker, "shop", "SELECT count(*) FROM notes WHERE body = 'rolled back'"), vec![vec![json!(0.0)]]);

    // Schema changes mid-life: a column added (existing rows take its default), one renamed,
    // one dropped, a table dropped, one recreated with another schema; a second object of the
    // class on an older schema shares the local table.
    sql(&worker, "shop", "ALTER TABLE notes ADD COLUMN tag TEXT DEFAULT 'untagged'");
    sql(&worker, "shop", "ALTER TABLE items RENAME COLUMN qty TO amount");
    sql(&worker, "shop", "ALTER TABLE notes DROP COLUMN tag; ALTER TABLE notes ADD COLUMN flag INTEGER DEFAULT 1");
    sql(&worker, "shop", "DROP TABLE pairs");
    sql(
        &worker,
        "other",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty REAL); INSERT INTO items VALUES (1, 'old schema', 0.5)",
    );
    pull_until_tables_match(&worker, &db, &["shop", "other"], "schema changes");
    sql(&worker, "shop", "CREATE TABLE pairs (z BLOB); INSERT INTO pairs VALUES (X'01'), (NULL)");
    sql(
        &worker,
        "shop",
        "DROP TABLE notes; CREATE TABLE notes (body TEXT PRIMARY KEY) WITHOUT ROWID; INSERT INTO notes VALUES ('recreated at once')",
    );
    pull_until_tables_match(&worker, &db, &["shop", "other"], "tables recreated");

    // A call whose last statement fails after a table was made and written: the table is
    // recorded all the same, and so are later writes to it.
    let failed = worker.try_post(
        "sql/shop/ops",
        &json!([{"op": "sql", "sql": "CREATE TABLE late (a); INSERT INTO late VALUES (1); INSERT INTO no_such_table VALUES (2)"}])
            .to_string(),
    );
    assert!(failed.is_err(), "the last statement fails");
    if !query(&worker, "shop", "SELECT 1 FROM pragma_table_list WHERE name = 'late'").is_empty() {
        sql(&worker, "shop", "INSERT INTO late VALUES (3)");
    }
    pull_until_tables_match(&worker, &db, &["shop", "other"], "after a failed call");

    // durafetch's names are its own: a statement naming them fails, with a message saying why.
    let refused = worker.try_post("sql/shop/ops", &json!([{"op": "sql", "sql": "CREATE TABLE _durafetch_mine (x)"}]).to_string());
    let (status, body) = refused.expect_err("a table under durafetch's prefix is refused");
    assert_eq!(status, 500);
    assert!(body.contains("names durafetch's change log"), "{body}");

    // delete_all wipes the SQL tables too; the file follows.
    worker.post("sql/other/delete_all", "");
    pull_until_tables_match(&worker, &db, &["shop", "other"], "after delete_all");
}

/// Rows changed by a cascade and by the user's own triggers are recorded like any other; a
/// virtual table and its shadow tables are left alone; two objects storing different types in one
/// column keep each its own, exactly.
#[test]
fn cascades_user_triggers_virtual_tables_and_mixed_types() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sql.sqlite");
    sql(
        &worker,
        "family",
        "PRAGMA foreign_keys = ON;
         CREATE TABLE parents (id INTEGER PRIMARY KEY);
         CREATE TABLE kids (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents (id) ON DELETE CASCADE);
         CREATE TABLE audit (what TEXT);
         CREATE TRIGGER audit_kids AFTER DELETE ON kids BEGIN INSERT INTO audit VALUES ('kid ' || OLD.id); END;
         CREATE VIRTUAL TABLE docs USING fts5 (body);
         INSERT INTO docs VALUES ('hello world');
         INSERT INTO parents VALUES (1), (2);
         INSERT INTO kids VALUES (10, 1), (11, 1), (20, 2);",
    );
    // REAL keys without rowid: a snapshot pages through them by their literals, which must be exact.
    sql(
        &worker,
        "family",
        "CREATE TABLE reals (k REAL PRIMARY KEY, v) WITHOUT ROWID;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO reals SELECT i / 3.0, i FROM n;",
    );
    // Generated columns, virtual and stored: `SELECT *` shows them, so the file holds them.
    sql(
        &worker,
        "family",
        "CREATE TABLE sizes (id INTEGER PRIMARY KEY, w REAL, h REAL, area AS (w * h), label TEXT GENERATED ALWAYS AS ('#' || id) STORED);
         INSERT INTO sizes (id, w, h) VALUES (1, 2, 3), (2, 0.5, NULL);",
    );
    sql(&worker, "mixed-a", "CREATE TABLE mixed (v); INSERT INTO mixed VALUES ('text'), (1.5)");
    sql(&worker, "mixed-b", "CREATE TABLE mixed (v); INSERT INTO mixed VALUES (42), (X'2A')");
    let runs = pull_until_tables_match(&worker, &db, &["family", "mixed-a", "mixed-b"], "filled");
    // The virtual table is refused loudly: the pull that downloads its object says so.
    let listed = runs.iter().any(|run| {
        run.summary
            .as_ref()
            .is_some_and(|s| s["tables_not_recorded"].as_array().is_some_and(|t| t.contains(&json!("CounterSql family: docs"))))
    });
    assert!(listed, "{:?}", runs.iter().map(|r| &r.summary).collect::<Vec<_>>());
    sql(&worker, "family", "PRAGMA foreign_keys = ON; DELETE FROM parents WHERE id = 1; UPDATE sizes SET h = 4 WHERE id = 2");
    assert_eq!(query(&worker, "family", "SELECT count(*) FROM audit"), vec![vec![json!(2.0)]], "the cascade ran the user's trigger");
    pull_until_tables_match(&worker, &db, &["family", "mixed-a", "mixed-b"], "cascaded");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let virtual_tables: i64 = conn.query_row("SELECT count(*) FROM sql_tables WHERE table_name LIKE 'docs%'", [], |r| r.get(0)).unwrap();
    assert_eq!(virtual_tables, 0, "virtual tables and their shadow tables are not recorded");

    // --table and --exclude-table choose tables by name.
    let filtered = dir.path().join("filtered.sqlite");
    let run = worker.pull_with(
        &filtered,
        TOKEN,
        &["--table", "*s", "--exclude-table", "parents", "--exclude-table", "r*", "--exclude-table", "si*"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let conn = rusqlite::Connection::open(&filtered).unwrap();
    let mut stmt = conn.prepare("SELECT table_name FROM sql_tables ORDER BY 1").unwrap();
    let tables: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(tables, ["kids"]);
    let kids: i64 = conn.query_row(r#"SELECT count(*) FROM "CounterSql.kids""#, [], |r| r.get(0)).unwrap();
    assert_eq!(kids, 1);
}

/// A row updated a million times keeps one change record: 1,000 rows updated 1,000 times each
/// leave at most 2,000 records, and a pull brings the last values.
#[test]
fn a_million_updates_of_a_thousand_rows_keep_at_most_two_thousand_records() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sql.sqlite");
    sql(
        &worker,
        "hot",
        "CREATE TABLE hot (id INTEGER PRIMARY KEY, v INTEGER);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO hot SELECT i, 0 FROM n;",
    );
    // 1,000 statements of 1,000 row updates, 100 statements a request.
    let round = "UPDATE hot SET v = v + 1;".repeat(100);
    for _ in 0..10 {
        worker.post("sql/hot/ops", &json!([{"op": "sql", "sql": round}]).to_string());
    }
    assert_eq!(query(&worker, "hot", "SELECT min(v), max(v) FROM hot"), vec![vec![json!(1000.0), json!(1000.0)]]);
    let records: u64 = worker.get_text("sql/hot/sql_log_rows").trim().parse().unwrap();
    assert!(records <= 2000, "{records} change records for 1,000 rows");
    pull_until_tables_match(&worker, &db, &["hot"], "after a million updates");
}
