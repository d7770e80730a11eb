//! A 200 MB object exported and pulled with both ends' memory bounded, as keys and as an SQL
//! table: the object reads about 1 MiB of values per storage read and holds at most the client's
//! window of pages, and the puller writes page by page.

use std::path::Path;
use std::time::{Duration, Instant};

use durafetch_e2e::{finish_within, spawn_piped, LocalWorker, TOKEN};

const KEYS: u64 = 2000;
const VALUE_BYTES: usize = 100 * 1024;

/// Pulls into `db` while sampling workerd's memory; answers the puller's peak and workerd's
/// growth over its memory before the pull, in KiB.
fn pull_measuring(worker: &LocalWorker, db: &Path, what: &str, bytes: usize) -> (u64, Option<u64>) {
    let memory = worker.workerd_memory();
    let baseline = memory.kib();
    let mut child = spawn_piped(worker.puller(db, TOKEN, &[]));
    let mut workerd_peak = baseline;
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(300) {
        workerd_peak = workerd_peak.max(memory.kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = finish_within(child, Duration::ZERO, "the 200 MB pull, after 300 s");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let peak_kib = summary["peak_rss_kib"].as_u64().unwrap();
    println!(
        "{what}: pulled {} MB in {:?}; puller peak RSS {} MiB; workerd RSS {:?} MiB before, {:?} MiB at most during the pull",
        bytes / 1_000_000,
        started.elapsed(),
        peak_kib / 1024,
        baseline.map(|k| k / 1024),
        workerd_peak.map(|k| k / 1024)
    );
    assert!(peak_kib < 64 * 1024, "{what}: the puller peaked at {peak_kib} KiB");
    (peak_kib, workerd_peak.zip(baseline).map(|(peak, before)| peak.saturating_sub(before)))
}

#[test]
fn a_200_mb_object_is_pulled_with_bounded_memory() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("sql/large/bench", &format!(r#"{{"kind": "batched", "keys": {KEYS}, "value_bytes": {VALUE_BYTES}}}"#));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("large.sqlite");
    pull_measuring(&worker, &db, "keys", KEYS as usize * VALUE_BYTES);

    let conn = rusqlite::Connection::open(&db).unwrap();
    let value = format!("\"{}\"", "v".repeat(VALUE_BYTES));
    let exact: u64 = conn.query_row("SELECT count(*) FROM kv WHERE val = ?1", [&value], |r| r.get(0)).unwrap();
    assert_eq!(exact, KEYS, "every value arrived whole");
}

/// Rows of the SQL table: workerd's SQLite caps a `printf` width at 100,000.
const ROW_BYTES: usize = 100_000;

#[test]
fn a_200_mb_sql_table_is_pulled_with_bounded_memory() {
    let worker = LocalWorker::start(Some(TOKEN));
    let fill = format!(
        "CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {KEYS})
         INSERT INTO big SELECT i, printf('%.*c', {ROW_BYTES}, 'v') FROM n;"
    );
    worker.post("sql/large-sql/ops", &serde_json::json!([{"op": "sql", "sql": fill}]).to_string());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("large.sqlite");
    let (_, workerd_growth) = pull_measuring(&worker, &db, "SQL table", KEYS as usize * ROW_BYTES);
    // Holding the table, or even a tenth of it, would show here.
    if let Some(growth) = workerd_growth {
        assert!(growth < 160 * 1024, "workerd grew by {growth} KiB during the pull of a 200 MB table");
    }

    let conn = rusqlite::Connection::open(&db).unwrap();
    let value = "v".repeat(ROW_BYTES);
    let exact: u64 = conn.query_row(r#"SELECT count(*) FROM "CounterSql.big" WHERE body = ?1"#, [&value], |r| r.get(0)).unwrap();
    assert_eq!(exact, KEYS, "every row arrived whole");
}
