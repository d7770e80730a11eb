//! The wire forms: round trips, the compact form, the fast page parse, exact values.

use super::*;
use crate::core::page_writer::PageWriter;
use serde_json::json;

fn round_trip(msg: &ServerMessage) -> ServerMessage {
    serde_json::from_str(&serde_json::to_string(msg).unwrap()).unwrap()
}

#[test]
fn changes_round_trip_faithfully() {
    let changes = vec![
        Change { key: "a".into(), value: ChangeValue::Json(json!({"n": 1, "s": [true, null]})) },
        Change { key: "null".into(), value: ChangeValue::Json(serde_json::Value::Null) },
        Change { key: "b".into(), value: ChangeValue::Bytes(vec![0, 255, 1, 128]) },
        Change { key: "c".into(), value: ChangeValue::Deleted },
        Change { key: "m".into(), value: ChangeValue::Tagged(json!({"$type": "map", "value": [["a", {"$type": "undefined"}]]})) },
        Change { key: "\u{0}odd key\n".into(), value: ChangeValue::Unsupported("Map".into()) },
    ];
    let msg = ServerMessage::Page { changes };
    assert_eq!(round_trip(&msg), msg);
}

#[test]
fn wire_form_is_compact_and_stable() {
    let page = ServerMessage::Page {
        changes: vec![
            Change { key: "k".into(), value: ChangeValue::Json(json!(2)) },
            Change { key: "x".into(), value: ChangeValue::Deleted },
        ],
    };
    assert_eq!(serde_json::to_string(&page).unwrap(), r#"{"type":"page","changes":[{"k":"k","v":2},{"k":"x","d":true}]}"#);
    let end = ServerMessage::End { cursor: Cursor::new(1, 7), sql: 3 };
    assert_eq!(serde_json::to_string(&end).unwrap(), r#"{"type":"end","cursor":{"epoch":1,"seq":7},"sql":3}"#);
    let rows = ServerMessage::SqlPage(SqlPage {
        table: "t".into(),
        columns: vec!["a".into(), "b".into()],
        rows: vec![SqlRow { k: "1".into(), v: Some(vec![SqlValue::Integer(1), SqlValue::Real(3.0)]) }, SqlRow { k: "'x'".into(), v: None }],
    });
    assert_eq!(
        serde_json::to_string(&rows).unwrap(),
        r#"{"type":"sql_page","table":"t","columns":["a","b"],"rows":[{"k":"1","v":[1,3.0]},{"k":"'x'"}]}"#
    );
}

#[test]
fn pages_parse_on_the_fast_path_and_everything_else_as_before() {
    let mut writer = PageWriter::default();
    writer.push(Change { key: "k".into(), value: ChangeValue::Json(json!({"a": [1]})) });
    writer.push(Change { key: "b".into(), value: ChangeValue::Bytes(vec![1, 2]) });
    let text = writer.take().unwrap();
    assert_eq!(ServerMessage::parse(&text).unwrap(), serde_json::from_str::<ServerMessage>(&text).unwrap());
    let end = r#"{"type":"end","cursor":{"epoch":1,"seq":2}}"#;
    assert_eq!(ServerMessage::parse(end).unwrap(), ServerMessage::End { cursor: Cursor::new(1, 2), sql: 0 });
    assert!(ServerMessage::parse(r#"{"type":"page","changes":[{"k":"a"}]}"#).is_err());
}

#[test]
fn floats_parse_to_the_nearest_double() {
    // Found by the fuzzer: without correctly rounded parsing this lands one ulp off.
    let change: Change = serde_json::from_str(r#"{"k":"a","v":2.184467440737095516165}"#).unwrap();
    let again: Change = serde_json::from_str(&serde_json::to_string(&change).unwrap()).unwrap();
    assert_eq!(again, change);
    assert_eq!(change.value, ChangeValue::Json(json!(2.1844674407370954)));
}

#[test]
fn sql_values_round_trip_exactly() {
    let values = vec![
        SqlValue::Null,
        SqlValue::Integer(i64::MIN),
        SqlValue::Integer(i64::MAX),
        SqlValue::Integer((1 << 53) + 1),
        SqlValue::Integer(-7),
        SqlValue::Real(3.0),
        SqlValue::Real(-0.1),
        SqlValue::Real(f64::MAX),
        SqlValue::Real(f64::INFINITY),
        SqlValue::Real(f64::NEG_INFINITY),
        SqlValue::Text("é\u{0}😀\"".into()),
        SqlValue::Blob(vec![0, 255, 0]),
        SqlValue::Blob(vec![]),
    ];
    let text = serde_json::to_string(&values).unwrap();
    let back: Vec<SqlValue> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, values, "{text}");
    // 3.0 keeps its fraction, so it cannot come back as the integer 3.
    assert!(text.contains("3.0"), "{text}");
    for bad in [r#"18446744073709551615"#, r#"{"blob":"!"}"#, r#"{"real":"nan"}"#, r#"[1]"#, r#"true"#] {
        assert!(serde_json::from_str::<SqlValue>(bad).is_err(), "{bad}");
    }
}

#[test]
fn ambiguous_changes_are_rejected() {
    for bad in [
        r#"{"k":"a"}"#,
        r#"{"k":"a","v":1,"d":true}"#,
        r#"{"k":"a","d":false}"#,
        r#"{"k":"a","b":"!!"}"#,
        r#"{"k":"a","v":1,"z":1}"#,
        r#"{"k":"a","v":1,"t":1}"#,
    ] {
        assert!(serde_json::from_str::<Change>(bad).is_err(), "{bad}");
    }
}

#[test]
fn client_messages_are_validated() {
    let hello = ClientMessage::parse(r#"{"type":"hello","version":4,"since":{"epoch":2,"seq":3},"since_sql":5,"window":4}"#).unwrap();
    assert_eq!(
        hello,
        ClientMessage::Hello { version: 4, since: Some(Cursor::new(2, 3)), since_sql: 5, since_rev: 0, window: 4, watch: false }
    );
    assert_eq!(
        ClientMessage::parse(r#"{"type":"hello","version":4,"since_rev":9,"window":1}"#).unwrap(),
        ClientMessage::Hello { version: 4, since: None, since_sql: 0, since_rev: 9, window: 1, watch: false }
    );
    assert_eq!(
        ClientMessage::parse(r#"{"type":"hello","version":4,"since_rev":9,"window":1,"watch":true}"#).unwrap(),
        ClientMessage::Hello { version: 4, since: None, since_sql: 0, since_rev: 9, window: 1, watch: true }
    );
    assert_eq!(ClientMessage::parse(r#"{"type":"hello","version":1,"window":4}"#), Err(ProtocolError::Version(1)));
    assert_eq!(ClientMessage::parse(r#"{"type":"hello","version":2,"window":4}"#), Err(ProtocolError::Version(2)));
    assert_eq!(ClientMessage::parse(r#"{"type":"hello","version":3,"window":4}"#), Err(ProtocolError::Version(3)));
    assert_eq!(ClientMessage::parse(r#"{"type":"hello","version":4,"window":0}"#), Err(ProtocolError::Window));
    assert_eq!(ClientMessage::parse(r#"{"type":"credit","pages":65}"#), Err(ProtocolError::Window));
    assert!(matches!(ClientMessage::parse("not json"), Err(ProtocolError::Malformed(_))));
    assert!(matches!(ClientMessage::parse(r#"{"type":"credit","pages":1,"x":1}"#), Err(ProtocolError::Malformed(_))));
    assert!(matches!(
        ClientMessage::parse(r#"{"type":"hello","version":4,"window":1,"since":{"epoch":-1,"seq":0}}"#),
        Err(ProtocolError::Malformed(_))
    ));
    assert_eq!(ClientMessage::parse(&" ".repeat(MAX_CLIENT_MESSAGE_BYTES + 1)), Err(ProtocolError::TooLarge));
}
