//! A restore's settings, from `durafetch-pull restore`'s flags and the environment.

use std::path::{Path, PathBuf};

use durafetch_sdk::core::restore_protocol::ImportMode;

use crate::restore::source::Moment;
use crate::settings::file::{server, ConfigError, Server, ServerEntry};
use crate::settings::filter::{Filter, FilterSpec};
use crate::sink::database::Database;

/// What the flags asked of a restore ([`RestoreFlags`]).
#[derive(Debug)]
pub struct RestoreSettings {
    /// The backup: the SQLite file or the PostgreSQL database a pull wrote.
    pub db: Database,
    pub target: Server,
    /// Where the objects' state before the restore is pulled first, and what reads it.
    pub undo: Option<Undo>,
    /// A dry run of a replace or merge: the target, with a reading token, to compare the
    /// backup with the objects as they are.
    pub dry_run_reader: Option<Server>,
    /// The flags of the command that puts it back (the filters, the target and its token's variable).
    pub undo_args: Vec<String>,
    pub mode: ImportMode,
    pub dry_run: bool,
    pub moment: Moment,
    pub filter: Filter,
    /// Only the objects a pull read from this worker.
    pub worker: Option<String>,
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
    /// The database a pull wrote, to restore from: its SQLite file or a PostgreSQL URL. Example: --db backup.sqlite
    #[arg(long, value_name = "FILE|URL")]
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
    /// Print, per object, what would be written and deleted, and what of it the object lacks,
    /// holds otherwise or would lose (read with the reading token); change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where a replace or merge first pulls the objects it writes into, as they are, so that a
    /// restore from it undoes this one. Default: a new file beside --db (in the working directory
    /// when --db is a PostgreSQL URL), named with the time.
    #[arg(long, value_name = "FILE", conflicts_with = "no_undo")]
    pub undo: Option<PathBuf>,
    /// Keep no copy to undo with (a replace or merge keeps one by default).
    #[arg(long)]
    pub no_undo: bool,
    /// The environment variable that holds a token of the target's DURAFETCH_AUTH, with which
    /// the undo copy is pulled (and a dry run reads the objects as they are).
    #[arg(long, value_name = "NAME", default_value = "DURAFETCH_AUTH")]
    pub read_token_env: String,
    /// Restore each key and row as the file's history had it at this moment (RFC 3339); needs a
    /// file every pull wrote with --history. Example: --at 2026-11-29T17:00:00Z
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Restore only the objects pulled from this worker (the file's `worker_name`): needed when
    /// the backup holds objects of one name from several workers. Example: --worker my-app
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,
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
        let db = Database::parse(flags.db.clone());
        if matches!(db, Database::File(_)) && !flags.db.exists() {
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
                // Named whole, so that the command printed to undo works from anywhere; a
                // database has no folder, so its undo copy goes into the working directory.
                None => {
                    let beside = match &db {
                        Database::File(file) => file.as_path(),
                        Database::Postgres(_) => Path::new("durafetch.sqlite"),
                    };
                    new_undo_file(&std::path::absolute(beside).unwrap_or_else(|_| beside.to_path_buf()))
                }
            };
            Some(Undo { file, reader })
        };
        // A dry run reads the objects as they are, to say what would change; into an empty
        // object everything is added.
        let dry_run_reader = if flags.dry_run && mode != ImportMode::Empty {
            Some(
                server(entry(), &flags.read_token_env, &env)
                    .map_err(|_| ConfigError::DryRunNeedsReader { var: flags.read_token_env.clone() })?,
            )
        } else {
            None
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
            db,
            target,
            undo,
            dry_run_reader,
            undo_args,
            mode,
            dry_run: flags.dry_run,
            moment,
            filter: Filter::new(flags.filter)?,
            worker: flags.worker,
            concurrency: flags.concurrency,
            ndjson: flags.ndjson,
        })
    }
}
