//! durafetch-pull: downloads what changed in your Durable Objects into one SQLite file.
//! This binary parses flags and sets up logging; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use durafetch_pull::pull::{self, progress};
use durafetch_pull::restore;
use durafetch_pull::restore::report::{self as restore_report, ObjectReport, Outcome};
use durafetch_pull::settings::{pull as pull_settings, restore as restore_settings};
use durafetch_pull::sink::database::{Database, Part, MAX_PARTS};
use durafetch_pull::sink::postgres::database::PostgresSink;

/// Downloads the state of Durable Objects instrumented with durafetch-sdk into a SQLite file.
/// Only objects that changed since the last run are downloaded, and only their changed keys.
///
/// Example: DURAFETCH_AUTH=... durafetch-pull --config-file config.json
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, next_line_help = false, args_conflicts_with_subcommands = true)]
struct Flags {
    #[command(subcommand)]
    command: Option<Command>,
    /// durafetch's JSON config: {"db_file": "..", "servers": [{"ws_url": "wss://durafetch_<worker>.<zone>"}]}.
    /// A relative db_file is relative to the config file.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    overrides: pull_settings::Overrides,
    /// Pull once and exit (the default).
    #[arg(long, conflicts_with = "watch")]
    once: bool,
    /// Keep running until interrupted: stay subscribed to the registry, which pushes each change
    /// as it is recorded; objects that failed are tried again every poll.every_ms (default 1000).
    #[arg(long)]
    watch: bool,
    /// Print only errors.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes the objects of a file a pull wrote back into the objects of a worker (the same, another,
    /// or local `wrangler dev`), as the file holds them or as they were at a moment (--at).
    ///
    /// Example: DURAFETCH_RESTORE_AUTH=... durafetch-pull restore --db backup.sqlite --to wss://durafetch_my-app.example.com --mode replace
    Restore {
        #[command(flatten)]
        flags: Box<restore_settings::RestoreFlags>,
        /// Print only errors.
        #[arg(long)]
        quiet: bool,
    },
    /// Changes how many parts the pullers of a PostgreSQL database split its objects into
    /// (--shard I/N), once every puller of that database has stopped; pullers of another split
    /// are refused from then on.
    ///
    /// Example: durafetch-pull reshard --db postgres://puller@db.example.com/durafetch --parts 4
    Reshard {
        /// The PostgreSQL database, as the pullers' --db gives it.
        #[arg(long)]
        db: String,
        /// The number of parts: the pullers then run with --shard 1/N to --shard N/N.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PARTS)))]
        parts: u32,
    },
}

/// Exit codes: 0 all pulled (restored), 1 some objects or servers failed, 2 a configuration error,
/// a refused token or a file another puller is writing, 3 a restore with --mode empty found
/// objects that hold data (and wrote nothing into them).
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;
const EXIT_NOT_EMPTY: u8 = 3;

fn main() -> ExitCode {
    let flags = Flags::parse();
    match flags.command {
        Some(Command::Restore { flags, quiet }) => return run_restore(*flags, quiet),
        Some(Command::Reshard { db, parts }) => return run_reshard(&db, parts),
        None => {}
    }
    let settings = match pull_settings::Settings::load(flags.config_file.as_deref(), flags.overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(flags.quiet, settings.ndjson);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let report = |summary: &progress::Summary| {
        let summary = progress::Summary { peak_rss_kib: progress::peak_rss_kib(), ..summary.clone() };
        if !flags.quiet {
            println!("{}", if settings.ndjson { summary.json(&settings.db) } else { summary.line(&settings.db) });
        }
    };
    if flags.watch {
        return match runtime.block_on(pull::watch(&settings, flags.quiet, report)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        };
    }
    match runtime.block_on(pull::once(&settings, flags.quiet)) {
        Ok(summary) => {
            report(&summary);
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("durafetch-pull: failed: {}", summary.failed.join("; "));
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(e) => failure(&e),
    }
}

fn run_restore(flags: restore_settings::RestoreFlags, quiet: bool) -> ExitCode {
    let settings = match restore_settings::RestoreSettings::resolve(flags, |var| std::env::var(var).ok()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(quiet, settings.ndjson);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let each = |report: &ObjectReport| {
        if settings.ndjson {
            println!("{}", serde_json::json!({ "event": "object", "object": report }));
        } else if !quiet || matches!(report.outcome, Outcome::Failed | Outcome::Unauthorized) {
            println!("{}", report.line());
        }
    };
    if let Some(undo) = &settings.undo {
        // Now, whatever comes after: the command matters most if the restore is cut short.
        eprintln!(
            "durafetch-pull: the objects are copied into {} first; to undo the restore: {}",
            undo.file.display(),
            restore_report::undo_command(&settings)
        );
    }
    let reports = match runtime.block_on(restore::restore(&settings, quiet || settings.ndjson, each)) {
        Ok(reports) => reports,
        Err(e) if e.is_failure() => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let summary = restore_report::Summary::of(&reports, &settings);
    if !quiet {
        println!("{}", if settings.ndjson { summary.json() } else { summary.line() });
    }
    if summary.unauthorized > 0 {
        ExitCode::from(EXIT_CONFIG)
    } else if summary.failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else if summary.refused > 0 {
        ExitCode::from(EXIT_NOT_EMPTY)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_reshard(db: &str, parts: u32) -> ExitCode {
    let database = Database::parse(db.into());
    let Database::Postgres(url) = &database else {
        eprintln!("durafetch-pull: reshard splits the objects of a PostgreSQL database; give --db a postgres:// URL");
        return ExitCode::from(EXIT_CONFIG);
    };
    match PostgresSink::open(url, false, Part::WHOLE).and_then(|mut sink| sink.reshard(parts)) {
        Ok(before) => {
            let was = before.map(|before| format!(" (was {before})")).unwrap_or_default();
            println!("{database} is split into {parts} parts{was}: run its pullers with --shard 1/{parts} to --shard {parts}/{parts}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("durafetch-pull: cannot reshard {database}: {e}");
            ExitCode::from(if e.is_config() { EXIT_CONFIG } else { EXIT_FAILED })
        }
    }
}

/// The async runtime, or the exit code of a process that cannot start one.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("durafetch-pull: cannot start: {e}");
        ExitCode::from(EXIT_FAILED)
    })
}

fn failure(e: &pull::PullError) -> ExitCode {
    eprintln!("durafetch-pull: {e}");
    ExitCode::from(if e.is_config() { EXIT_CONFIG } else { EXIT_FAILED })
}

fn init_logging(quiet: bool, ndjson: bool) {
    let default = if quiet { "error" } else { "warn" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("DURAFETCH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if ndjson {
        builder.json().init();
    } else {
        builder.init();
    }
}
