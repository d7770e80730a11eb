//! The puller as an operator runs it: filters and `--history`, and interruptions at the worst
//! moment (SIGKILL mid-pull, workerd restarted mid-pull) that must leave a consistent, resumable
//! file.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use durafetch_e2e::{finish_within, kv_rows, pulled, read_db, row_value, spawn_piped, LocalWorker, Pulled, PULL_LIMIT, TOKEN};

fn history(db: &Path, name: &str, key: &str) -> Vec<(bool, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT deleted, val FROM kv_history WHERE name = ?1 AND key = ?2 ORDER BY history_id").unwrap();
    stmt.query_map([name, key], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn filters_choose_objects_and_keys_and_history_keeps_deletions() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("filtered.sqlite");
    worker.post("kv/alpha/put_multiple_raw", r#"{"user:1": 1, "user:2": 2, "cache:x": 0}"#);
    worker.post("kv/beta/put?key=user:1", "1");
    worker.post("sql/alpha/put?key=user:1", "1");
    let flags = ["--class", "CounterKv", "--name", "al*", "--key-prefix", "user:", "--history"];
    let only_alpha = pulled(&[("CounterKv", "alpha", &[("user:1", "1"), ("user:2", "2")])]);
    let runs = worker.pull_with_until_file_equals(&db, &flags, &only_alpha, "filtered");
    assert!(runs.last().unwrap().summary.as_ref().unwrap()["filtered_out"].as_u64().unwrap() >= 1);

    worker.post("kv/alpha/delete?key=user:1", "");
    worker.post("kv/alpha/put?key=user:2", "20");
    let after = pulled(&[("CounterKv", "alpha", &[("user:2", "20")])]);
    worker.pull_with_until_file_equals(&db, &flags, &after, "filtered, after a delete");
    assert_eq!(history(&db, "alpha", "user:1"), vec![(false, Some("1".into())), (true, None)], "a deletion leaves a tombstone");
    assert_eq!(history(&db, "alpha", "user:2"), vec![(false, Some("2".into())), (false, Some("20".into()))]);
    assert_eq!(history(&db, "alpha", "cache:x"), vec![], "filtered keys leave no history");

    // Without filters, every object arrives, and alpha (pulled under a key filter) starts over.
    let everything = pulled(&[
        ("CounterKv", "alpha", &[("cache:x", "0"), ("user:2", "20")]),
        ("CounterKv", "beta", &[("user:1", "1")]),
        ("CounterSql", "alpha", &[("user:1", "1")]),
    ]);
    worker.pull_until_equal(&db, &everything, "unfiltered");
}

/// Fills one object with `keys` keys of 100 bytes, enough for a pull to take a while.
fn fill(worker: &LocalWorker, name: &str, keys: u64) {
    worker.post(&format!("sql/{name}/bench"), &format!(r#"{{"kind": "batched", "keys": {keys}, "value_bytes": 100}}"#));
}

/// Waits until the puller has written some rows of `name` but not yet its cursor: a pull in the
/// middle. Answers false if the pull finished first.
fn wait_mid_pull(db: &Path, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if kv_rows(db) > 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the pull never started");
}

fn object_copy(worker: &LocalWorker, name: &str) -> Pulled {
    [(("CounterSql".to_string(), name.to_string()), worker.object_state("sql", name))].into_iter().collect()
}

fn cursor_saved(db: &Path, name: &str) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT local_max_log_id IS NOT NULL FROM durable_objects WHERE name = ?1", [name], |r| r.get(0)).unwrap()
}

#[test]
fn sigkill_mid_pull_leaves_a_file_the_next_run_completes() {
    let worker = LocalWorker::start(Some(TOKEN));
    fill(&worker, "big", 60_000);
    let expected = object_copy(&worker, "big");
    assert_eq!(expected.values().next().unwrap().len(), 60_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.sqlite");
    let mut killed_mid_pull = false;
    for _ in 0..5 {
        let _ = std::fs::remove_file(&db);
        let mut child = worker.puller(&db, TOKEN, &["--quiet"]).spawn().unwrap();
        if wait_mid_pull(&db, &mut child) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            if !cursor_saved(&db, "big") {
                killed_mid_pull = true;
                break;
            }
        }
        let _ = child.wait();
    }
    assert!(killed_mid_pull, "every pull finished before it could be killed");
    let partial = read_db(&db);
    let partial_keys = partial.values().next().map_or(0, |keys| keys.len());
    println!("killed with {partial_keys} of 60,000 keys in the file");
    assert!(partial_keys < 60_000);

    let run = worker.pull(&db, TOKEN);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(read_db(&db), expected, "the rerun completes the file");
    assert!(cursor_saved(&db, "big"));
}

#[test]
fn workerd_restarted_mid_pull_is_retried_and_the_pull_succeeds() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    fill(&worker, "big", 60_000);
    let expected = object_copy(&worker, "big");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("restarted.sqlite");
    let mut child = spawn_piped(worker.puller(&db, TOKEN, &[]));
    assert!(wait_mid_pull(&db, &mut child), "the pull finished before workerd could be restarted");
    worker.restart_on_same_port();
    let out = finish_within(child, PULL_LIMIT, "the pull across a restart");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying"), "the restart went unnoticed: {stderr}");
    assert_eq!(read_db(&db), expected);
}

/// Waits until the file holds `key` = `val` in object `name` of `class`; answers how long that took.
fn wait_for_row(db: &Path, object: (&str, &str), key: &str, val: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if row_value(db, object, key).as_deref() == Some(val) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn watch_mode_shows_writes_within_a_second_and_survives_a_restart() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("watched.sqlite");
    // A slow poll, so only the registry's push can explain a fast row.
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"poll": {"every_ms": 60000}}"#).unwrap();
    let watcher = spawn_piped(worker.puller(&db, TOKEN, &["--watch", "--config-file", config.to_str().unwrap()]));
    worker.post("kv/watched/put?key=first", "0");
    assert!(wait_for_row(&db, ("CounterKv", "watched"), "first", "0", Duration::from_secs(20)).is_some(), "the watch never delivered");

    // The first of these is the first write after the watcher's initial sync: it counts too.
    let mut latencies = Vec::new();
    for i in 1..=20 {
        let (route, class) = if i % 2 == 0 { ("kv", "CounterKv") } else { ("sql", "CounterSql") };
        let written = Instant::now();
        worker.post(&format!("{route}/watched/put?key=n"), &i.to_string());
        let seen = wait_for_row(&db, (class, "watched"), "n", &i.to_string(), Duration::from_secs(5));
        latencies.push(seen.map(|_| written.elapsed()).unwrap_or(Duration::MAX));
    }
    let first = latencies[0];
    latencies.sort();
    println!("watch latency over 20 writes: first after sync {first:?}, p50 {:?}, max {:?}", latencies[10], latencies[19]);
    assert!(latencies[19] < Duration::from_secs(1), "slowest write took {:?}", latencies[19]);

    // The subscription reconnects after workerd restarts.
    worker.restart_on_same_port();
    worker.post("kv/watched/put?key=after-restart", "1");
    assert!(
        wait_for_row(&db, ("CounterKv", "watched"), "after-restart", "1", Duration::from_secs(20)).is_some(),
        "no delivery after a restart"
    );
    let _ = std::process::Command::new("kill").args(["-INT", &watcher.id().to_string()]).status();
    let out = finish_within(watcher, Duration::from_secs(10), "the watcher after SIGINT");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_workers_pull_into_one_file_and_stay_apart() {
    let first = LocalWorker::start(Some(TOKEN));
    let second = first.start_beside("second-app");
    first.post("kv/a/put?key=k", "1");
    second.post("kv/a/put?key=k", "2");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("two.sqlite");
    let rows = |db: &Path| -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare("SELECT worker_name, val FROM kv WHERE name = 'a' AND key = 'k' ORDER BY worker_name").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    for (step, expected) in [("first pull", ["1", "2"]), ("after a write to the second", ["1", "3"])] {
        if step != "first pull" {
            second.post("kv/a/put?key=k", "3");
        }
        let want = vec![("durafetch-example".to_string(), expected[0].to_string()), ("second-app".to_string(), expected[1].to_string())];
        let mut got = Vec::new();
        for _ in 0..50 {
            let mut cmd = Command::new(durafetch_e2e::puller_binary());
            cmd.args(["--quiet", "--db"])
                .arg(&db)
                .args(["--server", &first.api_url(), "--server", &second.api_url()])
                .env("DURAFETCH_AUTH", TOKEN);
            let out = finish_within(spawn_piped(cmd), PULL_LIMIT, "a pull of two workers");
            assert!(out.status.success(), "{step}: {}", String::from_utf8_lossy(&out.stderr));
            got = rows(&db);
            if got == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(got, want, "{step}");
    }
}

/// Two pulls into one file at once, as an overlapping cron job makes them: one pulls, the other
/// is refused at once with exit status 2 and a message saying why, and the file holds every
/// key, as a full comparison with the object confirms. Before the writer lock and the stamped
/// sweep, such pulls both exited 0 and left the file short of keys for good.
#[test]
fn overlapping_pulls_into_one_file_lose_nothing() {
    let worker = LocalWorker::start(Some(TOKEN));
    fill(&worker, "big", 60_000);
    let expected = object_copy(&worker, "big");
    let dir = tempfile::tempdir().unwrap();
    let mut refused = 0;
    for round in 0..6 {
        let db = dir.path().join(format!("shared-{round}.sqlite"));
        let pullers = [spawn_piped(worker.puller(&db, TOKEN, &[])), spawn_piped(worker.puller(&db, TOKEN, &[]))];
        let outs = pullers.map(|child| finish_within(child, PULL_LIMIT, "one of two overlapping pulls"));
        for out in &outs {
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(2) => {
                    assert!(stderr.contains("another durafetch-pull is writing to this file"), "round {round}: {stderr}");
                    assert_eq!(stderr.trim().lines().count(), 1, "round {round}: one line: {stderr}");
                    refused += 1;
                }
                other => panic!("round {round}: exit {other:?}: {stderr}"),
            }
        }
        assert!(outs.iter().any(|out| out.status.success()), "round {round}: neither pulled");
        assert_eq!(read_db(&db), expected, "round {round}: the file lost keys");
        let check = worker.pull_with(&db, TOKEN, &["--verify=full"]);
        assert_eq!(check.code, Some(0), "{}", check.stderr);
        assert_eq!(check.count_of("rows_repaired"), 0, "round {round}: the file disagreed with the object");
    }
    println!("{refused} of 6 rounds refused the second puller");
    assert!(refused > 0, "the pulls never overlapped");
}

/// A file whose rows disagree with its cursor (rows lost, changed or added behind the puller's
/// back): the registry and a changes-only verify see nothing to do, and --verify=full finds
/// every such row and repairs it.
#[test]
fn verify_full_repairs_rows_that_disagree_with_the_cursor() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/audited/put_multiple_raw", r#"{"a": 1, "b": 2, "c": 3}"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audited.sqlite");
    let expected = pulled(&[("CounterKv", "audited", &[("a", "1"), ("b", "2"), ("c", "3")])]);
    worker.pull_until_equal(&db, &expected, "first pull");

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DELETE FROM kv WHERE key = 'a';
         UPDATE kv SET val = '99' WHERE key = 'b';
         INSERT INTO kv (do_id, worker_name, class_name, name, key, val, insert_ts, update_ts, val_type, pull_gen)
            SELECT do_id, worker_name, class_name, name, 'zz', val, insert_ts, update_ts, val_type, pull_gen FROM kv WHERE key = 'c';",
    )
    .unwrap();
    drop(conn);
    let damaged = read_db(&db);
    for flags in [&[][..], &["--verify"]] {
        let run = worker.pull_with(&db, TOKEN, flags);
        assert_eq!(run.code, Some(0), "{flags:?}: {}", run.stderr);
        assert_eq!(read_db(&db), damaged, "{flags:?} cannot see rows that disagree with the cursor");
    }
    let run = worker.pull_with(&db, TOKEN, &["--verify=full"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.count_of("rows_repaired"), 3, "one missing, one different, one extra: {:?}", run.summary);
    assert!(run.stderr.contains("the file disagreed with the object; repaired"), "{}", run.stderr);
    assert_eq!(read_db(&db), expected);
}

/// A pull that starts while the worker is down (a deploy, a restart) retries its first index
/// connection as it retries objects, and succeeds once the worker is back.
#[test]
fn a_pull_started_while_the_worker_is_down_waits_for_it() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/early/put?key=k", "1");
    let dir = tempfile::tempdir().unwrap();
    let expected = pulled(&[("CounterKv", "early", &[("k", "1")])]);
    worker.pull_until_file_equals(&dir.path().join("before.sqlite"), &expected, "before the restart");
    let db = dir.path().join("across.sqlite");
    let child = worker.while_down(|worker| {
        let child = spawn_piped(worker.puller(&db, TOKEN, &[]));
        std::thread::sleep(Duration::from_millis(300));
        child
    });
    let out = finish_within(child, PULL_LIMIT, "a pull started while the worker was down");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying"), "the pull never saw the worker down: {stderr}");
    assert_eq!(read_db(&db), expected);
}

/// A watcher whose objects keep failing (here 16 whose exports answer 500) stops within a
/// second of SIGINT or SIGTERM, mid-retry, with exit status 0 and a sound file.
#[test]
fn a_watch_stops_at_once_while_exports_keep_failing() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    // CounterKv's exports fail (its entry in `objects` names no binding); the index still works.
    worker.restart_with_config(Some(&|toml: String| toml.replace(r#"CounterKv = "COUNTER_KV""#, r#"CounterKv = "NO_SUCH_BINDING""#)));
    for i in 0..16 {
        worker.post(&format!("kv/failing-{i}/put?key=k"), "1");
    }
    worker.post("sql/fine/put?key=k", "1");
    let dir = tempfile::tempdir().unwrap();
    for signal in ["-INT", "-TERM"] {
        let db = dir.path().join(format!("stopped{signal}.sqlite"));
        let watcher = spawn_piped(worker.puller(&db, TOKEN, &["--watch"]));
        assert!(wait_for_row(&db, ("CounterSql", "fine"), "k", "1", Duration::from_secs(30)).is_some(), "the watch never synced");
        // Long enough for every failing object to be in its retries.
        std::thread::sleep(Duration::from_secs(3));
        let stopped = Instant::now();
        let _ = Command::new("kill").args([signal, &watcher.id().to_string()]).status();
        let out = finish_within(watcher, Duration::from_secs(60), "the watcher after a stop signal");
        let took = stopped.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("{signal}: the watcher stopped {took:?} after the signal");
        assert_eq!(out.status.code(), Some(0), "{signal}: {stderr}");
        assert!(stderr.contains("answered 500"), "{signal}: the exports were not failing: {stderr}");
        assert!(took < Duration::from_secs(1), "{signal}: the watcher took {took:?} to stop");
        let conn = rusqlite::Connection::open(&db).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        assert_eq!(row_value(&db, ("CounterSql", "fine"), "k").as_deref(), Some("1"));
    }
}
