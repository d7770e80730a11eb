//! Settings: durafetch's JSON config file, overridden by flags and environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use durafetch_sdk::core::restore_protocol::ImportMode;
use durafetch_sdk::core::route::is_local_host;
use serde::Deserialize;
use url::Url;

use crate::filter::{Filter, FilterError, FilterSpec};
use crate::restore_source::Moment;
use crate::sink::{Database, Part};

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

/// The flags that override the config file, defined once: `durafetch-pull`'s command line
/// flattens them in.
#[derive(Debug, Default, clap::Args)]
pub struct Overrides {
    /// The SQLite file to write, or a PostgreSQL database's URL (overrides db_file).
    /// Example: --db backup.sqlite, or --db postgres://puller@db.example.com/durafetch
    #[arg(long, value_name = "FILE|URL")]
    pub db: Option<PathBuf>,
    /// Take part I of N of the objects (by a hash of each object's id), beside N - 1 other
    /// pullers writing the same PostgreSQL database. Example: --shard 2/4
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Part>,
    /// A server to pull from (repeatable; replaces the config's servers). Example: --server wss://durafetch_my-app.example.com
    #[arg(long = "server", value_name = "URL")]
    pub servers: Vec<String>,
    /// How many objects to download at once (overrides concurrent_downloads). Example: --concurrency 16
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// The environment variable that holds the token for servers without one. Example: --token-env PROD_DURAFETCH_AUTH
    #[arg(long, value_name = "NAME", default_value = "DURAFETCH_AUTH")]
    pub token_env: String,
    #[command(flatten)]
    pub filter: FilterSpec,
    /// Also append every change to the kv_history table (SQL rows: sql_history), deletions as rows with deleted = 1.
    /// Example: --history, then SELECT * FROM kv_history WHERE key = 'k' ORDER BY history_id
    #[arg(long)]
    pub history: bool,
    /// Also contact every object the file knows, not only those the registry lists as changed.
    /// `--verify` (or `--verify=changes`) pulls what each holds since the file's cursor: one
    /// session per object; catches a write whose registry report was lost in a crash.
    /// `--verify=full` downloads each whole and repairs rows that disagree with it (missing,
    /// different or extra although the cursor says the file is current): costs a full download.
    /// Example: a daily --verify from cron, a monthly --verify=full
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "changes", conflicts_with = "watch")]
    pub verify: Option<Verify>,
    /// Log as newline-delimited JSON, and print the summary as JSON (as the config's logging.ndjson).
    #[arg(long = "json")]
    pub ndjson: bool,
}

/// Which objects a pull contacts beyond those the registry lists as changed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Verify {
    /// Only the objects the registry lists as changed.
    #[default]
    #[value(skip)]
    Off,
    /// Every object the file knows, for what changed since the file's cursor: finds a write
    /// whose registry report was lost in a crash. One session per object.
    Changes,
    /// Every object the file knows, downloaded whole and compared with the file's rows: finds
    /// and repairs rows missing, different or extra although the cursor says the file is current.
    /// Costs a full download.
    Full,
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

#[derive(Debug)]
pub struct Settings {
    pub db: Database,
    /// The part of the objects this puller takes.
    pub part: Part,
    pub servers: Vec<Server>,
    pub concurrency: usize,
    pub poll_every: Duration,
    pub filter: Filter,
    /// Keep every change, deletions included, in `kv_history` and `sql_history`.
    pub history: bool,
    /// Contact every known object, not only those the registry lists as changed.
    pub verify: Verify,
    /// Log as newline-delimited JSON (the config's `logging.ndjson`; `--json` sets it too).
    pub ndjson: bool,
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
    #[error("the undo file {0} exists already: name a new one with --undo")]
    UndoExists(PathBuf),
    #[error("concurrency must be at least 1")]
    Concurrency,
    #[error("{0:?} is not an RFC 3339 time; give one such as 2026-11-29T17:00:00Z or 2026-11-29T18:00:00+01:00")]
    BadTime(String),
    #[error("the backup file {0} does not exist; pass the file a pull wrote with --db")]
    NoBackup(PathBuf),
    #[error("--shard splits the objects between pullers that write one PostgreSQL database; give --db a postgres:// URL")]
    ShardOfFile,
    #[error("a restore reads a SQLite file a pull wrote; restoring from PostgreSQL is not supported")]
    RestoreFromPostgres,
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// What the flags asked of a restore ([`RestoreFlags`]).
#[derive(Debug)]
pub struct RestoreSettings {
    pub db: PathBuf,
    pub target: Server,
    /// Where the objects' state before the restore is pulled first, and what reads it.
    pub undo: Option<Undo>,
    /// The flags of the command that puts it back (the filters, the target and its token's variable).
    pub undo_args: Vec<String>,
    pub mode: ImportMode,
    pub dry_run: bool,
    pub moment: Moment,
    pub filter: Filter,
    pub concurrency: usize,
    pub ndjson: bool,
}

/// A copy of the objects a restore writes into, pulled from the target just before.
#[derive(Debug, Clone)]
pub struct Undo {
    pub file: PathBuf,
    /// The target, with a reading token.
    pub reader: Server,
}

/// `durafetch-pull restore`'s flags.
#[derive(Debug, clap::Args)]
pub struct RestoreFlags {
    /// The SQLite file a pull wrote, to restore from. Example: --db backup.sqlite
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// The worker to write into: its API's URL, as a pull's --server. Example: --to wss://durafetch_my-app-staging.example.com
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The environment variable that holds the target's restore token (its secret DURAFETCH_RESTORE_AUTH).
    #[arg(long, value_name = "NAME", default_value = "DURAFETCH_RESTORE_AUTH")]
    pub token_env: String,
    /// What to do with an object that holds data: `empty` refuses it (exit 3), `replace` makes it
    /// equal to the backup (deleting what the backup lacks), `merge` writes over it and deletes nothing.
    #[arg(long, value_enum, default_value = "empty")]
    pub mode: RestoreMode,
    /// Print, per object, what would be written and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where a replace or merge first pulls the objects it writes into, as they are, so that a
    /// restore from it undoes this one. Default: a new file beside --db, named with the time.
    #[arg(long, value_name = "FILE", conflicts_with = "no_undo")]
    pub undo: Option<PathBuf>,
    /// Keep no copy to undo with (a replace or merge keeps one by default).
    #[arg(long)]
    pub no_undo: bool,
    /// The environment variable that holds a token of the target's DURAFETCH_AUTH, with which
    /// the undo copy is pulled.
    #[arg(long, value_name = "NAME", default_value = "DURAFETCH_AUTH")]
    pub read_token_env: String,
    /// Restore each key and row as the file's history had it at this moment (RFC 3339); needs a
    /// file every pull wrote with --history. Example: --at 2026-11-29T17:00:00Z
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[command(flatten)]
    pub filter: FilterSpec,
    /// How many objects to restore at once.
    #[arg(long, value_name = "N", default_value = "4")]
    pub concurrency: usize,
    /// Print one JSON line per object, and the summary as JSON.
    #[arg(long = "json")]
    pub ndjson: bool,
}

/// `--mode`, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestoreMode {
    Empty,
    Replace,
    Merge,
}

/// A file beside `db` that does not exist yet, named with the time:
/// `backup.undo-20261205T131500Z.sqlite`, or `...-2.sqlite` and on if restores follow each other
/// within a second.
fn new_undo_file(db: &Path) -> PathBuf {
    let stem = db.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let now = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp =
        format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", now.year(), u8::from(now.month()), now.day(), now.hour(), now.minute(), now.second());
    (1..)
        .map(|n| db.with_file_name(if n == 1 { format!("{stem}.undo-{stamp}.sqlite") } else { format!("{stem}.undo-{stamp}-{n}.sqlite") }))
        .find(|file| !file.exists())
        .unwrap_or_else(|| db.with_file_name(format!("{stem}.undo.sqlite")))
}

impl RestoreSettings {
    /// Settings from the flags and the environment.
    pub fn resolve(flags: RestoreFlags, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        if matches!(Database::parse(flags.db.clone()), Database::Postgres(_)) {
            return Err(ConfigError::RestoreFromPostgres);
        }
        if !flags.db.exists() {
            return Err(ConfigError::NoBackup(flags.db));
        }
        let entry = || ServerEntry { ws_url: flags.to.clone(), auth_token: None, auth_token_env: None };
        let target = server(entry(), &flags.token_env, &env)?;
        let moment = match &flags.at {
            None => Moment::Latest,
            Some(text) => {
                let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ConfigError::BadTime(text.clone()))?;
                Moment::At((at.unix_timestamp_nanos() / 1_000_000) as i64)
            }
        };
        if flags.concurrency == 0 {
            return Err(ConfigError::Concurrency);
        }
        let mode = match flags.mode {
            RestoreMode::Empty => ImportMode::Empty,
            RestoreMode::Replace => ImportMode::Replace,
            RestoreMode::Merge => ImportMode::Merge,
        };
        // An empty object has nothing to put back; a dry run writes nothing.
        let undo = if mode == ImportMode::Empty || flags.dry_run || flags.no_undo {
            None
        } else {
            let reader = server(entry(), &flags.read_token_env, &env)
                .map_err(|_| ConfigError::UndoNeedsReader { var: flags.read_token_env.clone() })?;
            let file = match &flags.undo {
                Some(file) if file.exists() => return Err(ConfigError::UndoExists(file.clone())),
                Some(file) => file.clone(),
                None => new_undo_file(&flags.db),
            };
            Some(Undo { file, reader })
        };
        let mut undo_args = vec![format!("--to={}", flags.to)];
        if flags.token_env != "DURAFETCH_RESTORE_AUTH" {
            undo_args.push(format!("--token-env={}", flags.token_env));
        }
        if flags.read_token_env != "DURAFETCH_AUTH" {
            undo_args.push(format!("--read-token-env={}", flags.read_token_env));
        }
        undo_args.push("--mode=replace".to_owned());
        undo_args.extend(flags.filter.to_args());
        Ok(RestoreSettings {
            db: flags.db,
            target,
            undo,
            undo_args,
            mode,
            dry_run: flags.dry_run,
            moment,
            filter: Filter::new(flags.filter)?,
            concurrency: flags.concurrency,
            ndjson: flags.ndjson,
        })
    }
}

impl Settings {
    pub fn load(config_file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let (file, base) = match config_file {
            Some(path) => (read_file(path)?, path.parent().map(Path::to_path_buf).unwrap_or_default()),
            None => (ConfigFile::default(), PathBuf::new()),
        };
        Self::resolve(file, &base, overrides, |var| std::env::var(var).ok())
    }

    /// Settings from a parsed config file (`base`: its directory), the flags and the environment.
    pub fn resolve(file: ConfigFile, base: &Path, overrides: Overrides, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // A relative db_file is relative to the config file; an absolute one, a --db and a URL
        // are used as they are.
        let db = match (overrides.db, file.db_file) {
            (Some(flag), _) => Database::parse(flag),
            (None, Some(path)) => match Database::parse(path) {
                Database::File(path) if path.is_relative() => Database::File(base.join(path)),
                db => db,
            },
            (None, None) => return Err(ConfigError::NoDb),
        };
        let part = overrides.shard.unwrap_or(Part::WHOLE);
        if part != Part::WHOLE && matches!(db, Database::File(_)) {
            return Err(ConfigError::ShardOfFile);
        }
        let entries: Vec<ServerEntry> = if overrides.servers.is_empty() {
            file.servers
        } else {
            overrides.servers.into_iter().map(|ws_url| ServerEntry { ws_url, auth_token: None, auth_token_env: None }).collect()
        };
        if entries.is_empty() {
            return Err(ConfigError::NoServer);
        }
        let servers = entries.into_iter().map(|entry| server(entry, &overrides.token_env, &env)).collect::<Result<Vec<_>, _>>()?;
        let concurrency = overrides.concurrency.or(file.concurrent_downloads).unwrap_or(8);
        if concurrency == 0 {
            return Err(ConfigError::Concurrency);
        }
        let poll_every = Duration::from_millis(file.poll.map_or(1000, |p| p.every_ms));
        let filter = Filter::new(overrides.filter)?;
        let ndjson = overrides.ndjson || file.logging.is_some_and(|l| l.ndjson);
        Ok(Settings {
            db,
            part,
            servers,
            concurrency,
            poll_every,
            filter,
            history: overrides.history,
            verify: overrides.verify.unwrap_or_default(),
            ndjson,
        })
    }
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
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

fn server(entry: ServerEntry, default_var: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Server, ConfigError> {
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
    use super::*;

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
