//! Hostile WebSocket sessions against the export API: every malformed, oversized, out-of-order
//! or binary message gets an `error` message naming the problem and close code 1008, crashes
//! nothing, and leaves stored data and later pulls unaffected.

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use durafetch_e2e::{api_socket, pulled, session_outcome, ApiSocket, LocalWorker, TOKEN};

fn open(worker: &LocalWorker, path: &str) -> ApiSocket {
    api_socket(worker, path, TOKEN)
}

fn outcome(socket: &mut ApiSocket) -> (String, Option<CloseCode>) {
    session_outcome(socket)
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

    let big = format!(r#"{{"type":"hello","version":4,"window":1,"pad":"{}"}}"#, "x".repeat(5000));
    let cases: Vec<(&str, Message, &str)> = vec![
        ("credit first", Message::text(r#"{"type":"credit","pages":1}"#), "expected a hello message first"),
        ("not JSON", Message::text("hello?"), "malformed message"),
        ("unknown field", Message::text(r#"{"type":"hello","version":4,"window":1,"x":1}"#), "unknown field"),
        ("unknown type", Message::text(r#"{"type":"goodbye"}"#), "malformed message"),
        (
            "old puller",
            Message::text(r#"{"type":"hello","version":1,"window":1}"#),
            "unsupported protocol version 1; this server speaks version 4",
        ),
        ("zero window", Message::text(r#"{"type":"hello","version":4,"window":0}"#), "window must be between 1 and 64"),
        ("huge window", Message::text(r#"{"type":"hello","version":4,"window":65}"#), "window must be between 1 and 64"),
        ("negative cursor", Message::text(r#"{"type":"hello","version":4,"window":1,"since":{"epoch":-1,"seq":0}}"#), "malformed message"),
        (
            "cursor past u64",
            Message::text(r#"{"type":"hello","version":4,"window":1,"since":{"epoch":0,"seq":18446744073709551616}}"#),
            "malformed message",
        ),
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
    // A second hello in a watch session, a credit larger than any window, and credits that add
    // up past the hello's window (each within bounds): the object would queue pages without bound.
    for (second, expected_error) in [
        (r#"{"type":"hello","version":4,"window":1}"#, "hello sent twice"),
        (r#"{"type":"credit","pages":65}"#, "window must be between"),
        (r#"{"type":"credit","pages":8}"#, "credit beyond the window"),
    ] {
        let mut socket = open(&worker, "/index");
        socket.send(Message::text(r#"{"type":"hello","version":4,"window":8,"watch":true}"#)).unwrap();
        socket.send(Message::text(second)).unwrap();
        let (error, code) = outcome(&mut socket);
        assert_eq!(code, Some(CloseCode::Policy), "{second}: {error:?}");
        assert!(error.contains(expected_error), "{second}: {error:?}");
    }
    // A client that vanishes mid-session costs nothing either.
    let mut socket = open(&worker, &export);
    socket.send(Message::text(r#"{"type":"hello","version":4,"window":1}"#)).unwrap();
    drop(socket);

    // Nothing changed, and pulls still work: a fresh file and an incremental one.
    assert_eq!(worker.object_state("sql", "target"), expected.values().next().unwrap().clone());
    let fresh = dir.path().join("fresh.sqlite");
    worker.pull_until_equal(&fresh, &expected, "fresh pull after the abuse");
    worker.post("sql/target/put?key=c", "3");
    let expected = pulled(&[("CounterSql", "target", &[("a", "1"), ("b", "[2]"), ("c", "3")])]);
    worker.pull_until_equal(&db, &expected, "incremental pull after the abuse");
}

/// A client that stops talking without closing is let go after the silence limit, with an error
/// that says so: one that never sends its hello, and one that stops returning credits mid-export.
#[test]
fn a_silent_client_is_let_go_after_the_silence_limit() {
    let worker = LocalWorker::start(Some(TOKEN));
    // Reads start at 16 keys and double, so 1,000 keys take several pages.
    worker.post("sql/wide/bench", r#"{"kind":"batched","keys":1000,"value_bytes":100}"#);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("silent.sqlite");
    // The registry hears of the object a moment after its writes.
    let id = (0..50)
        .find_map(|_| {
            assert_eq!(worker.pull(&db, TOKEN).code, Some(0));
            let conn = rusqlite::Connection::open(&db).unwrap();
            let id = conn.query_row("SELECT id FROM durable_objects WHERE name = 'wide'", [], |r| r.get::<_, String>(0)).ok();
            id.or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                None
            })
        })
        .expect("the registry lists the object");
    let export = format!("/export/CounterSql/{id}");

    let started = std::time::Instant::now();
    // Bounded reads, so that a server that never lets go fails the test instead of hanging it.
    let bounded = |socket: ApiSocket| {
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(150))).unwrap();
        }
        socket
    };
    let mut mute = bounded(open(&worker, &export));
    let mut stalled = bounded(open(&worker, &export));
    stalled.send(Message::text(r#"{"type":"hello","version":4,"window":1}"#)).unwrap();
    let mut pages = 0;
    let (error, code) = loop {
        match stalled.read() {
            Ok(Message::Text(text)) if text.starts_with(r#"{"type":"page""#) => pages += 1,
            Ok(Message::Text(text)) if text.starts_with(r#"{"type":"error""#) => {
                let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
                break (msg["message"].as_str().unwrap().to_owned(), outcome(&mut stalled).1);
            }
            Ok(Message::Close(frame)) => break (String::new(), frame.map(|f| f.code)),
            Ok(_) => {}
            Err(e) => panic!("the stalled session ended without an error: {e}"),
        }
    };
    let waited = started.elapsed();
    assert_eq!(pages, 1, "one page for the window of one, then the server waits for a credit");
    assert_eq!(code, Some(CloseCode::Policy), "{error:?}");
    assert!(error.contains("sent nothing for 60 s"), "{error:?}");
    assert!(waited >= std::time::Duration::from_secs(55), "let go after {waited:?}, before the limit");
    let (error, code) = outcome(&mut mute);
    assert_eq!(code, Some(CloseCode::Policy), "{error:?}");
    assert!(error.contains("sent nothing for 60 s"), "{error:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(120), "both let go within the limit and a margin");
}
