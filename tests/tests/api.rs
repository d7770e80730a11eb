//! The export API's answers to everything but a well-formed, authenticated request: each gets
//! its precise status, reveals nothing, and changes nothing.

use durafetch_e2e::{pulled, raw_get, LocalWorker, TOKEN};

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
        (format!("/export/Nope/{id}"), 404, "unknown class"),
        ("/export/CounterSql/xyz".to_string(), 400, "invalid object id"),
        (format!("/export/1bad/{id}"), 400, "invalid class name"),
        (format!("/export/CounterKv/{}", "0".repeat(64)), 400, "invalid object id for this class"),
    ];
    for (path, status, message) in &cases {
        let (got, body) = get(&host, path, &upgrade(&good));
        assert_eq!(got, *status, "{path}: {body}");
        assert!(body.contains(message), "{path}: {body}");
        assert!(!body.contains(TOKEN), "{path} leaked the token");
    }
    let (status, body) = get(&host, &format!("/export/CounterSql/{id}"), &[("authorization", &good)]);
    assert_eq!((status, body.trim()), (426, r#"{"error":"expected a WebSocket upgrade"}"#));

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
