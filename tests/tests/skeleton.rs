//! The walking-skeleton scenario: 30 objects of both classes go through put, put_multiple,
//! overwrite, delete, delete_multiple, delete_all and new writes; after each step a real pull
//! must make the SQLite file equal, row by row, to what the objects themselves hold.

use std::collections::BTreeMap;

use durafetch_e2e::{dump, pulled, raw_get, read_db, LocalWorker, Pulled, TOKEN};

const CLASSES: [(&str, &str); 2] = [("kv", "CounterKv"), ("sql", "CounterSql")];
const PER_CLASS: usize = 15;

fn objects() -> Vec<(&'static str, &'static str, String)> {
    CLASSES.iter().flat_map(|(route, class)| (0..PER_CLASS).map(move |i| (*route, *class, format!("obj-{i:02}")))).collect()
}

fn model(keys: &[(&str, &str)]) -> Pulled {
    objects()
        .into_iter()
        .map(|(_, class, name)| {
            let keys: BTreeMap<String, String> = keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ((class.to_string(), name), keys)
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect()
}

#[test]
fn every_step_of_the_scenario_is_pulled_exactly() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pulled.sqlite");

    // (1) No writes yet: nothing in the index, nothing in the file.
    let run = worker.pull(&db, TOKEN);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.objects_pulled(), 0);
    assert!(read_db(&db).is_empty());

    // (2) put key-a, put_multiple key-b..key-d (a HashMap, which the sdk must not drop).
    for (route, _, name) in objects() {
        worker.post(&format!("{route}/{name}/put?key=key-a"), "1");
        worker.post(&format!("{route}/{name}/put_multiple"), r#"{"key-b":1,"key-c":1,"key-d":1}"#);
    }
    let all_one = model(&[("key-a", "1"), ("key-b", "1"), ("key-c", "1"), ("key-d", "1")]);
    worker.pull_until_equal(&db, &all_one, "step 2");
    assert_eq!(read_db(&db).len(), 30);

    // A pull with no writes in between downloads no object.
    let idle = worker.pull(&db, TOKEN);
    assert_eq!(idle.code, Some(0));
    assert_eq!(idle.objects_pulled(), 0, "an idle pull downloaded objects: {:?}", idle.summary);

    // (3) All four set to 2: key-a with put, the rest with put_multiple_raw.
    for (route, _, name) in objects() {
        worker.post(&format!("{route}/{name}/put?key=key-a"), "2");
        worker.post(&format!("{route}/{name}/put_multiple_raw"), r#"{"key-b":2,"key-c":2,"key-d":2}"#);
    }
    let all_two = model(&[("key-a", "2"), ("key-b", "2"), ("key-c", "2"), ("key-d", "2")]);
    let pulls = worker.pull_until_equal(&db, &all_two, "step 3");
    let downloaded: u64 = pulls.iter().map(|r| r.objects_pulled()).sum();
    let snapshots: u64 = pulls.iter().map(|r| r.snapshots()).sum();
    assert!(downloaded >= 30, "every object must have been downloaded: {downloaded}");
    assert_eq!(snapshots, 0, "changes after a pull are read incrementally");

    // (4) delete key-a, delete_multiple key-b and key-c: only key-d is left.
    for (route, _, name) in objects() {
        worker.post(&format!("{route}/{name}/delete?key=key-a"), "");
        worker.post(&format!("{route}/{name}/delete_multiple"), r#"["key-b","key-c"]"#);
    }
    worker.pull_until_equal(&db, &model(&[("key-d", "2")]), "step 4");

    // (5) delete_all: no rows left for those objects, even though nothing was written after it.
    for (route, _, name) in objects() {
        worker.post(&format!("{route}/{name}/delete_all"), "");
    }
    worker.pull_until_equal(&db, &Pulled::new(), "step 5");

    // (6) Writing again after delete_all starts a new epoch that is pulled like any other.
    for (route, _, name) in objects() {
        worker.post(&format!("{route}/{name}/put?key=key-a"), "3");
        worker.post(&format!("{route}/{name}/put_multiple"), r#"{"key-b":3,"key-c":3,"key-d":3}"#);
    }
    let all_three = model(&[("key-a", "3"), ("key-b", "3"), ("key-c", "3"), ("key-d", "3")]);
    worker.pull_until_equal(&db, &all_three, "step 6");

    // A wrong token gets a 401, exit status 2, and leaves the file exactly as it was.
    let before = dump(&db);
    let wrong = worker.pull(&db, "e2e-token-0123456789abcdefghijklmnopqrstuvwxyZ");
    assert_eq!(wrong.code, Some(2), "{}", wrong.stderr);
    assert!(wrong.stderr.contains("401"), "{}", wrong.stderr);
    assert!(!wrong.stderr.contains("e2e-token"), "the token leaked into the error: {}", wrong.stderr);
    assert_eq!(dump(&db), before);

    let (status, body) = raw_get(worker.port, &worker.api_host(), "/index", &[("authorization", "Bearer nope")]);
    assert_eq!((status, body.trim()), (401, r#"{"error":"unauthorized"}"#));
}

#[test]
fn bytes_and_nested_values_round_trip() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("values.sqlite");
    worker.post("sql/values/put_raw?key=bin", "\u{0}\u{1}binary\u{7f}");
    worker.post("sql/values/put_multiple_raw", r#"{"nested":{"a":[1,2.5,null,true,"s"],"z":{}},"unicode":"h\u00e9llo \ud83d\ude00"}"#);
    worker.post("kv/values/put?key=neg", "-17");
    // Long strings leave the object by another path (the runtime's UTF-8 encoder) than short ones.
    let long = "h\u{e9}llo \u{1f600} \\ \" \n".repeat(100);
    worker.post("sql/values/put_multiple_raw", &serde_json::json!({ "long": long }).to_string());
    let expected: Pulled = [
        (
            ("CounterSql".to_string(), "values".to_string()),
            [
                ("bin".to_string(), format!("<bytes:{}>", "0001".to_string() + &hex("binary") + "7F")),
                ("nested".to_string(), r#"{"a":[1,2.5,null,true,"s"],"z":{}}"#.to_string()),
                ("unicode".to_string(), "\"héllo 😀\"".to_string()),
                ("long".to_string(), serde_json::to_string(&long).unwrap()),
            ]
            .into_iter()
            .collect(),
        ),
        (("CounterKv".to_string(), "values".to_string()), [("neg".to_string(), "-17".to_string())].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    worker.pull_until_equal(&db, &expected, "values");
}

#[test]
fn values_json_cannot_hold_arrive_tagged_and_the_rest_as_errors() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typed.sqlite");
    for kind in ["struct", "map", "mix", "error"] {
        worker.post(&format!("kv/typed/put_typed?key={kind}"), kind);
    }
    // Storage itself refuses a top-level undefined; the instrumented put must refuse it too.
    let (status, body) = worker.try_post("kv/typed/put_typed?key=undefined", "undefined").unwrap_err();
    assert_eq!((status, body.contains("undefined value")), (500, true), "{body}");
    worker.post("kv/typed/put?key=json_object", r#"{"b":[1,{"c":null}],"a":"x"}"#);
    let tagged = |text: &str| format!("<tagged:{text}>");
    let expected: Pulled = [(
        ("CounterKv".to_string(), "typed".to_string()),
        [
            ("struct", tagged(r#"{"name":"ada","nickname":{"$type":"undefined"},"scores":{"$type":"map","value":[["chess",7]]}}"#)),
            ("map", tagged(r#"{"$type":"map","value":[["a",1],[2,{"$type":"date","value":86400000}]]}"#)),
            (
                "mix",
                tagged(concat!(
                    r#"{"$type":"object","value":{"set":{"$type":"set","value":[{"$type":"bigint","value":"-12345678901234567890"},{"$type":"number","value":"NaN"}]},"#,
                    r#""bytes":{"$type":"bytes","value":"AP8="},"floats":{"$type":"Float64Array","value":"AAAAAAAA+D8="},"nothing":{"$type":"undefined"},"#,
                    r#""pattern":{"$type":"regexp","value":{"source":"^a+$","flags":"gi"}},"$type":"user data","list":[{"$type":"number","value":"-Infinity"},null]}}"#
                )),
            ),
            ("error", "<error>".to_string()),
            // serde-wasm-bindgen turns a JSON object into a JS Map, keys in order, and null
            // into undefined: the file shows what storage holds.
            ("json_object", tagged(r#"{"$type":"map","value":[["b",[1,{"$type":"map","value":[["c",{"$type":"undefined"}]]}]],["a","x"]]}"#)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    )]
    .into_iter()
    .collect();
    worker.pull_until_file_equals(&db, &expected, "typed values");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let why: String = conn.query_row("SELECT val_error FROM kv WHERE key = 'error'", [], |r| r.get(0)).unwrap();
    assert!(why.contains("Error"), "{why}");
}

/// The object's export writes runs of plain-JSON values with the runtime's JSON.stringify and
/// everything else with durafetch's exact encoder. Values at the edge between the two, side by
/// side in one page, must each arrive as the exact encoder would have them.
#[test]
fn values_at_the_edge_of_json_arrive_exactly_whichever_encoder_takes_them() {
    let worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("edges.sqlite");
    // The example turns each value into the JS value JSON.parse gives.
    worker.post(
        "sql/edges/put_multiple_raw",
        r#"{"a1": 1.5, "a3": 9007199254740993, "a4": 1e-7, "a5": 123456789012, "a6": "\u0007\u0000é",
            "a7": {"$type": "x", "n": [true, null]}, "b1": 1e21, "b2": 5e-324, "b3": -9007199254740991}"#,
    );
    for kind in ["sparse", "undefined_item", "lone_surrogate", "lone_surrogate_key", "null_proto", "named_array"] {
        worker.post(&format!("sql/edges/put_typed?key=c-{kind}"), kind);
    }
    let expected = pulled(&[(
        "CounterSql",
        "edges",
        &[
            ("a1", "1.5"),
            // Beyond 2^53 the double is 9007199254740992, written as the float it is.
            ("a3", "9007199254740992.0"),
            ("a4", "1e-7"),
            ("a5", "123456789012"),
            ("a6", r#""\u0007\u0000é""#),
            ("a7", r#"{"$type":"x","n":[true,null]}"#),
            ("b1", "1e+21"),
            ("b2", "5e-324"),
            ("b3", "-9007199254740991"),
            ("c-sparse", r#"<tagged:[1,{"$type":"hole"},3]>"#),
            ("c-undefined_item", r#"<tagged:[1,{"$type":"undefined"},3]>"#),
            ("c-lone_surrogate", "<error>"),
            ("c-lone_surrogate_key", "<error>"),
            ("c-null_proto", r#"{"a":1}"#),
            ("c-named_array", "<error>"),
        ],
    )]);
    worker.pull_until_file_equals(&db, &expected, "edge values");
    // The same values again, read incrementally: through the exact encoder alone.
    for kind in ["lone_surrogate", "lone_surrogate_key", "named_array"] {
        worker.post(&format!("sql/edges/put_typed?key=d-{kind}"), kind);
    }
    let mut expected = expected;
    let keys = expected.values_mut().next().unwrap();
    for kind in ["lone_surrogate", "lone_surrogate_key", "named_array"] {
        keys.insert(format!("d-{kind}"), "<error>".into());
    }
    let runs = worker.pull_until_file_equals(&db, &expected, "edge values, incrementally");
    assert!(runs.iter().all(|run| run.snapshots() == 0), "the second pull was not incremental");
    let conn = rusqlite::Connection::open(&db).unwrap();
    for key in ["c-lone_surrogate", "c-lone_surrogate_key", "d-lone_surrogate", "d-lone_surrogate_key"] {
        let why: String = conn.query_row("SELECT val_error FROM kv WHERE key = ?1", [key], |r| r.get(0)).unwrap();
        assert!(why.contains("lone surrogate"), "{key}: {why}");
    }
    let why: String = conn.query_row("SELECT val_error FROM kv WHERE key = 'c-named_array'", [], |r| r.get(0)).unwrap();
    assert!(why.contains("an array with named properties"), "{why}");
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}
