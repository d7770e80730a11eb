//! A 200 MB object exported and pulled with both ends' memory bounded: the object reads about
//! 1 MiB of values per storage read and holds at most the client's window of pages, and the
//! puller writes page by page.

use std::time::{Duration, Instant};

use durafetch_e2e::{finish_within, spawn_piped, LocalWorker, TOKEN};

const KEYS: u64 = 2000;
const VALUE_BYTES: usize = 100 * 1024;

#[test]
fn a_200_mb_object_is_pulled_with_bounded_memory() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("sql/large/bench", &format!(r#"{{"kind": "batched", "keys": {KEYS}, "value_bytes": {VALUE_BYTES}}}"#));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("large.sqlite");

    let memory = worker.workerd_memory();
    let baseline = memory.kib();
    let mut child = spawn_piped(worker.puller(&db, TOKEN, &[]));
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
        "pulled {} MB in {:?}; puller peak RSS {} MiB; workerd RSS {:?} MiB before, {:?} MiB at most during the pull",
        KEYS as usize * VALUE_BYTES / 1_000_000,
        started.elapsed(),
        peak_kib / 1024,
        baseline.map(|k| k / 1024),
        workerd_peak.map(|k| k / 1024)
    );
    assert!(peak_kib < 64 * 1024, "the puller peaked at {peak_kib} KiB");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let value = format!("\"{}\"", "v".repeat(VALUE_BYTES));
    let exact: u64 = conn.query_row("SELECT count(*) FROM kv WHERE val = ?1", [&value], |r| r.get(0)).unwrap();
    assert_eq!(exact, KEYS, "every value arrived whole");
}
