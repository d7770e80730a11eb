//! durafetch-pull's answers to bad configuration: one clear line naming the problem and the fix,
//! exit status 2 (1 for a server it cannot reach), and no database file written.

use std::path::Path;
use std::process::Command;

use durafetch_e2e::{finish_within, puller_binary, spawn_piped, PULL_LIMIT};

fn run(dir: &Path, config: Option<&str>, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(puller_binary());
    cmd.current_dir(dir).env_remove("DURAFETCH_AUTH");
    if let Some(config) = config {
        std::fs::write(dir.join("config.json"), config).unwrap();
        cmd.args(["--config-file", "config.json"]);
    }
    cmd.args(args);
    let out = finish_within(spawn_piped(cmd), PULL_LIMIT, "durafetch-pull with a bad configuration");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_configuration_is_named_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cases: Vec<(Option<String>, Vec<String>, i32, &str)> = vec![
        (None, vec!["--config-file".into(), "missing.json".into()], 2, "cannot read the config file"),
        (Some("{not json".into()), vec![], 2, "is not valid"),
        (Some(r#"{"db_file": "x.sqlite", "servers": [], "colour": 1}"#.into()), vec![], 2, "unknown field `colour`"),
        (Some(r#"{"db_file": "x.sqlite", "servers": []}"#.into()), vec![], 2, "no server"),
        (
            Some(r#"{"db_file": "x.sqlite", "servers": [{"ws_url": "ws://durafetch_app.example.com", "auth_token": "t"}]}"#.into()),
            vec![],
            2,
            "use wss://",
        ),
        (
            // Any host may serve the API (under a path prefix), but a token in the URL is a mistake.
            Some(r#"{"db_file": "x.sqlite", "servers": [{"ws_url": "wss://app.example.com/?token=t", "auth_token": "t"}]}"#.into()),
            vec![],
            2,
            "a query or fragment has no meaning here",
        ),
        (
            Some(r#"{"db_file": "x.sqlite", "servers": [{"ws_url": "wss://durafetch_app.example.com"}]}"#.into()),
            vec![],
            2,
            "set the environment variable DURAFETCH_AUTH",
        ),
        (Some(r#"{"servers": [{"ws_url": "wss://durafetch_app.example.com", "auth_token": "t"}]}"#.into()), vec![], 2, "no database file"),
        (
            Some(format!(
                r#"{{"db_file": "x.sqlite", "servers": [{{"ws_url": "ws://durafetch_app.localhost:{closed_port}", "auth_token": "t"}}]}}"#
            )),
            vec![],
            1,
            "cannot reach",
        ),
    ];
    for (config, args, code, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, stderr) = run(dir.path(), config.as_deref(), &args);
        assert_eq!(got, Some(code), "{config:?}: {stderr}");
        assert!(stderr.contains(message), "{config:?}: expected {message:?} in {stderr}");
        // A server that cannot be reached is first retried, as a restarting worker would be:
        // a warning per retry, then the one line.
        let (retries, last) = stderr.trim().lines().partition::<Vec<_>, _>(|line| line.contains("failed; retrying"));
        assert_eq!(last.len(), 1, "one line besides the retries: {stderr}");
        assert_eq!(retries.len(), if code == 1 { 5 } else { 0 }, "{config:?}: {stderr}");
        assert!(!stderr.contains("\"t\"") && !stderr.contains("token=t"), "token in the error: {stderr}");
        assert!(!dir.path().join("x.sqlite").exists(), "{config:?} wrote the database");
    }
}
