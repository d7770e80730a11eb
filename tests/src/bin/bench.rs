//! The benchmark: runs the example worker (release build) in local workerd, measures each figure
//! against its baseline in the same run, and prints a markdown table of ratios with the raw
//! numbers. Not part of the test command; run it with `bash scripts/bench.sh`.

use std::time::Instant;

use durafetch_e2e::{LocalWorker, TOKEN};
use serde_json::Value;

struct Row {
    metric: &'static str,
    figure: String,
    goal: &'static str,
    how: String,
}

fn bench(worker: &LocalWorker, route: &str, object: &str, kind: &str, keys: u64, value_bytes: usize) -> (f64, u64) {
    let body = format!(r#"{{"kind":"{kind}","keys":{keys},"value_bytes":{value_bytes}}}"#);
    let out: Value = serde_json::from_str(&worker.post_text(&format!("{route}/{object}/bench"), &body)).unwrap();
    (out["ms"].as_f64().unwrap().max(1.0), out["count"].as_u64().unwrap())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// The same work in fresh instrumented and plain objects, alternating, median of 5 each:
/// (instrumented ms, plain ms).
fn instrumented_vs_plain(worker: &LocalWorker, label: &str, kind: &str, keys: u64) -> (f64, f64) {
    let (mut inst, mut plain) = (Vec::new(), Vec::new());
    for round in 0..5 {
        inst.push(bench(worker, "sql", &format!("{label}-{round}"), kind, keys, 100).0);
        plain.push(bench(worker, "plain", &format!("{label}-{round}"), kind, keys, 100).0);
    }
    (median(inst), median(plain))
}

/// Runs the puller once into `db` and returns (seconds, summary).
fn timed_pull(worker: &LocalWorker, db: &std::path::Path) -> (f64, Value) {
    let started = Instant::now();
    let run = worker.pull(db, TOKEN);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    (secs, run.summary.unwrap())
}

/// Pulls until an object shows up as downloaded (registry reports trail writes by a moment).
fn settle(worker: &LocalWorker, db: &std::path::Path) {
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = timed_pull(worker, db);
}

fn main() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();

    // P1 and P1b: 1,000 single awaited puts, instrumented vs plain, median of 5.
    let (i, p) = instrumented_vs_plain(&worker, "p1", "single", 1000);
    rows.push(Row { metric: "P1b single puts, instrumented/plain", figure: format!("{:.2} ({i:.0} ms / {p:.0} ms)", i / p), goal: "≤ 1.3", how: "1,000 awaited one-key puts of 100 B inside the object, median of 5".into() });
    let with_row = median((0..5).map(|r| bench(&worker, "plain", &format!("p1row-{r}"), "single_with_row", 1000, 100).0).collect());
    rows.push(Row { metric: "P1b single puts, instrumented/(plain + the same extra row by hand)", figure: format!("{:.2} ({i:.0} ms / {with_row:.0} ms)", i / with_row), goal: "(what durafetch's code adds beyond the row)", how: "the plain class writes the value and a log-shaped row in one put".into() });
    let log_rows: u64 = worker.get_text("sql/p1-0/log_rows").parse().unwrap();
    let db = dir.path().join("p1.sqlite");
    settle(&worker, &db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let reports: i64 = conn.query_row("SELECT max(registry_rev) FROM durable_objects", [], |r| r.get(0)).unwrap();
    rows.push(Row { metric: "P1 extra rows per write call", figure: format!("{:.2} log rows ({log_rows} for 1,000 writes)", log_rows as f64 / 1000.0), goal: "1", how: "log rows after 1,000 one-key puts to distinct keys".into() });
    rows.push(Row { metric: "P1 registry reports per write", figure: format!("{:.3} ({reports} reports for 3,000 writes)", reports as f64 / 3000.0), goal: "≪ 1", how: "registry revisions after the P1b runs: 3 instrumented objects × 1,000 writes".into() });

    let (i, p) = instrumented_vs_plain(&worker, "p1b", "batched", 100_000);
    rows.push(Row { metric: "P1b batched puts, instrumented/plain", figure: format!("{:.2} ({i:.0} ms / {p:.0} ms)", i / p), goal: "≤ 1.05", how: "100,000 keys of 100 B in puts of 128 keys, median of 5".into() });
    let with_row = median((0..5).map(|r| bench(&worker, "plain", &format!("p1brow-{r}"), "batched_with_row", 100_000, 100).0).collect());
    rows.push(Row { metric: "P1b batched puts, instrumented/(plain + the same extra row by hand)", figure: format!("{:.2} ({i:.0} ms / {with_row:.0} ms)", i / with_row), goal: "(what durafetch's code adds beyond the row)", how: "the plain class writes each batch and a log-shaped row of its 128 keys".into() });

    // P2: a full pull of 100,000 keys vs the object's own scan.
    let (scan_ms, scanned) = bench(&worker, "sql", "p1b-0", "scan", 0, 0);
    let db = dir.path().join("p2.sqlite");
    let (full_secs, summary) = timed_pull(&worker, &db);
    let keys = summary["keys_written"].as_u64().unwrap();
    let pull_rate = keys as f64 / full_secs;
    let scan_rate = scanned as f64 / (scan_ms / 1000.0);
    rows.push(Row { metric: "P2 full pull rate / object scan rate", figure: format!("{:.2} ({:.0} keys/s / {:.0} keys/s)", pull_rate / scan_rate, pull_rate, scan_rate), goal: "≥ 0.8", how: format!("first pull of every object ({keys} keys of 100 B, release puller, into SQLite) vs list() of one 100,000-key object inside it") });

    // P3: incremental pulls.
    worker.post("sql/p1b-0/overwrite", r#"{"writes": 100, "keys": 100}"#);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (inc_secs, _) = timed_pull(&worker, &db);
    rows.push(Row { metric: "P3 100 changed keys / full pull", figure: format!("{:.3} ({:.2} s / {:.2} s)", inc_secs / full_secs, inc_secs, full_secs), goal: "≤ 0.02", how: "incremental pull after 100 one-key writes in one object, vs the full pull above".into() });
    worker.post("sql/p1b-0/overwrite", r#"{"writes": 10000, "keys": 10000}"#);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (inc_secs, _) = timed_pull(&worker, &db);
    rows.push(Row { metric: "P3 10,000 single-key writes / full pull", figure: format!("{:.3} ({:.2} s / {:.2} s)", inc_secs / full_secs, inc_secs, full_secs), goal: "≤ 0.15", how: "incremental pull after 10,000 one-key writes in one object".into() });

    // P4: 1,000 objects, 1 changed.
    for i in 0..1000 {
        worker.post(&format!("kv/p4-{i:04}/put?key=k"), "1");
    }
    let db4 = dir.path().join("p4.sqlite");
    settle(&worker, &db4);
    let _ = timed_pull(&worker, &db4);
    worker.post("kv/p4-0500/put?key=k", "2");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, summary) = timed_pull(&worker, &db4);
    rows.push(Row { metric: "P4 objects contacted, index rows read", figure: format!("{} objects, {} index rows", summary["objects_pulled"], summary["index_changed"]), goal: "1, independent of the 999", how: "poll of 1,000+ objects after one write to one".into() });

    // P7: log rows after 1,000,000 overwrites of 1,000 keys.
    worker.post("sql/p7/overwrite", r#"{"writes": 1000000, "keys": 1000}"#);
    let log_rows: u64 = worker.get_text("sql/p7/log_rows").parse().unwrap();
    rows.push(Row { metric: "P7 log rows after 1,000,000 overwrites of 1,000 keys", figure: log_rows.to_string(), goal: "≤ 2,000", how: "awaited one-key puts inside the object, then a count of the log range".into() });

    println!("| metric | figure | goal | how |\n|---|---|---|---|");
    for row in rows {
        println!("| {} | {} | {} | {} |", row.metric, row.figure, row.goal, row.how);
    }
}
