//! The export API's answers to everything but a well-formed, authenticated request: each gets
//! its precise status, reveals nothing, and changes nothing.

use durafetch_e2e::{pulled, raw_get, raw_post, LocalWorker, TOKEN};

const OTHER_TOKEN: &str = "rotated-token-zyxwvutsrqponmlkjihgfedcba0987654321";

/// The headers of a WebSocket upgrade carrying `bearer` as its Authorization.
fn upgrade(bearer: &str) -> Vec<(&str, &str)> {
    vec![
        ("authorization", bearer),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

#[test]
fn every_bad_request_gets_its_precise_answer() {
    // Two tokens at once, as during a rotation.
    let worker = LocalWorker::start(Some(&format!("{TOKEN} {OTHER_TOKEN}")));
    worker.post("sql/a/put?key=k", "1");
    let id = {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("api.sqlite");
        worker.pull_until_equal(&db, &pulled(&[("CounterSql", "a", &[("k", "1")])]), "setup");
        // Both tokens of a rotation are accepted.
        assert_eq!(worker.pull(&db, OTHER_TOKEN).code, Some(0));
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT id FROM durable_objects", [], |r| r.get::<_, String>(0)).unwrap()
    };
    let host = worker.api_host();
    let good = format!("Bearer {TOKEN}");
    let get = |host: &str, path: &str, headers: &[(&str, &str)]| raw_get(worker.port, host, path, headers);

    // Tokens: missing, empty, wrong, a prefix of the valid one, longer, wrong scheme.
    let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let longer = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    for bearer in ["", "Bearer ", "Bearer wrong", prefix.as_str(), longer.as_str(), basic.as_str()] {
        let (status, body) = get(&host, "/index", &upgrade(bearer));
        assert_eq!((status, body.trim()), (401, r#"{"error":"unauthorized"}"#), "{bearer:?}");
    }
    // Routes and parameters.
    let cases = [
        ("/nope".to_string(), 400, "unknown route"),
        (format!("/export/Nope/{id}"), 404, "the class Nope is not in [vars.DURAFETCH] objects (which lists: CounterKv, CounterSql)"),
        ("/export/CounterSql/xyz".to_string(), 400, "invalid object id"),
        (format!("/export/1bad/{id}"), 400, "invalid class name"),
        (format!("/export/CounterKv/{}", "0".repeat(64)), 400, "invalid object id for CounterKv"),
    ];
    for (path, status, message) in &cases {
        let (got, body) = get(&host, path, &upgrade(&good));
        assert_eq!(got, *status, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
        assert!(!body.contains(TOKEN), "{path} leaked the token");
    }
    let (status, body) = get(&host, &format!("/export/CounterSql/{id}"), &[("authorization", &good)]);
    assert_eq!((status, body.trim()), (426, r#"{"error":"expected a WebSocket upgrade, or for an export a POST of its hello"}"#));

    // Hosts: plain http on a public name is refused; other labels are the application's.
    let (status, _) = get("durafetch_durafetch-example.example.com", "/index", &upgrade(&good));
    assert_eq!(status, 403);
    let (status, body) = get("durafetch_durafetch-example-x.localhost", "/index", &upgrade(&good));
    assert_eq!(status, 404);
    assert!(body.contains("expected /<kv|sql"), "the application answers: {body}");

    // An application route that forwards outside requests to its objects exposes nothing: a
    // forged internal call is refused by the object, with or without a valid token.
    for forged in ["forged", "0000000000000000000000000000000000000000000000000000000000000000"] {
        let headers = [
            ("x-durafetch-internal", forged),
            ("x-durafetch-object", id.as_str()),
            ("authorization", good.as_str()),
            ("upgrade", "websocket"),
        ];
        let (status, body) = get(&format!("127.0.0.1:{}", worker.port), "/sql/a/get", &headers);
        assert_eq!((status, body.trim()), (403, r#"{"error":"forbidden"}"#));
    }
    assert_eq!(worker.object_state("sql", "a").get("k").map(String::as_str), Some("1"));
}

/// An export asked for in one request: a small object is answered whole, in the session's
/// messages one per line; a large one with 426 (Upgrade Required); a bad hello, token or
/// size with its precise status. The index and restores still need a WebSocket.
#[test]
fn an_export_in_one_request_is_answered_whole_or_sent_to_a_session() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/small/put?key=k", "\"v\"");
    let _ = worker.post_text("kv/large/bench", r#"{"kind":"batched","keys":300,"value_bytes":1024}"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("one.sqlite");
    let run = worker.pull(&db, TOKEN);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let ids: std::collections::BTreeMap<String, String> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT name, id FROM durable_objects")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let host = worker.api_host();
    let good = format!("Bearer {TOKEN}");
    let post = |path: &str, bearer: &str, body: &str| raw_post(worker.port, &host, path, &[("authorization", bearer)], body);
    let hello = r#"{"type":"hello","version":4,"window":8}"#;
    let small = format!("/export/CounterKv/{}", ids["small"]);
    let large = format!("/export/CounterKv/{}", ids["large"]);

    let (status, head, body) = post(&small, &good, hello);
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("content-type: application/x-ndjson"), "{head}");
    let lines: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "begin, one page, end: {body}");
    assert_eq!((lines[0]["type"].as_str(), lines[0]["mode"].as_str()), (Some("begin"), Some("snapshot")));
    assert_eq!(lines[1]["changes"], serde_json::json!([{"k": "k", "v": "v"}]));
    assert_eq!(lines[2]["type"], "end");
    // From the cursor it handed out, nothing has changed.
    let since = format!(r#"{{"type":"hello","version":4,"window":8,"since":{}}}"#, lines[2]["cursor"]);
    let (status, _, body) = post(&small, &good, &since);
    let types: Vec<String> = body.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string()).collect();
    assert_eq!((status, types.join(" ")), (200, r#""begin" "end""#.to_owned()), "{body}");

    let (status, _, body) = post(&large, &good, hello);
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("larger than one response"), "{body}");

    let bad = [
        (small.as_str(), "Bearer wrong", hello.to_owned(), 401, "unauthorized"),
        (small.as_str(), good.as_str(), r#"{"type":"hello","version":1,"window":8}"#.to_owned(), 400, "unsupported protocol version 1"),
        (small.as_str(), good.as_str(), r#"{"type":"credit","pages":1}"#.to_owned(), 400, "expected a hello message first"),
        (small.as_str(), good.as_str(), "not json".to_owned(), 400, "malformed message"),
        (small.as_str(), good.as_str(), format!("{:5000}", hello), 413, "message too large"),
        ("/index", good.as_str(), hello.to_owned(), 426, "expected a WebSocket upgrade"),
        ("/import/CounterKv/name/c21hbGw", good.as_str(), hello.to_owned(), 403, "restore is not enabled"),
    ];
    for (path, bearer, body, status, says) in bad {
        let (got, _, answer) = post(path, bearer, &body);
        assert_eq!(got, status, "{path} {body:.40}: {answer}");
        assert!(answer.contains(says), "{path} {body:.40}: {answer}");
        assert!(!answer.contains(TOKEN), "{path} leaked the token");
    }
}

#[test]
fn a_missing_or_short_secret_names_the_fix() {
    for secret in [None, Some("too-short")] {
        let worker = LocalWorker::start(secret);
        let (status, body) = raw_get(worker.port, &worker.api_host(), "/index", &[("authorization", "Bearer whatever")]);
        assert_eq!(status, 500, "{secret:?}");
        assert!(body.contains("wrangler secret put DURAFETCH_AUTH"), "{body}");
        // The application itself keeps working.
        worker.post("kv/still/put?key=k", "1");
    }
}

/// A secret one character short of the minimum: the puller prints the server's whole message
/// naming the fix, every time (its body can trail the answer's headers).
#[test]
fn the_puller_prints_the_servers_whole_refusal() {
    let short = &TOKEN[..39];
    let worker = LocalWorker::start(Some(short));
    let dir = tempfile::tempdir().unwrap();
    // Twenty pulls at once (each retries its 500s for several seconds before giving up).
    let runs: Vec<_> = std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..20)
            .map(|attempt| {
                let (worker, db) = (&worker, dir.path().join(format!("refused-{attempt}.sqlite")));
                scope.spawn(move || (worker.pull(&db, short), db))
            })
            .collect();
        pulls.into_iter().map(|pull| pull.join().unwrap()).collect()
    });
    for (attempt, (run, db)) in runs.iter().enumerate() {
        assert_eq!(run.code, Some(1), "attempt {attempt}: {}", run.stderr);
        assert!(run.stderr.contains("the server answered 500: durafetch:"), "attempt {attempt}: {}", run.stderr);
        assert!(run.stderr.contains("DURAFETCH_AUTH"), "attempt {attempt}: {}", run.stderr);
        assert!(!run.stderr.contains(short), "attempt {attempt} printed the token");
        assert!(!db.exists(), "a refused pull creates no file");
    }
}

/// An instrumented class missing from `[vars.DURAFETCH] objects`, or mapped to another class's
/// binding: its first object logs the fix, its writes still work and are recorded, and a pull
/// names the fix instead of a bare 404; once wrangler.toml is fixed, the next pull gets it all.
#[test]
fn an_instrumented_class_left_out_of_objects_names_the_fix() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    let dir = tempfile::tempdir().unwrap();
    for (name, objects, log, answer) in [
        (
            "left-out",
            r#"objects = { CounterKv = "COUNTER_KV" }"#,
            r#"the class CounterSql is not in [vars.DURAFETCH] objects (which lists: CounterKv); if CounterSql is instrumented with #[durafetch], add CounterSql = "<its Durable Object binding>""#,
            "the server answered 404: durafetch: the class CounterSql is not in [vars.DURAFETCH] objects",
        ),
        (
            "misbound",
            r#"objects = { CounterKv = "COUNTER_KV", CounterSql = "COUNTER_KV" }"#,
            "objects maps CounterSql to the binding COUNTER_KV, which belongs to another class",
            "the server answered 400: invalid object id for CounterSql",
        ),
    ] {
        let objects = objects.to_owned();
        worker.restart_with_config(Some(&move |toml: String| {
            toml.replace(r#"objects = { CounterKv = "COUNTER_KV", CounterSql = "COUNTER_SQL" }"#, &objects)
        }));
        worker.post(&format!("sql/{name}/put?key=k"), "1");
        assert!(worker.logged(log), "{name}: the object logged no fix: {}", worker.logs());
        let db = dir.path().join(format!("{name}.sqlite"));
        let mut run = worker.pull(&db, TOKEN);
        for _ in 0..50 {
            if run.stderr.contains(answer) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            run = worker.pull(&db, TOKEN);
        }
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(answer), "{name}: {}", run.stderr);
    }
    worker.restart_with_config(None);
    let fixed = pulled(&[("CounterSql", "left-out", &[("k", "1")]), ("CounterSql", "misbound", &[("k", "1")])]);
    worker.pull_until_file_equals(&dir.path().join("left-out.sqlite"), &fixed, "after the fix");
}
