//! The registry at scale: objects spread over several registry shards, and a poll that costs
//! O(changed objects), not O(all objects).

use durafetch_e2e::{raw_get, read_db, LocalWorker, Pulled, TOKEN};

const OBJECTS: usize = 1000;

#[test]
fn a_poll_of_1000_objects_with_one_changed_reads_one_row_and_contacts_one_object() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    worker.restart_with_config(Some(&|toml: String| {
        toml.replace("tombstone_horizon = 2000", "tombstone_horizon = 2000\nregistry_shards = 4")
    }));
    std::thread::scope(|scope| {
        for part in 0..8 {
            let worker = &worker;
            scope.spawn(move || {
                for i in (part..OBJECTS).step_by(8) {
                    worker.post(&format!("kv/obj-{i:04}/put?key=n"), &i.to_string());
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scale.sqlite");
    let expected: Pulled = (0..OBJECTS)
        .map(|i| (("CounterKv".to_string(), format!("obj-{i:04}")), [("n".to_string(), i.to_string())].into_iter().collect()))
        .collect();
    worker.pull_until_file_equals(&db, &expected, "1,000 objects");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let shards: Vec<(u32, u64)> = conn
        .prepare("SELECT shard, index_rev FROM durafetch_servers ORDER BY shard")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    println!("objects per registry shard (its revision): {shards:?}");
    assert_eq!(shards.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert!(shards.iter().all(|&(_, rev)| rev > 150), "a shard holds too few objects: {shards:?}");

    worker.post("kv/obj-0500/put?key=n", "\"changed\"");
    let mut expected = expected;
    expected.get_mut(&("CounterKv".to_string(), "obj-0500".to_string())).unwrap().insert("n".into(), "\"changed\"".into());
    let runs = worker.pull_until_file_equals(&db, &expected, "one changed");
    let index_rows: u64 = runs.iter().map(|r| r.summary.as_ref().unwrap()["index_changed"].as_u64().unwrap()).sum();
    let contacted: u64 = runs.iter().map(|r| r.objects_pulled()).sum();
    assert_eq!((index_rows, contacted), (1, 1), "index rows read and objects contacted for one change");
    assert_eq!(read_db(&db).len(), OBJECTS);

    let host = worker.api_host();
    let upgrade = [
        ("authorization", format!("Bearer {TOKEN}")),
        ("upgrade", "websocket".into()),
        ("connection", "upgrade".into()),
        ("sec-websocket-version", "13".into()),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
    ];
    let headers: Vec<(&str, &str)> = upgrade.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = raw_get(worker.port, &host, "/index/4", &headers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid registry shard"), "{body}");
}

/// An isolate hosts many objects over its life. However many cycle through it, their
/// compactors together remember at most the isolate's bound of keys (the least recently written
/// forget theirs); an object whose compactor forgot still logs and pulls exactly.
#[test]
fn objects_cycling_through_one_isolate_keep_the_compactors_within_their_bound() {
    let worker = LocalWorker::start(Some(TOKEN));
    let held = |name: &str| -> serde_json::Value { serde_json::from_str(&worker.get_text(&format!("sql/{name}/held_state"))).unwrap() };
    let bound = held("cycle-0")["compactor_keys_bound"].as_u64().unwrap();
    // Six objects of 40,000 distinct keys each: 240,000 keys, past the bound of 131,072.
    let mut most = 0;
    for i in 0..6 {
        worker.post(&format!("sql/cycle-{i}/bench"), r#"{"kind": "batched", "keys": 40000, "value_bytes": 8}"#);
        let state = held(&format!("cycle-{i}"));
        let keys = state["compactor_keys"].as_u64().unwrap();
        assert!(keys <= bound, "after object {i}: {state}");
        assert!(state["objects"].as_u64().unwrap() >= 1, "{state}");
        most = most.max(keys);
    }
    println!("compactor keys held at most {most} of {bound}");
    assert!(most >= 40_000, "the compactors remembered nothing: {most}");

    // The first object's compactor has forgotten its keys: writing them again still logs them,
    // and a pull of the object reads them exactly.
    worker.post("sql/cycle-0/bench", r#"{"kind": "batched", "keys": 40000, "value_bytes": 9}"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cycled.sqlite");
    let run = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            worker.pull_with(&db, TOKEN, &["--name", "cycle-0"])
        })
        .find(|run| run.code == Some(0) && read_db(&db).values().next().is_some_and(|keys| keys.len() == 40_000))
        .expect("cycle-0 pulled whole");
    assert_eq!(run.code, Some(0));
    let pulled = read_db(&db);
    let keys = pulled.values().next().unwrap();
    assert!(keys.values().all(|v| v == &format!("\"{}\"", "v".repeat(9))), "a key kept an old value");
}
