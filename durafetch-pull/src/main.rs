//! durafetch-pull: downloads what changed in your Durable Objects into one SQLite file.
//! This binary parses flags and sets up logging; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use durafetch_pull::{config, filter, progress, pull};

/// Downloads the state of Durable Objects instrumented with durafetch-sdk into a SQLite file.
/// Only objects that changed since the last run are downloaded, and only their changed keys.
///
/// Example: DURAFETCH_AUTH=... durafetch-pull --config-file config.json
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, next_line_help = false)]
struct Flags {
    /// durafetch's JSON config: {"db_file": "..", "servers": [{"ws_url": "wss://durafetch_<worker>.<zone>"}]}.
    /// A relative db_file is relative to the config file.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// The SQLite file to write (overrides db_file). Example: --db backup.sqlite
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// A server to pull from (repeatable; replaces the config's servers). Example: --server wss://durafetch_my-app.example.com
    #[arg(long = "server", value_name = "URL")]
    servers: Vec<String>,
    /// The environment variable that holds the token for servers without one. Example: --token-env PROD_DURAFETCH_AUTH
    #[arg(long, value_name = "NAME", default_value = "DURAFETCH_AUTH")]
    token_env: String,
    /// How many objects to download at once (overrides concurrent_downloads). Example: --concurrency 16
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Pull once and exit (the default).
    #[arg(long, conflicts_with = "watch")]
    once: bool,
    /// Keep running until interrupted: stay subscribed to the registry, which pushes each change
    /// as it is recorded; objects that failed are tried again every poll.every_ms (default 1000).
    #[arg(long)]
    watch: bool,
    /// Download only objects of this class (repeatable). Example: --class ChatRoom
    #[arg(long = "class", value_name = "CLASS")]
    classes: Vec<String>,
    /// Skip objects of this class (repeatable). Example: --exclude-class RateLimiter
    #[arg(long = "exclude-class", value_name = "CLASS")]
    exclude_classes: Vec<String>,
    /// Download only objects whose name matches this glob (repeatable; unnamed objects never match). Example: --name 'room-*'
    #[arg(long = "name", value_name = "GLOB")]
    names: Vec<String>,
    /// Skip objects whose name matches this glob (repeatable). Example: --exclude-name 'test-*'
    #[arg(long = "exclude-name", value_name = "GLOB")]
    exclude_names: Vec<String>,
    /// Keep only keys starting with this prefix (repeatable). Changing key filters re-pulls objects from scratch. Example: --key-prefix user:
    #[arg(long = "key-prefix", value_name = "PREFIX")]
    key_prefixes: Vec<String>,
    /// Drop keys starting with this prefix (repeatable). Example: --exclude-key-prefix cache:
    #[arg(long = "exclude-key-prefix", value_name = "PREFIX")]
    exclude_key_prefixes: Vec<String>,
    /// Also append every change to the kv_history table, deletions as rows with deleted = 1.
    /// Example: --history, then SELECT * FROM kv_history WHERE key = 'k' ORDER BY history_id
    #[arg(long)]
    history: bool,
    /// Also contact every object the file knows, not only those the registry lists as changed.
    /// `--verify` (or `--verify=changes`) pulls what each holds since the file's cursor: one
    /// session per object; catches a write whose registry report was lost in a crash.
    /// `--verify=full` downloads each whole and repairs rows that disagree with it (missing,
    /// different or extra although the cursor says the file is current): costs a full download.
    /// Example: a daily --verify from cron, a monthly --verify=full
    #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "changes", conflicts_with = "watch")]
    verify: Option<config::Verify>,
    /// Log as newline-delimited JSON, and print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Print only errors.
    #[arg(long)]
    quiet: bool,
}

/// Exit codes: 0 all pulled, 1 some objects or servers failed, 2 configuration error.
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let overrides = config::Overrides {
        db: flags.db.clone(),
        servers: flags.servers.clone(),
        concurrency: flags.concurrency,
        token_env: flags.token_env.clone(),
        filter: filter::FilterSpec {
            classes: flags.classes.clone(),
            exclude_classes: flags.exclude_classes.clone(),
            names: flags.names.clone(),
            exclude_names: flags.exclude_names.clone(),
            key_prefixes: flags.key_prefixes.clone(),
            exclude_key_prefixes: flags.exclude_key_prefixes.clone(),
        },
        history: flags.history,
        verify: flags.verify.unwrap_or_default(),
        ndjson: flags.json,
    };
    let settings = match config::Settings::load(flags.config_file.as_deref(), overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(flags.quiet, settings.ndjson);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("durafetch-pull: cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
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
