//! durafetch's JSON config file, the servers it names with their tokens, and what can be wrong
//! with any of the settings.

use std::path::{Path, PathBuf};

use durafetch_sdk::core::route::is_local_host;
use serde::Deserialize;
use url::Url;

use crate::settings::filter::FilterError;

/// The config file, in durafetch's format: every field durafetch's own config has is accepted.
/// Unknown keys are an error, with the nearest known key as a hint: a misspelt key would
/// otherwise be ignored without a word.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub db_file: Option<PathBuf>,
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
    pub concurrent_downloads: Option<usize>,
    pub poll: Option<Poll>,
    pub logging: Option<Logging>,
}

/// durafetch's `logging`: `ndjson` logs as newline-delimited JSON, as `--json` does. durafetch
/// also reads a `dir`, where it writes nothing; it is accepted and has no effect here either.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub ndjson: bool,
    /// Accepted whatever it holds, and read by nothing.
    pub dir: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    pub ws_url: String,
    /// The token itself (durafetch's field). Prefer `auth_token_env`, which keeps it out of files.
    pub auth_token: Option<String>,
    /// The name of an environment variable holding the token.
    pub auth_token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    pub every_ms: u64,
}
/// A bearer token. Never printed: `Debug` shows only that it is there.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    /// The export API as configured: `wss://durafetch_<worker>.<zone>`, `wss://durafetch-<worker>.<zone>`,
    /// or any host with the worker's path prefix (`wss://my-app.my-account.workers.dev/<prefix>`).
    pub url: Url,
    pub token: Token,
}
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}; pass an existing file with --config-file")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid: {message}; expected {{\"db_file\": \"..\", \"servers\": [{{\"ws_url\": \"wss://durafetch_<worker>.<zone> (or durafetch-<worker>.<zone>, or <host>/<path prefix>)\", \"auth_token_env\": \"DURAFETCH_AUTH\"}}]}}")]
    Parse { path: PathBuf, message: String },
    #[error("no database file: set db_file in the config file or pass --db")]
    NoDb,
    #[error("no server: add servers[].ws_url to the config file or pass --server")]
    NoServer,
    #[error("{url:?} is not a valid ws_url: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url} sends the token unencrypted to a non-local host; use wss://")]
    Insecure { url: String },
    #[error("no token for {url}: set the environment variable {var} (or auth_token_env in the config file)")]
    NoToken { url: String, var: String },
    #[error("a replace or merge first pulls the objects it writes into, to undo it with: set {var} to a token of the target's DURAFETCH_AUTH (or name another variable with --read-token-env), or pass --no-undo")]
    UndoNeedsReader { var: String },
    #[error("a dry run of a replace or merge reads the target's objects to say what would change: set {var} to a token of the target's DURAFETCH_AUTH (or name another variable with --read-token-env)")]
    DryRunNeedsReader { var: String },
    #[error("the undo file {0} exists already: name a new one with --undo")]
    UndoExists(PathBuf),
    #[error("concurrency must be at least 1")]
    Concurrency,
    #[error("{0:?} is not an RFC 3339 time; give one such as 2026-11-29T17:00:00Z or 2026-11-29T18:00:00+01:00")]
    BadTime(String),
    #[error("the backup file {0} does not exist; pass the file a pull wrote, or a postgres:// URL, with --db")]
    NoBackup(PathBuf),
    #[error("--shard splits the objects between pullers that write one PostgreSQL database; give --db a postgres:// URL")]
    ShardOfFile,
    #[error(transparent)]
    Filter(#[from] FilterError),
}

pub(crate) fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    ConfigFile::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
}

impl ConfigFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| with_hint(e.to_string()))
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`", with the nearest expected field as a
/// hint when one is close enough to be what was meant.
fn with_hint(message: String) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else { return message };
    let Some((unknown, expected)) = rest.split_once('`') else { return message };
    let nearest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (strsim::damerau_levenshtein(unknown, known), known))
        .min()
        .filter(|&(distance, known)| distance <= 2.max(known.len() / 3));
    match nearest {
        Some((_, known)) => format!("{message} (did you mean `{known}`?)"),
        None => message,
    }
}

pub(crate) fn server(entry: ServerEntry, default_var: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Server, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl { url: entry.ws_url.clone(), reason: reason.into() };
    let url = Url::parse(&entry.ws_url).map_err(|e| bad(&e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host"))?.to_ascii_lowercase();
    match url.scheme() {
        "wss" => {}
        "ws" if is_local_host(&host) => {}
        "ws" => return Err(ConfigError::Insecure { url: entry.ws_url }),
        _ => return Err(bad("expected ws:// or wss://")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        // Not echoed whole: a query is where a token would be put by mistake.
        let mut shown = url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        return Err(ConfigError::BadUrl {
            url: format!("{shown}?.."),
            reason: "a query or fragment has no meaning here; give the host, and the path prefix if the worker uses one".into(),
        });
    }
    let var = entry.auth_token_env.as_deref().unwrap_or(default_var);
    let token = entry
        .auth_token
        .or_else(|| env(var))
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ConfigError::NoToken { url: entry.ws_url.clone(), var: var.to_owned() })?;
    Ok(Server { url, token: Token(token.trim().to_owned()) })
}

/// A local server with an inline token, for the tests of the modules that connect.
#[cfg(test)]
pub(crate) fn test_server(url: &str) -> Server {
    server(ServerEntry { ws_url: url.into(), auth_token: Some("t".into()), auth_token_env: None }, "", &|_| None).unwrap()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::pull::{Overrides, Settings};
    use crate::sink::database::Database;

    fn entry(url: &str) -> ServerEntry {
        ServerEntry { ws_url: url.into(), auth_token: None, auth_token_env: None }
    }

    fn env(var: &str) -> Option<String> {
        (var == "DURAFETCH_AUTH").then(|| "secret-token".to_owned())
    }

    #[test]
    fn local_urls_may_be_plain() {
        let s = server(entry("ws://durafetch_my-app.localhost:8787"), "DURAFETCH_AUTH", &env).unwrap();
        assert_eq!(s.token.expose(), "secret-token");
        assert!(!format!("{s:?}").contains("secret-token"));
    }

    #[test]
    fn remote_urls_must_be_encrypted() {
        assert!(matches!(server(entry("ws://durafetch_app.example.com"), "DURAFETCH_AUTH", &env), Err(ConfigError::Insecure { .. })));
        assert!(server(entry("wss://durafetch_app.example.com"), "DURAFETCH_AUTH", &env).is_ok());
        assert!(matches!(server(entry("https://durafetch_app.example.com"), "DURAFETCH_AUTH", &env), Err(ConfigError::BadUrl { .. })));
    }

    #[test]
    fn any_of_the_three_addresses_is_a_server() {
        for url in
            ["wss://durafetch_app.example.com", "wss://durafetch-app.example.com", "wss://app.acct.workers.dev/_durafetch-0123456789abcdef"]
        {
            assert!(server(entry(url), "DURAFETCH_AUTH", &env).is_ok(), "{url}");
        }
        for url in ["wss://app.example.com/?token=x", "wss://app.example.com/#x", "wss://"] {
            let error = server(entry(url), "DURAFETCH_AUTH", &env).unwrap_err();
            assert!(matches!(error, ConfigError::BadUrl { .. }), "{url}");
            assert!(!error.to_string().contains("token=x"), "{error}");
        }
    }

    #[test]
    fn token_comes_from_the_file_or_the_named_variable() {
        let mut e = entry("wss://durafetch_a.example.com");
        e.auth_token_env = Some("OTHER".into());
        let err = server(e, "DURAFETCH_AUTH", &env).unwrap_err().to_string();
        assert!(err.contains("OTHER"), "{err}");
        let mut e = entry("wss://durafetch_a.example.com");
        e.auth_token = Some("inline".into());
        assert_eq!(server(e, "DURAFETCH_AUTH", &env).unwrap().token.expose(), "inline");
    }

    #[test]
    fn config_file_rejects_unknown_keys_and_resolves_db_paths() {
        let dir = std::env::temp_dir().join(format!("durafetch-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, r#"{"db_file": "x.sqlite", "servers": [{"ws_url": "ws://durafetch_a.localhost:1", "auth_token": "t"}], "poll": {"every_ms": 50}}"#).unwrap();
        let s = Settings::load(Some(&path), Overrides::default()).unwrap();
        assert_eq!(s.db, Database::File(dir.join("x.sqlite")));
        assert_eq!(s.poll_every, Duration::from_millis(50));
        std::fs::write(
            &path,
            r#"{"db_file": "/abs/x.sqlite", "servers": [{"ws_url": "ws://durafetch_a.localhost:1", "auth_token": "t"}]}"#,
        )
        .unwrap();
        assert_eq!(Settings::load(Some(&path), Overrides::default()).unwrap().db, Database::File("/abs/x.sqlite".into()));
        std::fs::write(&path, r#"{"db_file": "x", "servers": [], "typo": 1}"#).unwrap();
        assert!(matches!(Settings::load(Some(&path), Overrides::default()), Err(ConfigError::Parse { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// durafetch's own example config, as its README gives it, is accepted whole, and what maps
    /// onto the puller's settings takes effect.
    #[test]
    fn durafetchs_own_config_is_accepted() {
        let text = r#"{
            "db_file": "./db.sqlite",
            "servers": [{"ws_url": "wss://durafetch_worker-1.your-domain.com", "auth_token": "secret_http_auth_bearer_token_replace_this_with_more_than_40_chars"}],
            "poll": {"every_ms": 1000},
            "concurrent_downloads": 50,
            "logging": {"ndjson": true, "dir": "/tmp/durafetch-client-log"}
        }"#;
        let file = ConfigFile::parse(text).unwrap();
        let settings = Settings::resolve(file, Path::new("/cfg"), Overrides::default(), env).unwrap();
        assert_eq!(settings.concurrency, 50);
        assert!(settings.ndjson);
        assert_eq!(settings.db, Database::File("/cfg/./db.sqlite".into()));
        let quiet = ConfigFile::parse(r#"{"logging": {"ndjson": false}}"#).unwrap();
        assert!(
            !Settings::resolve(
                quiet,
                Path::new("/"),
                Overrides {
                    db: Some("x".into()),
                    servers: vec!["ws://durafetch_a.localhost:1".into()],
                    token_env: "DURAFETCH_AUTH".into(),
                    ..Overrides::default()
                },
                env
            )
            .unwrap()
            .ndjson
        );
    }

    /// A misspelt key is refused with the key it is nearest to; a key like none is refused plainly.
    #[test]
    fn typos_are_refused_with_a_hint() {
        for (text, hint) in [
            (r#"{"concurent_downloads": 4}"#, Some("concurrent_downloads")),
            (r#"{"logging": {"nd_json": true}}"#, Some("ndjson")),
            (r#"{"servers": [{"ws_url": "wss://durafetch_a.b", "auth_token_evn": "X"}]}"#, Some("auth_token_env")),
            (r#"{"poll": {"everyms": 5}}"#, Some("every_ms")),
            (r#"{"colour": "blue"}"#, None),
        ] {
            let error = ConfigFile::parse(text).unwrap_err();
            assert!(error.starts_with("unknown field"), "{error}");
            match hint {
                Some(hint) => assert!(error.contains(&format!("(did you mean `{hint}`?)")), "{text}: {error}"),
                None => assert!(!error.contains("did you mean"), "{text}: {error}"),
            }
        }
    }
}
