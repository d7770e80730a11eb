//! One fuzz target per input durafetch parses from the outside: the export server's client
//! messages, a restore's requests, routes, hosts, tokens and registry reports; the puller's
//! server messages, a restore's replies, config file and filters; and the object's own log keys.

use durafetch_fuzz::Fuzzer;
use durafetch_pull::settings::file::ConfigFile;
use durafetch_pull::settings::filter::{Filter, FilterSpec};
use durafetch_pull::settings::pull::{Overrides, Settings};
use durafetch_sdk::core::auth::{bearer_token, Secret};
use durafetch_sdk::core::keys::{check_user_key, log_key, parse_log_key};
use durafetch_sdk::core::protocol::{ClientMessage, ObjectReport, ServerMessage};
use durafetch_sdk::core::restore_protocol::{ImportReply, ImportRequest};
use durafetch_sdk::core::route::{is_local_host, ApiAddress, ApiRoute};

#[test]
fn client_messages() {
    let corpus = [
        r#"{"type":"hello","version":1,"since":{"epoch":2,"seq":3},"since_rev":0,"window":8,"watch":false}"#,
        r#"{"type":"hello","version":1,"since_rev":9,"window":1,"watch":true}"#,
        r#"{"type":"credit","pages":1}"#,
    ];
    Fuzzer::new().run("client_messages", &corpus, |text| {
        if let Ok(msg) = ClientMessage::parse(text) {
            let again = ClientMessage::parse(&serde_json::to_string(&msg).unwrap());
            assert_eq!(again.as_ref(), Ok(&msg), "accepted message does not round-trip");
        }
    });
}

#[test]
fn import_requests() {
    let corpus = [
        r#"{"type":"hello","version":3,"mode":"replace","window":4}"#,
        r#"{"type":"list_keys","after":"k"}"#,
        r#"{"type":"put","changes":[{"k":"a","v":[1,{"x":null}]},{"k":"b","b":"AAE="},{"k":"c","d":true},{"k":"m","t":{"$type":"map","value":[["a",1]]}}]}"#,
        r#"{"type":"create_table","table":"t","statements":["CREATE TABLE t (a)","CREATE INDEX i ON t (a)"]}"#,
        r#"{"type":"rows","table":"t","columns":["a","b"],"rows":[{"k":"1","v":[1,{"blob":"AA=="}]},{"k":"'x'","v":[{"real":"inf"},2.5]}]}"#,
        r#"{"type":"drop_table","table":"t"}"#,
        r#"{"type":"end"}"#,
    ];
    Fuzzer::new().run("import_requests", &corpus, |text| {
        if let Ok(request) = ImportRequest::parse(text) {
            let again = ImportRequest::parse(&serde_json::to_string(&request).unwrap());
            assert_eq!(again.as_ref(), Ok(&request), "accepted request does not round-trip");
        }
    });
}

#[test]
fn import_replies() {
    let corpus = [
        r#"{"type":"ready","worker":"w","holds_keys":false,"tables":[{"table":"t","rows":3}]}"#,
        r#"{"type":"keys","keys":["a","b"],"done":true}"#,
        r#"{"type":"ack","written":2,"deleted":0}"#,
        r#"{"type":"refused","message":"holds data"}"#,
        r#"{"type":"error","message":"x"}"#,
    ];
    Fuzzer::new().run("import_replies", &corpus, |text| {
        if let Ok(reply) = serde_json::from_str::<ImportReply>(text) {
            let again: ImportReply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            assert_eq!(again, reply, "accepted reply does not round-trip");
        }
    });
}

#[test]
fn server_messages() {
    let corpus = [
        r#"{"type":"begin","mode":"snapshot","epoch":3}"#,
        r#"{"type":"page","changes":[{"k":"a","v":{"n":[1,2.5,null]}},{"k":"b","b":"AAE="},{"k":"c","d":true},{"k":"m","t":{"$type":"map","value":[["a",{"$type":"undefined"}]]}},{"k":"e","e":"a Error"}]}"#,
        r#"{"type":"end","cursor":{"epoch":1,"seq":7}}"#,
        r#"{"type":"objects","objects":[{"class":"C","id":"ab","name":null,"head":{"epoch":0,"seq":1},"rev":2,"changed_at":3}]}"#,
        r#"{"type":"index_end","rev":4,"shards":2}"#,
        r#"{"type":"error","message":"x"}"#,
    ];
    Fuzzer::new().run("server_messages", &corpus, |text| {
        let parsed = ServerMessage::parse(text);
        assert_eq!(parsed.as_ref().ok(), serde_json::from_str::<ServerMessage>(text).as_ref().ok(), "the fast path disagrees");
        if let Ok(msg) = parsed {
            let again = ServerMessage::parse(&serde_json::to_string(&msg).unwrap()).unwrap();
            assert_eq!(again, msg, "accepted message does not round-trip");
        }
    });
}

#[test]
fn registry_reports() {
    let corpus = [
        r#"{"class":"CounterKv","id":"abc","name":"n","head":{"epoch":0,"seq":12}}"#,
        r#"{"class":"C","id":"x","head":{"epoch":4294967295,"seq":18446744073709551615}}"#,
    ];
    Fuzzer::new().run("registry_reports", &corpus, |text| {
        if let Ok(report) = serde_json::from_str::<ObjectReport>(text) {
            let again: ObjectReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
            assert_eq!(again, report);
        }
    });
}

#[test]
fn api_routes() {
    let id = "0123456789abcdef".repeat(4);
    let export = format!("/export/CounterKv/{id}");
    let by_id = format!("/import/CounterKv/id/{id}/bXktYXBw");
    let corpus = ["/index", "/index/3", export.as_str(), "/export/1x/ab", "/", "/import/Room/name/cm9vbS00Mg", by_id.as_str()];
    Fuzzer::new().run("api_routes", &corpus, |path| {
        if let Ok(route) = ApiRoute::parse(path) {
            assert_eq!(ApiRoute::parse(&route.to_string()), Ok(route.clone()));
            if let ApiRoute::Export { id, .. } = route {
                assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
        }
    });
}

#[test]
fn hosts() {
    let corpus = [
        "durafetch_w-1.example.com",
        "durafetch-w-1.localhost:8787",
        "127.0.0.1:9",
        "[::1]:80",
        "x.durafetch_w-1.localhost",
        "/_durafetch-0123456789abcdef/index",
    ];
    let prefix = ApiAddress::parse(Some("path_prefix"), Some("/_durafetch-0123456789abcdef")).unwrap();
    Fuzzer::new().run("hosts", &corpus, |host| {
        for (address, label) in [(ApiAddress::UnderscoreLabel, "durafetch_w-1"), (ApiAddress::HyphenLabel, "durafetch-w-1")] {
            if address.api_path(host, "/index", "w-1").is_some() {
                assert!(host.split('.').next().unwrap().eq_ignore_ascii_case(label), "{host} matched w-1");
            }
        }
        // The same text as a path under a prefix: matched only as the whole first segment.
        if let Some(rest) = prefix.api_path("any.host", host, "w-1") {
            assert!(host == "/_durafetch-0123456789abcdef" || host.starts_with("/_durafetch-0123456789abcdef/"), "{host} matched");
            assert!(rest.starts_with('/'), "{host} gave {rest}");
        }
        if is_local_host(host) {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            assert!(name.contains("localhost") || name.starts_with("127.0.0.1") || name.starts_with("[::1]"), "{host} called local");
        }
    });
}

#[test]
fn secrets_and_authorization_headers() {
    let token = "t".repeat(40);
    let two = format!("{token} {}", "u".repeat(41));
    let header = format!("Bearer {token}");
    let corpus = [token.as_str(), two.as_str(), header.as_str(), "Bearer ", "short"];
    let valid = Secret::parse(Some(&token)).unwrap();
    Fuzzer::new().run("secrets_and_authorization_headers", &corpus, |text| {
        // As a secret: every token it accepts must be one of those it was given.
        if let Ok(secret) = Secret::parse(Some(text)) {
            for given in text.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
                assert!(secret.accepts(given), "a configured token is refused");
            }
        }
        // As a header: only the exact token passes.
        if valid.accepts_header(Some(text)) {
            assert_eq!(bearer_token(text).map(str::trim), Some(token.as_str()), "{text:?} accepted");
        }
    });
}

#[test]
fn object_keys() {
    let at = log_key(durafetch_sdk::core::cursor::Cursor::new(3, 99));
    let corpus = [at.as_str(), "user:1", "\u{1}durafetch\u{1}floor", "\u{1}durafetch", ""];
    Fuzzer::new().run("object_keys", &corpus, |key| {
        if let Some(cursor) = parse_log_key(key) {
            assert_eq!(log_key(cursor), key, "log keys have one spelling");
            assert!(check_user_key(key).is_err(), "a log key is reserved");
        }
    });
}

#[test]
fn puller_config_files() {
    let corpus = [
        r#"{"db_file": "x.sqlite", "servers": [{"ws_url": "wss://durafetch_app.example.com", "auth_token_env": "T"}], "concurrent_downloads": 4, "poll": {"every_ms": 50}}"#,
        r#"{"db_file": "/abs/x.sqlite", "servers": [{"ws_url": "ws://durafetch_a.localhost:1", "auth_token": "t"}]}"#,
    ];
    Fuzzer::new().run("puller_config_files", &corpus, |text| {
        let Ok(file) = ConfigFile::parse(text) else { return };
        let overrides = Overrides { token_env: "DURAFETCH_AUTH".into(), ..Default::default() };
        if let Ok(settings) = Settings::resolve(file, std::path::Path::new("/base"), overrides, |_| Some("token".into())) {
            for server in &settings.servers {
                let host = server.url.host_str().unwrap_or_default();
                assert!(server.url.scheme() == "wss" || is_local_host(host), "plain ws to {host} accepted");
                assert!(!host.is_empty() && server.url.query().is_none() && server.url.fragment().is_none());
            }
            assert!(settings.concurrency >= 1);
        }
    });
}

#[test]
fn puller_filters() {
    let corpus = ["user-*", "room-?", "[abc]*", "a**b", "[!x]"];
    Fuzzer::new().run("puller_filters", &corpus, |glob| {
        let spec = FilterSpec { names: vec![glob.to_owned()], ..Default::default() };
        if let Ok(filter) = Filter::new(spec) {
            let _ = filter.keeps_object("C", Some(glob));
            assert!(!filter.keeps_object("C", None), "a name glob kept an unnamed object");
        }
    });
}
