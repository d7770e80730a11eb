//! What instrumenting a SQLite-backed object must never do: run stored data as SQL, change what
//! the app's own statements do, or lose a row in the cases apps hit (schema changes while an
//! export is open, `deleteAll()`, NULL keys, rows a `REPLACE` removes, open transactions).

use durafetch_e2e::sql_tables::{pull_until_tables_match, query, sql};
use durafetch_e2e::{api_socket, row_value, LocalWorker, TOKEN};
use serde_json::json;
use tungstenite::Message;

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
                 INSERT INTO keyed SELECT '{}' || char(0) || (i % 7), CAST(printf('%x', i % 5) AS BLOB), 9007199254740993 + i, i FROM n;",
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

    // A table whose columns hide its rowid cannot be keyed safely: it is refused, and every pull
    // of that object says so in its summary.
    sql(&worker, "unkeyable", "CREATE TABLE hidden (rowid, _rowid_, oid); INSERT INTO hidden VALUES (1, 2, 3)");
    let mut said = serde_json::Value::Null;
    for _ in 0..50 {
        let run = worker.pull(&db, TOKEN);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        said = run.summary.clone().unwrap_or_default()["tables_not_recorded"].clone();
        if said != json!([]) && !said.is_null() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(said, json!(["CounterSql unkeyable: hidden"]));
    assert!(worker.logged("hide its rowid"), "the object logs why: {}", worker.logs());
}

/// One statement's outcome in an object: its rows, or its error.
fn outcome(worker: &LocalWorker, class: &str, object: &str, statement: &str) -> Result<Vec<Vec<serde_json::Value>>, String> {
    match worker.try_post_text(&format!("{class}/{object}/sql_query"), statement) {
        Ok(text) => Ok(serde_json::from_str(&text).unwrap()),
        Err((status, body)) => Err(format!("{status}: {body}")),
    }
}

/// Runs each statement in an instrumented object and in a plain one of the same code: every
/// result and every error must be the same.
fn same_in_both(worker: &LocalWorker, object: &str, statements: &[&str]) {
    for statement in statements {
        let instrumented = outcome(worker, "sql", object, statement);
        let plain = outcome(worker, "plain", object, statement);
        assert_eq!(instrumented, plain, "{statement}");
    }
}

/// The user's own triggers, REPLACE on a second UNIQUE column and `RETURNING` behave exactly as
/// in a plain object, before and after `deleteAll()`; every row a REPLACE removed is gone from
/// the file too.
#[test]
fn the_apps_statements_behave_as_in_a_plain_object() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("invisible.sqlite");
    let script = [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE, sku TEXT UNIQUE COLLATE NOCASE, touched INTEGER DEFAULT 0)",
        "CREATE TABLE removed (what TEXT)",
        "CREATE TRIGGER touch AFTER UPDATE ON items BEGIN UPDATE items SET touched = touched + 1 WHERE id = NEW.id; END",
        "CREATE TRIGGER gone AFTER DELETE ON items BEGIN INSERT INTO removed VALUES (OLD.name); END",
        "INSERT INTO items (id, name, sku) VALUES (1, 'apple', 'a'), (2, 'pear', 'p'), (3, 'fig', 'f') RETURNING id, name",
        "UPDATE items SET name = 'green apple' WHERE id = 1",
        "PRAGMA recursive_triggers",
        "INSERT OR REPLACE INTO items (id, name, sku) VALUES (10, 'pear', 'x')",
        "REPLACE INTO items (id, name, sku) VALUES (11, 'kiwi', 'F')",
        "INSERT INTO items (id, name, sku) VALUES (12, 'apple', 'A') ON CONFLICT (sku) DO UPDATE SET touched = 100 RETURNING *",
        "SELECT * FROM items ORDER BY id",
        "SELECT * FROM removed",
        "INSERT INTO notes_durafetch VALUES (1)",
        "SELECT 'a literal' AS \"'\", 'it''s'",
        // A column that a UNIQUE index named, dropped in the same call as the index.
        "CREATE TABLE dc (id INTEGER PRIMARY KEY, w); CREATE UNIQUE INDEX dc_w ON dc (w); INSERT INTO dc VALUES (1, 1)",
        "DROP INDEX dc_w; ALTER TABLE dc DROP COLUMN w",
        "SELECT * FROM dc",
        // The sync after a schema statement leaves the app's last_insert_rowid() alone.
        "INSERT INTO items (id, name, sku) VALUES (50, 'last', 'l'); CREATE TABLE later (x)",
        "SELECT last_insert_rowid()",
    ];
    same_in_both(&worker, "app", &script);
    pull_until_tables_match(&worker, &db, &["app"], "the app's statements");
    // durafetch's own names, even where SQLite takes a string literal for a name, are refused.
    for statement in ["DELETE FROM '_durafetch_changes'", "DROP TABLE [_DURAFETCH_tables]"] {
        let refused = outcome(&worker, "sql", "app", statement).expect_err(statement);
        assert!(refused.contains("names durafetch's change log"), "{statement}: {refused}");
    }
    for class in ["sql", "plain"] {
        worker.post(&format!("{class}/app/delete_all"), "");
    }
    same_in_both(&worker, "app", &script);
    same_in_both(&worker, "app", &["INSERT OR REPLACE INTO items (id, name, sku) VALUES (20, 'green apple', 'q')", "SELECT * FROM items"]);
    pull_until_tables_match(&worker, &db, &["app"], "after deleteAll");
    // The user may turn recursive_triggers on themselves: then a REPLACE fires their delete
    // trigger, and the capture records the row either way.
    same_in_both(
        &worker,
        "app",
        &["PRAGMA recursive_triggers = ON; INSERT OR REPLACE INTO items (id, name, sku) VALUES (30, 'kiwi', 'z')", "SELECT * FROM removed"],
    );
    pull_until_tables_match(&worker, &db, &["app"], "the user's own recursive_triggers");
}

/// A rowid table's declared key may hold NULL, any number of times: each such row is its own
/// row in the file, and an update reaches the right one.
#[test]
fn rows_with_a_null_key_are_kept_apart() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nulls.sqlite");
    sql(
        &worker,
        "nulls",
        "CREATE TABLE np (a TEXT PRIMARY KEY, v); INSERT INTO np VALUES (NULL, 1), (NULL, 2), ('x', 3);
         CREATE TABLE pair (a, b, v, PRIMARY KEY (a, b)); INSERT INTO pair VALUES (1, NULL, 'p'), (1, NULL, 'q'), (NULL, NULL, 'r');",
    );
    pull_until_tables_match(&worker, &db, &["nulls"], "NULL keys");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let held: i64 = conn.query_row(r#"SELECT count(*) FROM "CounterSql.np""#, [], |r| r.get(0)).unwrap();
    assert_eq!(held, 3);
    sql(&worker, "nulls", "UPDATE np SET v = 20 WHERE v = 2; DELETE FROM pair WHERE v = 'q'; UPDATE np SET a = 'y' WHERE v = 1");
    pull_until_tables_match(&worker, &db, &["nulls"], "NULL keys updated");
}

/// Schema statements the capture must notice however they are written: behind a comment, in a
/// multi-statement call, renamed to another case through a second name.
#[test]
fn schema_changes_are_noticed_however_they_are_written() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ddl.sqlite");
    sql(&worker, "ddl", "/* v2; add */ CREATE TABLE c2 (a); INSERT INTO c2 VALUES (1)");
    sql(
        &worker,
        "ddl",
        "INSERT INTO c2 VALUES (2) -- then\n; /**/ALTER/**/TABLE c2 ADD COLUMN b DEFAULT 'b'; INSERT INTO c2 VALUES (3, 'c')",
    );
    pull_until_tables_match(&worker, &db, &["ddl"], "DDL behind comments");
    // Renamed twice in one call (a rename that changes only case is what the unit tests of the
    // triggers' names cover: local tables' names in the file do not tell case apart).
    sql(&worker, "ddl", "ALTER TABLE c2 RENAME TO tmp; ALTER TABLE tmp RENAME TO c3; INSERT INTO c3 VALUES (4, 'd')");
    sql(&worker, "ddl", "INSERT INTO c3 VALUES (5, 'e')");
    pull_until_tables_match(&worker, &db, &["ddl"], "renamed");
}

/// Runs one export session on `socket` from `hello`, granting a credit per page; `meanwhile`
/// runs once, at the first page, while the session waits for that credit. Answers the messages.
fn session(worker: &LocalWorker, id: &str, hello: serde_json::Value, mut meanwhile: impl FnMut()) -> Vec<serde_json::Value> {
    let mut socket = api_socket(worker, &format!("/export/CounterSql/{id}"), TOKEN);
    socket.send(Message::text(hello.to_string())).unwrap();
    let mut messages: Vec<serde_json::Value> = Vec::new();
    let mut first = true;
    loop {
        let Message::Text(text) = socket.read().unwrap() else { continue };
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        let kind = message["type"].as_str().unwrap().to_owned();
        messages.push(message);
        if kind == "end" || kind == "error" {
            return messages;
        }
        if kind == "sql_page" || kind == "page" {
            if first {
                meanwhile();
                first = false;
            }
            socket.send(Message::text(r#"{"type":"credit","pages":1}"#)).unwrap();
        }
    }
}

/// A table made, and a column added, while an export session waits for its client: the
/// session's end cursor stays below them, and the next session from that cursor sends both in
/// their new shape; nothing is passed by.
#[test]
fn a_table_made_or_altered_during_an_export_is_sent_by_the_next() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grow.sqlite");
    sql(
        &worker,
        "grow",
        "CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO big SELECT i, printf('%300d', i) FROM n;",
    );
    let keys: serde_json::Map<String, serde_json::Value> = (0..40).map(|i| (format!("k{i}"), json!(i))).collect();
    worker.post("sql/grow/put_multiple_raw", &serde_json::Value::Object(keys).to_string());
    pull_until_tables_match(&worker, &db, &["grow"], "filled");
    let id: String =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT id FROM durable_objects WHERE name = 'grow'", [], |r| r.get(0)).unwrap();
    let first = session(&worker, &id, json!({"type": "hello", "version": 4, "window": 1}), || {
        sql(&worker, "grow", "CREATE TABLE late (a); INSERT INTO late VALUES (1), (2), (3); ALTER TABLE big ADD COLUMN extra DEFAULT 'x'");
    });
    let end = first.last().unwrap();
    assert_eq!(end["type"], "end", "{end:?}");
    let next =
        session(&worker, &id, json!({"type": "hello", "version": 4, "window": 1, "since": end["cursor"], "since_sql": end["sql"]}), || {});
    assert_eq!(next.last().unwrap()["type"], "end", "{:?}", next.last());
    let pages = |table: &'static str| next.iter().filter(move |m| m["type"] == "sql_page" && m["table"] == table);
    let late_rows: usize = pages("late").map(|m| m["rows"].as_array().unwrap().len()).sum();
    assert_eq!(late_rows, 3, "the table made during the first session");
    let big_rows: usize = pages("big").map(|m| m["rows"].as_array().unwrap().len()).sum();
    assert_eq!(big_rows, 3000, "the altered table, whole");
    assert!(pages("big").all(|m| m["columns"].as_array().unwrap().contains(&json!("extra"))));
    assert!(next.iter().any(|m| m["type"] == "sql_table_gone" && m["table"] == "big"), "its old rows replaced");
    let again = session(
        &worker,
        &id,
        json!({"type": "hello", "version": 4, "window": 1, "since": next.last().unwrap()["cursor"], "since_sql": next.last().unwrap()["sql"]}),
        || {},
    );
    assert!(!again.iter().any(|m| m["type"] == "sql_page"), "nothing changed since: nothing sent");
    pull_until_tables_match(&worker, &db, &["grow"], "after the sessions");
}

/// A pull while the app's transaction is open, which then rolls back: the file never holds
/// the transaction's rows, nor its keys.
#[test]
fn an_export_never_sends_rows_of_an_open_transaction() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("txn.sqlite");
    sql(&worker, "txn", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'committed')");
    pull_until_tables_match(&worker, &db, &["txn"], "committed");
    let fresh = dir.path().join("fresh.sqlite");
    std::thread::scope(|scope| {
        let open = scope.spawn(|| {
            let plan = json!([{"op": "transaction", "hold_ms": 2500, "rollback": true, "put": [["dirty-key", 7]],
                "sql": ["INSERT INTO t VALUES (2, 'never committed')", "UPDATE t SET v = 'never committed' WHERE id = 1"]}]);
            worker.post("sql/txn/ops", &plan.to_string());
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        for file in [&db, &fresh] {
            let run = worker.pull(file, TOKEN);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
            let conn = rusqlite::Connection::open(file).unwrap();
            let dirty: i64 =
                conn.query_row(r#"SELECT count(*) FROM "CounterSql.t" WHERE v = 'never committed'"#, [], |r| r.get(0)).unwrap();
            assert_eq!(dirty, 0, "a pull shipped a row of an open transaction into {}", file.display());
            assert_eq!(row_value(file, ("CounterSql", "txn"), "dirty-key"), None, "a key of an open transaction");
        }
        open.join().unwrap();
    });
    pull_until_tables_match(&worker, &db, &["txn"], "after the rollback");
    pull_until_tables_match(&worker, &fresh, &["txn"], "after the rollback, the fresh file");
}
