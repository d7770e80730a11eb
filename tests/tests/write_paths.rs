//! Write paths and entry points beyond plain puts: transactions (committed and rolled back),
//! alarms after a cold start, hibernatable WebSockets, and writes the sdk must refuse.

use durafetch_e2e::{pulled, read_db, ExpectedObject, LocalWorker, TOKEN};

#[test]
fn transactions_commit_with_their_log_and_roll_back_without_it() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("txn.sqlite");
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/t/put?key=doomed"), "0");
        worker.post(&format!("{route}/t/transaction"), r#"{"put": [["a", 1], ["b", 2]], "delete": ["doomed"]}"#);
        // Rolled back: neither the write nor its log row may appear.
        let _ = worker.try_post(&format!("{route}/t/transaction"), r#"{"put": [["ghost", 9]], "delete": ["a"], "rollback": true}"#);
    }
    let expected = pulled(&[("CounterKv", "t", &[("a", "1"), ("b", "2")]), ("CounterSql", "t", &[("a", "1"), ("b", "2")])]);
    worker.pull_until_equal(&db, &expected, "transactions");

    // An incremental pull after the rollback still converges: readers accept the gap.
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/t/transaction"), r#"{"put": [["c", 3]]}"#);
    }
    let expected =
        pulled(&[("CounterKv", "t", &[("a", "1"), ("b", "2"), ("c", "3")]), ("CounterSql", "t", &[("a", "1"), ("b", "2"), ("c", "3")])]);
    let runs = worker.pull_until_equal(&db, &expected, "after rollback");
    assert_eq!(runs.iter().map(|r| r.snapshots()).sum::<u64>(), 0, "a gap in the sequence must not force a snapshot");

    // A write just before a transaction that rolls back, in the same event: the rollback must
    // not take the write's log row with it.
    for route in ["kv", "sql"] {
        worker.post(
            &format!("{route}/t/ops"),
            r#"[{"op": "put", "key": "d", "value": 4}, {"op": "transaction", "put": [["ghost", 9]], "delete": ["a"], "rollback": true}]"#,
        );
    }
    let expected = pulled(&[
        ("CounterKv", "t", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
        ("CounterSql", "t", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
    ]);
    worker.pull_until_equal(&db, &expected, "a write before a rollback");
}

#[test]
fn alarms_and_hibernatable_sockets_record_writes_from_a_cold_start() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("entry.sqlite");
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/cold/put?key=before"), "1");
        worker.post(&format!("{route}/cold/alarm"), "3000");
    }
    // The alarms fire after the restart, in objects whose first event is the alarm: only the
    // puller talks to the worker until the file shows the alarm's write, and the puller
    // contacts an object only once the registry lists a change for it.
    worker.restart();
    let expected = pulled(&[
        ("CounterKv", "cold", &[("alarm-fired", "1"), ("before", "1")]),
        ("CounterSql", "cold", &[("alarm-fired", "1"), ("before", "1")]),
    ]);
    worker.pull_until_equal(&db, &expected, "alarm after restart");

    // A hibernatable socket: a message writes, and closing writes too.
    worker.restart();
    for route in ["kv", "sql"] {
        let url = format!("ws://127.0.0.1:{}/{route}/cold/socket", worker.port);
        let (mut socket, _) = tungstenite::connect(url).expect("socket");
        socket.send(tungstenite::Message::text(r#"from-socket={"n":[1,2]}"#)).unwrap();
        let reply = socket.read().unwrap();
        assert_eq!(reply.to_text().unwrap(), "ok");
        // The close frame is what the object's close handler sees; workerd does not answer it,
        // so the socket is dropped rather than read until the server closes.
        socket.close(None).unwrap();
        socket.flush().unwrap();
    }
    let expected = pulled(&[
        ("CounterKv", "cold", &[("alarm-fired", "1"), ("before", "1"), ("from-socket", SOCKET_VALUE), ("sockets-closed", "1")]),
        ("CounterSql", "cold", &[("alarm-fired", "1"), ("before", "1"), ("from-socket", SOCKET_VALUE), ("sockets-closed", "1")]),
    ]);
    // The example's own read-back renders a JS Map as `{}`: the file is compared alone.
    worker.pull_until_file_equals(&db, &expected, "socket writes");
}

/// `storage.put` of a `serde_json::Value` object stores a JS Map.
const SOCKET_VALUE: &str = r#"<tagged:{"$type":"map","value":[["n",[1,2]]]}>"#;

#[test]
fn reserved_keys_and_refused_values_write_nothing() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("refused.sqlite");
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/r/put?key=kept"), "1");
        let (status, body) = worker.try_post(&format!("{route}/r/put?key=%01durafetch%01log%01x"), "2").unwrap_err();
        assert_eq!(status, 500);
        assert!(body.contains("reserved"), "{body}");
        let (status, _) = worker.try_post(&format!("{route}/r/put_multiple_raw"), r#"{"ok": 1, "\u0001durafetch\u0001x": 2}"#).unwrap_err();
        assert_eq!(status, 500);
        worker.try_post(&format!("{route}/r/delete_multiple"), r#"["kept", "\u0001durafetch\u0001x"]"#).unwrap_err();
    }
    // A value storage cannot clone is refused, and so is its log row.
    for route in ["kv", "sql"] {
        let (status, body) = worker.try_post(&format!("{route}/r/put_symbol?key=f"), "").unwrap_err();
        assert_eq!(status, 500, "{body}");
    }
    let expected = pulled(&[("CounterKv", "r", &[("kept", "1")]), ("CounterSql", "r", &[("kept", "1")])]);
    worker.pull_until_equal(&db, &expected, "refused writes");
}

/// How many rows the change log of `<route>/<name>` holds.
fn log_rows(worker: &LocalWorker, route: &str, name: &str) -> u64 {
    ureq::get(&format!("{}/{route}/{name}/log_rows", worker.base())).call().unwrap().into_string().unwrap().parse().unwrap()
}

/// A transaction's write of 128 keys of 2,000 bytes needs six rows, put in the same step before
/// the write: they commit with it, and roll back with it.
#[test]
fn a_transaction_of_long_keys_commits_and_rolls_back_with_all_its_rows() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wide-txn.sqlite");
    let long_key = |prefix: char, i: usize| format!("{prefix}{i:03}-{}", "x".repeat(1995));
    let kept: Vec<String> = (0..128).map(|i| long_key('w', i)).collect();
    let ghosts: Vec<String> = (0..128).map(|i| long_key('g', i)).collect();
    let put_many =
        |keys: &[String]| serde_json::json!({ "put_many": keys.iter().map(|k| (k, 1)).collect::<std::collections::BTreeMap<_, _>>() });
    let classes = [("kv", "CounterKv"), ("sql", "CounterSql")];
    for (route, _) in classes {
        worker.post(&format!("{route}/wide-txn/put?key=first"), "0");
    }
    let first: &[(&str, &str)] = &[("first", "0")];
    worker.pull_until_equal(&db, &pulled(&classes.map(|(_, class)| (class, "wide-txn", first))), "before the transactions");

    let state: Vec<(&str, &str)> = kept.iter().map(|k| (k.as_str(), "1")).chain([("first", "0")]).collect();
    for (route, _) in classes {
        let rows = log_rows(&worker, route, "wide-txn");
        worker.post(&format!("{route}/wide-txn/transaction"), &put_many(&kept).to_string());
        assert_eq!(log_rows(&worker, route, "wide-txn"), rows + 6, "{route}: 128 keys of 2,000 bytes take six rows");
        // Rolled back: the new keys, the deletions and all twelve of their rows are gone.
        let mut plan = put_many(&ghosts);
        plan["delete_many"] = serde_json::json!(kept);
        plan["rollback"] = serde_json::json!(true);
        let _ = worker.try_post(&format!("{route}/wide-txn/transaction"), &plan.to_string());
        assert_eq!(log_rows(&worker, route, "wide-txn"), rows + 6, "{route}: the rolled-back rows are gone");
    }
    let runs = worker.pull_until_equal(&db, &pulled(&classes.map(|(_, class)| (class, "wide-txn", state.as_slice()))), "a committed put");
    assert_eq!(runs.iter().map(|r| r.snapshots()).sum::<u64>(), 0, "the long keys are read incrementally");

    // A committed delete of half of them: three rows, and the pull drops exactly those keys.
    let (deleted, left) = kept.split_at(64);
    for (route, _) in classes {
        let rows = log_rows(&worker, route, "wide-txn");
        worker.post(&format!("{route}/wide-txn/transaction"), &serde_json::json!({ "delete_many": deleted }).to_string());
        assert_eq!(log_rows(&worker, route, "wide-txn"), rows + 3, "{route}");
    }
    let state: Vec<(&str, &str)> = left.iter().map(|k| (k.as_str(), "1")).chain([("first", "0")]).collect();
    let runs =
        worker.pull_until_equal(&db, &pulled(&classes.map(|(_, class)| (class, "wide-txn", state.as_slice()))), "a committed delete");
    assert_eq!(runs.iter().map(|r| r.snapshots()).sum::<u64>(), 0, "the deletions are read incrementally");
}

#[test]
fn a_burst_of_writes_shares_log_rows_and_separate_events_get_their_own() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bursts.sqlite");
    let log_rows = |route: &str, name: &str| log_rows(&worker, route, name);
    let mut expected = Vec::new();
    for (route, class) in [("kv", "CounterKv"), ("sql", "CounterSql")] {
        // 1,000 awaited puts in one request: one row. 2,500: rows are bounded at 1,024 keys.
        worker.post(&format!("{route}/burst/overwrite"), r#"{"writes": 1000, "keys": 1000}"#);
        assert_eq!(log_rows(route, "burst"), 1, "{route}");
        worker.post(&format!("{route}/long-burst/overwrite"), r#"{"writes": 2500, "keys": 2500}"#);
        assert_eq!(log_rows(route, "long-burst"), 3, "{route}");
        // Writes with an event-loop turn between them commit apart, so each has its own row.
        worker.post(&format!("{route}/turns/overwrite"), r#"{"writes": 20, "keys": 20, "turns": true}"#);
        assert_eq!(log_rows(route, "turns"), 20, "{route}");
        for (name, keys) in [("burst", 1000), ("long-burst", 2500), ("turns", 20)] {
            let state: Vec<(String, String)> = (0..keys).map(|k| (format!("hot-{k}"), k.to_string())).collect();
            expected.push((class, name, state));
        }
    }
    let borrowed: Vec<Vec<(&str, &str)>> =
        expected.iter().map(|(_, _, s)| s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()).collect();
    let objects: Vec<ExpectedObject<'_>> = expected.iter().zip(&borrowed).map(|((c, n, _), s)| (*c, *n, s.as_slice())).collect();
    worker.pull_until_equal(&db, &pulled(&objects), "bursts");

    // A burst after the pull arrives whole in the incremental pull that follows.
    worker.post("sql/burst/overwrite", r#"{"writes": 1000, "keys": 500}"#);
    let after: Vec<(String, String)> =
        (0..1000).map(|k| (format!("hot-{k}"), if k < 500 { (500 + k).to_string() } else { k.to_string() })).collect();
    let mut objects = objects;
    let after: Vec<(&str, &str)> = after.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    objects.iter_mut().filter(|(c, n, _)| *c == "CounterSql" && *n == "burst").for_each(|o| o.2 = &after);
    let runs = worker.pull_until_equal(&db, &pulled(&objects), "a later burst");
    assert_eq!(runs.iter().map(|r| r.snapshots()).sum::<u64>(), 0, "the later burst is read incrementally");

    // One write of 128 keys of 2,000 bytes names 250 KiB of keys: as one row it would pass the
    // key-value backend's value limit (128 KiB) and fail at every try. It takes six rows of at
    // most 48 KiB, and the incremental pull reads every key.
    let first: &[(&str, &str)] = &[("first", "0")];
    for (route, class) in [("kv", "CounterKv"), ("sql", "CounterSql")] {
        worker.post(&format!("{route}/wide/put?key=first"), "0");
        objects.push((class, "wide", first));
    }
    worker.pull_until_equal(&db, &pulled(&objects), "before the long keys");
    let wide: Vec<(String, u32)> = (0..128).map(|i| (format!("w{i:03}-{}", "x".repeat(1995)), i)).collect();
    let body = serde_json::to_string(&wide.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).unwrap();
    let values: Vec<String> = wide.iter().map(|(_, v)| v.to_string()).collect();
    let mut state: Vec<(&str, &str)> = wide.iter().zip(&values).map(|((k, _), v)| (k.as_str(), v.as_str())).collect();
    state.push(("first", "0"));
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/wide/put_multiple_raw"), &body);
        assert_eq!(log_rows(route, "wide"), 1 + 6, "{route}");
    }
    objects.iter_mut().filter(|(_, n, _)| *n == "wide").for_each(|o| o.2 = &state);
    let runs = worker.pull_until_equal(&db, &pulled(&objects), "a write of 128 long keys");
    assert_eq!(runs.iter().map(|r| r.snapshots()).sum::<u64>(), 0, "the long keys are read incrementally");
}

#[test]
fn overwrites_leave_a_log_of_distinct_keys_and_pulls_stay_exact() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("compaction.sqlite");
    // A first pull in the middle, so the later one is incremental from an old cursor.
    worker.post("sql/hot/overwrite", r#"{"writes": 5000, "keys": 1000}"#);
    let partial: Vec<(String, String)> = (0..1000).map(|k| (format!("hot-{k}"), (4000 + k).to_string())).collect();
    let partial: Vec<(&str, &str)> = partial.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    worker.pull_until_equal(&db, &pulled(&[("CounterSql", "hot", &partial)]), "after 5,000 writes");

    worker.post("sql/hot/overwrite", r#"{"writes": 100000, "keys": 1000}"#);
    let rows: u64 = ureq::get(&format!("{}/sql/hot/log_rows", worker.base())).call().unwrap().into_string().unwrap().parse().unwrap();
    println!("log rows after 105,000 single-key writes over 1,000 keys: {rows}");
    assert!(rows <= 2000, "{rows} log rows");

    let last: Vec<(String, String)> = (0..1000).map(|k| (format!("hot-{k}"), (99_000 + k).to_string())).collect();
    let last: Vec<(&str, &str)> = last.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    worker.pull_until_equal(&db, &pulled(&[("CounterSql", "hot", &last)]), "after 105,000 writes");
}

#[test]
fn old_deletions_are_forgotten_and_stale_readers_resync() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tombstones.sqlite");
    let doomed: Vec<String> = (0..100).map(|i| format!("t-{i}")).collect();
    let entries: serde_json::Map<String, serde_json::Value> = doomed.iter().map(|k| (k.clone(), 1.into())).collect();
    worker.post("sql/tomb/put_multiple_raw", &serde_json::Value::Object(entries).to_string());
    let ones: Vec<(&str, &str)> = doomed.iter().map(|k| (k.as_str(), "1")).collect();
    worker.pull_until_equal(&db, &pulled(&[("CounterSql", "tomb", &ones)]), "before the deletions");

    // The deletions fall behind the horizon (2,000 log rows in the example's wrangler.toml), so
    // the log forgets them; this puller's cursor is older, so it must get a full snapshot. Each
    // write is in a turn of its own, so each has a row.
    worker.post("sql/tomb/delete_multiple", &serde_json::to_string(&doomed).unwrap());
    worker.post("sql/tomb/overwrite", r#"{"writes": 3000, "keys": 10, "turns": true}"#);
    let rows: u64 = ureq::get(&format!("{}/sql/tomb/log_rows", worker.base())).call().unwrap().into_string().unwrap().parse().unwrap();
    assert!(rows < 300, "{rows} log rows");
    let hot: Vec<(String, String)> = (0..10).map(|k| (format!("hot-{k}"), (2990 + k).to_string())).collect();
    let hot: Vec<(&str, &str)> = hot.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let runs = worker.pull_until_equal(&db, &pulled(&[("CounterSql", "tomb", &hot)]), "after the horizon");
    assert!(runs.iter().map(|r| r.snapshots()).sum::<u64>() >= 1, "a reader below the floor must get a snapshot");
}

#[test]
fn list_never_shows_durafetch_rows_and_keeps_its_options() {
    let worker = LocalWorker::start(Some(TOKEN));
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/l/put_multiple_raw"), r#"{"\u0000low": 1, "a": 1, "b": 1, "c": 1}"#);
        worker.post(&format!("{route}/l/delete?key=b"), "");
        let list = |query: &str| -> Vec<String> { serde_json::from_str(&worker.get_text(&format!("{route}/l/list?{query}"))).unwrap() };
        assert_eq!(list(""), ["\u{0}low", "a", "c"]);
        assert_eq!(list("limit=2"), ["\u{0}low", "a"]);
        assert_eq!(list("reverse=1&limit=2"), ["c", "a"]);
        assert_eq!(list("reverse=1"), ["c", "a", "\u{0}low"]);
        assert_eq!(list("start=%01&limit=1"), ["a"]);
        assert_eq!(list("end=b"), ["\u{0}low", "a"]);
        assert_eq!(list("prefix=%01"), Vec::<String>::new());
        assert_eq!(list("prefix=%01durafetch%01"), Vec::<String>::new());
        assert_eq!(list("prefix=a"), ["a"]);
    }
}

#[test]
fn a_lost_registry_report_is_sent_again_when_the_object_next_starts() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lost.sqlite");
    // Without its registry binding the worker still serves writes, but every report fails.
    worker.restart_with_config(Some(&|toml: String| {
        toml.replace("[[durable_objects.bindings]]\nname = \"DURAFETCH_REGISTRY\"\nclass_name = \"DurafetchRegistry\"\n", "")
    }));
    worker.post("sql/lost/put?key=k", "1");
    std::thread::sleep(std::time::Duration::from_millis(500));

    worker.restart_with_config(None);
    let run = worker.pull(&db, TOKEN);
    assert_eq!((run.code, run.objects_pulled()), (Some(0), 0), "the registry never heard of the write");
    // The object's next start, whatever wakes it, reports what the registry never acknowledged.
    assert_eq!(worker.object_state("sql", "lost").get("k").map(String::as_str), Some("1"));
    worker.pull_until_equal(&db, &pulled(&[("CounterSql", "lost", &[("k", "1")])]), "after the object restarted");
}

#[test]
fn verify_finds_a_write_whose_report_was_lost_without_waking_the_object_first() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("verify.sqlite");
    worker.post("sql/audited/put?key=k", "1");
    worker.pull_until_file_equals(&db, &pulled(&[("CounterSql", "audited", &[("k", "1")])]), "known object");
    // Every report fails while the registry binding is gone.
    worker.restart_with_config(Some(&|toml: String| {
        toml.replace("[[durable_objects.bindings]]\nname = \"DURAFETCH_REGISTRY\"\nclass_name = \"DurafetchRegistry\"\n", "")
    }));
    worker.post("sql/audited/put?key=k", "2");
    worker.restart_with_config(None);
    let run = worker.pull(&db, TOKEN);
    assert_eq!((run.code, run.objects_pulled()), (Some(0), 0), "the registry never heard of the second write");
    // --verify asks every known object itself.
    let run = worker.pull_with(&db, TOKEN, &["--verify"]);
    assert_eq!((run.code, run.objects_pulled()), (Some(0), 1), "{:?} {}", run.summary, run.stderr);
    assert_eq!(read_db(&db), pulled(&[("CounterSql", "audited", &[("k", "2")])]));
}

#[test]
fn a_crash_mid_writes_loses_no_acknowledged_write_and_the_puller_converges() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite");
    let names: Vec<String> = (0..200).map(|i| format!("crash-{i:03}")).collect();
    // Writes stream in from 8 threads; workerd is killed (SIGKILL) in the middle, so some writes
    // are acknowledged with their reports still unsent.
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for part in 0..8 {
            let (worker, names, acknowledged) = (&worker, &names, &acknowledged);
            scope.spawn(move || {
                for name in names.iter().skip(part).step_by(8) {
                    if worker.try_post(&format!("sql/{name}/put?key=k"), "1").is_ok() {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 60 {
            std::thread::yield_now();
        }
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", worker.group())]).status();
    });
    worker.crash_and_restart();
    let run = worker.pull(&db, TOKEN);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let reported: Vec<(String, String)> = read_db(&db).into_keys().collect();

    // Whatever wakes each object next (here a read) sends what the registry never acknowledged;
    // `a_lost_registry_report_is_sent_again_when_the_object_next_starts` forces that case.
    let mut expected = Vec::new();
    let mut unreported = 0;
    for name in &names {
        if worker.object_state("sql", name).get("k").map(String::as_str) == Some("1") {
            unreported += usize::from(!reported.contains(&("CounterSql".to_string(), name.clone())));
            expected.push(("CounterSql", name.as_str(), &[("k", "1")][..]));
        }
    }
    println!(
        "{} writes acknowledged before the kill, {} durable, {unreported} of them not yet in the registry",
        acknowledged.into_inner(),
        expected.len()
    );
    assert!(expected.len() >= 60, "acknowledged writes were lost");
    worker.pull_until_equal(&db, &pulled(&expected), "after the crash");
}

/// `__proto__` is a key like any other in a transaction, put alone or among others, on both
/// backends: the object holds it, and the pull downloads it.
#[test]
fn a_proto_key_in_a_transaction_is_a_key() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proto.sqlite");
    for route in ["kv", "sql"] {
        worker.post(&format!("{route}/proto-one/transaction"), r#"{"put": [["__proto__", 1]]}"#);
        worker.post(&format!("{route}/proto-many/transaction"), r#"{"put_many": {"__proto__": 2, "b": 3}}"#);
        assert_eq!(worker.object_state(route, "proto-one").get("__proto__").map(String::as_str), Some("1"), "{route}");
        let many = worker.object_state(route, "proto-many");
        assert_eq!((many.get("__proto__").map(String::as_str), many.get("b").map(String::as_str)), (Some("2"), Some("3")), "{route}");
    }
    let run = worker.pull(&db, TOKEN);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let pulled = durafetch_e2e::named_contents(&db);
    assert_eq!(pulled.iter().filter(|l| l.contains("| __proto__ |")).count(), 4, "{pulled:?}");
}
