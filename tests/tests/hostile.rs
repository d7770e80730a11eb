//! Hostile WebSocket sessions against the export API: every malformed, oversized, out-of-order
//! or binary message gets an `error` message naming the problem and close code 1008, crashes
//! nothing, and leaves stored data and later pulls unaffected.

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use durafetch_e2e::{pulled, LocalWorker, TOKEN};

type Socket = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn open(worker: &LocalWorker, path: &str) -> Socket {
    let mut request = format!("ws://127.0.0.1:{}{path}", worker.port).into_client_request().unwrap();
    request.headers_mut().insert("host", worker.api_host().parse().unwrap());
    request.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    tungstenite::connect(request).expect("upgrade").0
}

/// Reads until the server closes; answers the `error` message it sent and the close code.
fn outcome(socket: &mut Socket) -> (String, Option<CloseCode>) {
    let mut error = String::new();
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => {
                let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
                if msg["type"] == "error" {
                    error = msg["message"].as_str().unwrap().to_owned();
                }
            }
            Ok(Message::Close(frame)) => return (error, frame.map(|f| f.code)),
            Ok(_) => {}
            Err(_) => return (error, None),
        }
    }
}

#[test]
fn malformed_sessions_are_refused_precisely_and_change_nothing() {
    let worker = LocalWorker::start(Some(TOKEN));
    worker.post("sql/target/put_multiple_raw", r#"{"a": 1, "b": [2]}"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hostile.sqlite");
    let expected = pulled(&[("CounterSql", "target", &[("a", "1"), ("b", "[2]")])]);
    worker.pull_until_equal(&db, &expected, "setup");
    let id: String = rusqlite::Connection::open(&db).unwrap().query_row("SELECT id FROM durable_objects", [], |r| r.get(0)).unwrap();
    let export = format!("/export/CounterSql/{id}");

    let big = format!(r#"{{"type":"hello","version":1,"window":1,"pad":"{}"}}"#, "x".repeat(5000));
    let cases: Vec<(&str, Message, &str)> = vec![
        ("credit first", Message::text(r#"{"type":"credit","pages":1}"#), "expected a hello message first"),
        ("not JSON", Message::text("hello?"), "malformed message"),
        ("unknown field", Message::text(r#"{"type":"hello","version":1,"window":1,"x":1}"#), "unknown field"),
        ("unknown type", Message::text(r#"{"type":"goodbye"}"#), "malformed message"),
        ("wrong version", Message::text(r#"{"type":"hello","version":2,"window":1}"#), "unsupported protocol version 2"),
        ("zero window", Message::text(r#"{"type":"hello","version":1,"window":0}"#), "window must be between 1 and 64"),
        ("huge window", Message::text(r#"{"type":"hello","version":1,"window":65}"#), "window must be between 1 and 64"),
        ("negative cursor", Message::text(r#"{"type":"hello","version":1,"window":1,"since":{"epoch":-1,"seq":0}}"#), "malformed message"),
        ("cursor past u64", Message::text(r#"{"type":"hello","version":1,"window":1,"since":{"epoch":0,"seq":18446744073709551616}}"#), "malformed message"),
        ("oversized", Message::text(big), "message too large"),
        ("binary", Message::binary(vec![0u8, 1, 2]), "expected a text frame"),
    ];
    for path in ["/index", export.as_str()] {
        for (case, message, expected_error) in &cases {
            let mut socket = open(&worker, path);
            socket.send(message.clone()).unwrap();
            let (error, code) = outcome(&mut socket);
            assert_eq!(code, Some(CloseCode::Policy), "{path} {case}: {error:?}");
            assert!(error.contains(expected_error), "{path} {case}: {error:?}");
            assert!(!error.contains(TOKEN));
        }
    }
    // A second hello in a watch session, and a credit beyond the window.
    for second in [r#"{"type":"hello","version":1,"window":1}"#, r#"{"type":"credit","pages":65}"#] {
        let mut socket = open(&worker, "/index");
        socket.send(Message::text(r#"{"type":"hello","version":1,"window":8,"watch":true}"#)).unwrap();
        socket.send(Message::text(second)).unwrap();
        let (error, code) = outcome(&mut socket);
        assert_eq!(code, Some(CloseCode::Policy), "{second}: {error:?}");
        assert!(error.contains("hello sent twice") || error.contains("window must be between"), "{second}: {error:?}");
    }
    // A client that vanishes mid-session costs nothing either.
    let mut socket = open(&worker, &export);
    socket.send(Message::text(r#"{"type":"hello","version":1,"window":1}"#)).unwrap();
    drop(socket);

    // Nothing changed, and pulls still work: a fresh file and an incremental one.
    assert_eq!(worker.object_state("sql", "target"), expected.values().next().unwrap().clone());
    let fresh = dir.path().join("fresh.sqlite");
    worker.pull_until_equal(&fresh, &expected, "fresh pull after the abuse");
    worker.post("sql/target/put?key=c", "3");
    let expected = pulled(&[("CounterSql", "target", &[("a", "1"), ("b", "[2]"), ("c", "3")])]);
    worker.pull_until_equal(&db, &expected, "incremental pull after the abuse");
}
