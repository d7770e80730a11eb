//! Every write path from every entry point: the same calls made from fetch, from an alarm and
//! from a hibernatable WebSocket message, in objects of both classes, each pulled and compared
//! row by row with what the object holds.

use durafetch_e2e::{pulled, LocalWorker, Pulled, TOKEN};

/// Every write path once: put, put_raw, put_multiple (a HashMap), put_multiple_raw, delete,
/// delete_multiple, and a committed and a rolled-back transaction.
const EVERY_PATH: &str = r#"[
    {"op": "put", "key": "a", "value": 1},
    {"op": "put_raw", "key": "b", "bytes": [0, 255, 7]},
    {"op": "put_multiple", "entries": {"c": 1, "d": 1}},
    {"op": "put_multiple_raw", "entries": {"e": {"x": [1, "y"]}}},
    {"op": "delete", "key": "a"},
    {"op": "delete_multiple", "keys": ["c"]},
    {"op": "transaction", "put": [["f", 1]], "delete": ["d"], "rollback": false},
    {"op": "transaction", "put": [["g", 1]], "delete": ["e"], "rollback": true}
]"#;
const AFTER_EVERY_PATH: &[(&str, &str)] = &[("b", "<bytes:00FF07>"), ("e", r#"{"x":[1,"y"]}"#), ("f", "1")];

/// delete_all, then a write into the new epoch.
const RESET: &str = r#"[{"op": "delete_all"}, {"op": "put", "key": "z", "value": 2}]"#;

enum Entry {
    Fetch,
    Alarm,
    Socket,
}

fn run(worker: &LocalWorker, entry: &Entry, route: &str, name: &str, ops: &str) {
    match entry {
        Entry::Fetch => worker.post(&format!("{route}/{name}/ops"), ops),
        Entry::Alarm => worker.post(&format!("{route}/{name}/ops_in_alarm"), ops),
        Entry::Socket => {
            let url = format!("ws://127.0.0.1:{}/{route}/{name}/socket", worker.port);
            let (mut socket, _) = tungstenite::connect(url).expect("socket");
            socket.send(tungstenite::Message::text(format!("ops:{ops}"))).unwrap();
            assert_eq!(socket.read().unwrap().to_text().unwrap(), "ok");
            socket.close(None).unwrap();
            while socket.read().is_ok() {}
        }
    }
}

#[test]
fn every_write_path_from_every_entry_point() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("matrix.sqlite");
    let entries = [("fetch", Entry::Fetch), ("alarm", Entry::Alarm), ("socket", Entry::Socket)];
    let classes = [("kv", "CounterKv"), ("sql", "CounterSql")];

    let expect = |keys: &dyn Fn(&str) -> Vec<(&'static str, &'static str)>| -> Pulled {
        let mut all = Pulled::new();
        for (entry, _) in &entries {
            for (_, class) in &classes {
                let name = format!("matrix-{entry}");
                all.extend(pulled(&[(class, &name, &keys(entry))]));
            }
        }
        all
    };
    // Closing a socket is a write of its own, counted by the example.
    let closed = |entry: &str, count: &'static str| if entry == "socket" { vec![("sockets-closed", count)] } else { vec![] };

    for (label, entry) in &entries {
        for (route, _) in &classes {
            run(&worker, entry, route, &format!("matrix-{label}"), EVERY_PATH);
        }
    }
    let after_paths = expect(&|entry| [AFTER_EVERY_PATH.to_vec(), closed(entry, "1")].concat());
    worker.pull_until_equal(&db, &after_paths, "every write path");

    for (label, entry) in &entries {
        for (route, _) in &classes {
            run(&worker, entry, route, &format!("matrix-{label}"), RESET);
        }
    }
    // The socket's close after delete_all counts from zero again.
    let after_reset = expect(&|entry| [vec![("z", "2")], closed(entry, "1")].concat());
    worker.pull_until_equal(&db, &after_reset, "delete_all and a new epoch");
}
