//! What the README tells a user to run, run: every SQL snippet against a file pulled from the
//! example worker, and every PostgreSQL snippet against a PostgreSQL database pulled from it,
//! each finding rows.

use durafetch_e2e::postgres::PostgresServer;
use durafetch_e2e::{LocalWorker, TOKEN};

/// The README's blocks fenced as `fence` (```sql, ```postgresql), split into statements (its
/// snippets hold no `;` inside a string).
fn readme_statements(fence: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut statements = Vec::new();
    for block in readme.split(&format!("```{fence}\n")).skip(1) {
        let code = block.split("```").next().unwrap();
        let code: String = code.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
        statements.extend(code.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
    }
    statements
}

#[test]
fn every_sql_snippet_in_the_readme_runs_against_a_pulled_file() {
    let statements = readme_statements("sql");
    assert!(statements.len() >= 5, "the README's SQL was not found: {statements:?}");
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("readme.sqlite");
    // The README's example class is `Counter`; the example worker's is `CounterKv`.
    worker.post("kv/a/put?key=count", "1");
    worker.post("kv/a/put_typed?key=scores", "map");
    worker.post("kv/b/put_multiple_raw", r#"{"settings": {"plan": "free"}}"#);
    // The README's SQL tables, in the example's SQLite-backed class.
    let sql = "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello');
               CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty REAL); INSERT INTO items VALUES (1, 'tea', 2.0)";
    worker.post("sql/a/ops", &serde_json::json!([{"op": "sql", "sql": sql}]).to_string());
    let wait_for = |want: usize| {
        for _ in 0..50 {
            let run = worker.pull_with(&db, TOKEN, &["--history"]);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
            if durafetch_e2e::kv_rows(&db) as usize == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the file never held {want} rows");
    };
    wait_for(3);
    worker.post("kv/a/delete?key=count", "");
    wait_for(2);
    let sql_rows = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let count = |table: &str| conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get::<_, i64>(0)).unwrap_or(0);
        count("CounterSql.notes") + count("CounterSql.items")
    };
    for _ in 0..50 {
        if sql_rows() == 2 {
            break;
        }
        assert_eq!(worker.pull(&db, TOKEN).code, Some(0));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sql_rows(), 2, "the SQL tables were never pulled");

    let conn = rusqlite::Connection::open(&db).unwrap();
    for statement in &statements {
        let sql = statement.replace("'Counter'", "'CounterKv'");
        let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("the README's query fails: {e}\n{sql}"));
        let rows = stmt.query_map([], |_| Ok(())).unwrap().count();
        assert!(rows > 0, "the README's query finds nothing in a file that holds what it asks for:\n{sql}");
    }
}

#[test]
fn every_postgresql_snippet_in_the_readme_runs_against_a_pulled_database() {
    let statements = readme_statements("postgresql");
    assert!(statements.len() >= 2, "the README's PostgreSQL was not found: {statements:?}");
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/a/put_multiple_raw", r#"{"settings": {"plan": "free"}}"#);
    let sql = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty REAL); INSERT INTO items VALUES (1, 'tea', 2.0)";
    worker.post("sql/a/ops", &serde_json::json!([{"op": "sql", "sql": sql}]).to_string());
    let server = PostgresServer::start();
    let url = server.create_database("readme");
    let mut client = server.client("readme");
    let held = |client: &mut postgres::Client| -> i64 {
        client.query_one(r#"SELECT (SELECT count(*) FROM kv) + (SELECT count(*) FROM "CounterSql.items")"#, &[]).map_or(0, |r| r.get(0))
    };
    for _ in 0..50 {
        let run = worker.pull_with(std::path::Path::new(&url), TOKEN, &[]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        if held(&mut client) == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(held(&mut client), 2, "the database never held the key and the row");
    for statement in &statements {
        let sql = statement.replace("'Counter'", "'CounterKv'");
        let rows = client.query(&sql, &[]).unwrap_or_else(|e| panic!("the README's query fails: {e}\n{sql}"));
        assert!(!rows.is_empty(), "the README's query finds nothing in a database that holds what it asks for:\n{sql}");
    }
}
