//! A pull's settings: the config file overridden by flags and environment variables.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::file::{read_file, server, ConfigError, ConfigFile, Server, ServerEntry};
use crate::settings::filter::{Filter, FilterSpec};
use crate::sink::database::{Database, Part};

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
