//! The three places the export API can answer, chosen in `[vars.DURAFETCH]`: the host label
//! `durafetch_<worker>` (every other test), the hyphen label `durafetch-<worker>`, and a path
//! prefix on any host. In each, a pull works, a near miss reaches the user's code untouched, and
//! the API without a token gets nothing. Then each over wss://, through a TLS endpoint with a CA
//! of its own in front of the worker, as a zone's edge or a TLS-inspecting proxy would be.

use std::path::Path;
use std::process::Command;

use durafetch_e2e::tls::TlsFront;
use durafetch_e2e::{finish_within, pulled, puller_at, raw_get, read_db, spawn_piped, LocalWorker, PULL_LIMIT, TOKEN, WORKER};

const PREFIX: &str = "/_durafetch-0123456789abcdef";

/// The example's own answer to a path it has no route for: proof the request reached user code.
const USER_CODE: &str = "expected /<kv|sql>/<object name>/<operation>";

/// Adds `setting` to `[vars.DURAFETCH]` of the example's wrangler.toml.
fn with_setting(setting: String) -> impl Fn(String) -> String {
    move |toml: String| toml.replace("[vars.DURAFETCH]\n", &format!("[vars.DURAFETCH]\n{setting}\n"))
}

/// Pulls from `url` into a new file and checks it holds the object written before.
fn pulls_from(url: &str, what: &str) {
    pulls_with(puller_at, url, what);
}

/// [`pulls_from`] with the command `puller` makes.
fn pulls_with(puller: impl Fn(&str, &Path, &str, &[&str]) -> Command, url: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pulled.sqlite");
    let out = finish_within(spawn_piped(puller(url, &db, TOKEN, &[])), PULL_LIMIT, what);
    assert_eq!(out.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read_db(&db), pulled(&[("CounterKv", "a", &[("k", "1")])]), "{what}");
    let worker_name: String =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT DISTINCT worker_name FROM durable_objects", [], |r| r.get(0)).unwrap();
    assert_eq!(worker_name, WORKER, "{what}: the worker's name comes from the worker, whatever the URL");
}

#[test]
fn the_api_answers_where_its_setting_says_and_nowhere_else() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/a/put?key=k", "1");
    let port = worker.port;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    // The hyphen label: the underscore label is now the user's, as is a longer name.
    worker.restart_with_config(Some(&with_setting(r#"api = "hyphen_label""#.into())));
    pulls_from(&format!("ws://durafetch-{WORKER}.localhost:{port}"), "hyphen label");
    for host in [format!("durafetch_{WORKER}.localhost"), format!("durafetch-{WORKER}x.localhost")] {
        let (status, body) = raw_get(port, &host, "/index", &auth);
        assert!(body.contains(USER_CODE), "{host}: {status} {body}");
    }
    assert_eq!(raw_get(port, &format!("durafetch-{WORKER}.localhost"), "/index", &[]).0, 401);

    // A path prefix, on any host: the labels are the user's, as is a path that only starts with
    // the prefix's characters; the user's own routes still work.
    worker.restart_with_config(Some(&with_setting(format!("api = \"path_prefix\"\npath_prefix = \"{PREFIX}\""))));
    pulls_from(&format!("ws://localhost:{port}{PREFIX}"), "path prefix");
    pulls_from(&format!("ws://my-app.localhost:{port}{PREFIX}/"), "path prefix with a trailing slash");
    for (host, path) in [
        ("localhost".to_owned(), format!("{PREFIX}x/index")),
        ("localhost".to_owned(), "/_durafetch-0123456789abcde/index".to_owned()),
        (format!("durafetch_{WORKER}.localhost"), "/index".to_owned()),
    ] {
        let (status, body) = raw_get(port, &host, &path, &auth);
        assert!(body.contains(USER_CODE), "{host}{path}: {status} {body}");
    }
    assert_eq!(raw_get(port, "localhost", &format!("{PREFIX}/index"), &[]).0, 401, "the prefix is no secret: the token is");
    assert_eq!(raw_get(port, "localhost", &format!("{PREFIX}/index"), &[("authorization", "Bearer wrong")]).0, 401);
    assert_eq!(raw_get(port, "localhost", &format!("{PREFIX}/nothing"), &auth).0, 400);
    assert_eq!(worker.get_text("kv/a/get"), r#"{"k":1}"#, "the user's routes are untouched");

    // A prefix too short to be safe is refused, with the rule, on the API's labels, and under
    // the prefix itself on any host (a workers.dev host has no label of durafetch's).
    worker.restart_with_config(Some(&with_setting("api = \"path_prefix\"\npath_prefix = \"/short\"".into())));
    for (host, path) in [(format!("durafetch_{WORKER}.localhost"), "/index"), ("localhost".to_owned(), "/short/index")] {
        let (status, body) = raw_get(port, &host, path, &auth);
        assert_eq!(status, 500, "{host}{path}: {body}");
        assert!(body.contains("path_prefix \\\"/short\\\" is too short"), "{body}");
    }
    assert_eq!(worker.get_text("kv/a/get"), r#"{"k":1}"#, "the user's routes still work");
    // A user's reproduction: a prefix like the docs' but short, reached as a pull would.
    worker.restart_with_config(Some(&with_setting("api = \"path_prefix\"\npath_prefix = \"/_durafetch-abcd\"".into())));
    let (status, body) = raw_get(port, "localhost", "/_durafetch-abcd/index", &auth);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("path_prefix \\\"/_durafetch-abcd\\\" is too short"), "{body}");
    for (path, auth) in [("/shorter/index", &auth[..]), ("/_durafetch-abcd/index", &[]), ("/_durafetch-abcd/login", &auth)] {
        let (status, body) = raw_get(port, "localhost", path, auth);
        assert!(body.contains(USER_CODE), "{path} is the app's: {status} {body}");
    }
    assert!(worker.logged("is too short or not one path segment"), "the log says why: {}", worker.logs());
}

/// With deploy.md's production `routes` in wrangler.toml, `wrangler dev` addresses every request
/// to the first route's host unless told not to: run as the README says, with
/// `--infer-origin-from-routes=false`, the API answers on its local label and the app on its
/// routes.
#[test]
fn with_production_routes_the_local_label_answers_as_the_readme_says() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/a/put?key=k", "1");
    let routes = |toml: String| {
        format!(
            "routes = [\n  {{ pattern = \"app.example.com/*\", zone_name = \"example.com\" }},\n  \
             {{ pattern = \"durafetch_{WORKER}.example.com/*\", zone_name = \"example.com\" }},\n]\n{toml}"
        )
    };
    worker.restart_with_dev_flags(Some(&routes), &["--infer-origin-from-routes=false"]);
    pulls_from(&format!("ws://durafetch_{WORKER}.localhost:{}", worker.port), "the underscore label, routes in the config");
    assert_eq!(worker.get_text("kv/a/get"), r#"{"k":1}"#, "the app's routes");
}

/// wss:// through a TLS endpoint whose certificate, from a CA of the test's own, covers
/// `*.zone.localhost` (an underscore label and a hyphen label under the wildcard, as a zone's
/// Universal SSL certificate does; a wildcard straight under `localhost` is refused like one
/// under a top-level domain) and `app.zone.localhost` (the path prefix). Trusted through SSL_CERT_FILE, each mode pulls; untrusted, or for another name,
/// the pull ends at once with one line saying why, and exit status 1.
#[test]
fn over_tls_each_address_pulls_and_a_refused_certificate_says_why() {
    let mut worker = LocalWorker::start(Some(TOKEN));
    worker.post("kv/a/put?key=k", "1");
    let front = TlsFront::start(worker.port, &["*.zone.localhost", "app.zone.localhost"]);
    let trusting = |url: &str, db: &Path, token: &str, flags: &[&str]| {
        let mut cmd = puller_at(url, db, token, flags);
        cmd.env("SSL_CERT_FILE", &front.ca_file);
        cmd
    };
    let underscore = format!("wss://durafetch_{WORKER}.zone.localhost:{}", front.port);
    pulls_with(trusting, &underscore, "wss, underscore label");

    let dir = tempfile::tempdir().unwrap();
    let refused = |url: &str, cmd: Command, why: &str| {
        let out = finish_within(spawn_piped(cmd), PULL_LIMIT, "a refused certificate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains(why), "{url}: {stderr}");
        assert!(!stderr.contains("retrying"), "a refused certificate is not retried: {stderr}");
    };
    refused(
        &underscore,
        puller_at(&underscore, &dir.path().join("untrusted.sqlite"), TOKEN, &[]),
        "signed by an authority this machine does not trust",
    );
    let other = TlsFront::start(worker.port, &["other.example"]);
    let mismatched = format!("wss://durafetch_{WORKER}.zone.localhost:{}", other.port);
    let mut cmd = puller_at(&mismatched, &dir.path().join("mismatched.sqlite"), TOKEN, &[]);
    cmd.env("SSL_CERT_FILE", &other.ca_file);
    refused(&mismatched, cmd, &format!("not valid for the name durafetch_{WORKER}.zone.localhost"));

    worker.restart_with_config(Some(&with_setting(r#"api = "hyphen_label""#.into())));
    pulls_with(trusting, &format!("wss://durafetch-{WORKER}.zone.localhost:{}", front.port), "wss, hyphen label");
    worker.restart_with_config(Some(&with_setting(format!("api = \"path_prefix\"\npath_prefix = \"{PREFIX}\""))));
    pulls_with(trusting, &format!("wss://app.zone.localhost:{}{PREFIX}", front.port), "wss, path prefix");
}
