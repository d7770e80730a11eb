//! durafetch-pull: downloads what changed in your Durable Objects into one SQLite file.
//! This binary parses flags and sets up logging; the work is in the modules below.

mod config;
mod connect;
mod download;
mod index;
mod progress;
mod pull;
mod session;
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Downloads the state of Durable Objects instrumented with durafetch-sdk into a SQLite file.
/// Only objects that changed since the last run are downloaded, and only their changed keys.
///
/// Example: DURAFETCH_AUTH=... durafetch-pull --config-file config.json
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
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
    /// Keep running: pull again every poll.every_ms (default 1000) until interrupted.
    #[arg(long)]
    watch: bool,
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
    init_logging(&flags);
    let overrides = config::Overrides {
        db: flags.db.clone(),
        servers: flags.servers.clone(),
        concurrency: flags.concurrency,
        token_env: flags.token_env.clone(),
    };
    let settings = match config::Settings::load(flags.config_file.as_deref(), overrides) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("durafetch-pull: cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let report = |summary: &progress::Summary| {
        if !flags.quiet {
            println!("{}", if flags.json { summary.json(&settings.db) } else { summary.line(&settings.db) });
        }
    };
    if flags.watch {
        return runtime.block_on(pull::watch(&settings, flags.quiet, report));
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
        Err(e) => {
            eprintln!("durafetch-pull: {e}");
            ExitCode::from(if e.is_config() { EXIT_CONFIG } else { EXIT_FAILED })
        }
    }
}

fn init_logging(flags: &Flags) {
    let default = if flags.quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DURAFETCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if flags.json {
        builder.json().init();
    } else {
        builder.init();
    }
}
