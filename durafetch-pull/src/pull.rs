//! One pull over every server: read each index, then download the objects that are behind with
//! bounded concurrency.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use crate::config::Settings;
use crate::connect::ConnectError;
use crate::progress::{object_bar, Summary};
use crate::session::SessionError;
use crate::sink::{with_sink, Sink};
use crate::{download, index};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("cannot open the database {path}: {source}")]
    Database { path: String, source: rusqlite::Error },
    #[error("{server}: {source}")]
    Index { server: String, source: SessionError },
}

impl PullError {
    /// A refused token is a configuration problem: retrying will not help.
    pub fn is_config(&self) -> bool {
        matches!(self, PullError::Index { source: SessionError::Connect(ConnectError::Unauthorized), .. })
    }
}

pub async fn once(settings: &Settings, quiet: bool) -> Result<Summary, PullError> {
    let sink = Sink::open(&settings.db)
        .map_err(|source| PullError::Database { path: settings.db.display().to_string(), source })?;
    let sink = Arc::new(Mutex::new(sink));
    let mut summary = Summary::default();

    let mut work = Vec::new();
    for server in &settings.servers {
        let stats = index::read(server, &sink)
            .await
            .map_err(|source| PullError::Index { server: server.url.to_string(), source })?;
        summary.index_changed += stats.changed;
        let targets = with_sink(&sink, |s| s.targets(server.url.as_str()))
            .map_err(|source| PullError::Index { server: server.url.to_string(), source })?;
        work.extend(targets.into_iter().map(|t| (server, t)));
    }

    let bar = object_bar(work.len() as u64, quiet);
    let mut downloads = futures_util::stream::iter(work)
        .map(|(server, target)| {
            let sink = sink.clone();
            async move {
                let result = download::pull_with_retries(server, &target, &sink).await;
                (target, result)
            }
        })
        .buffer_unordered(settings.concurrency);
    while let Some((target, result)) = downloads.next().await {
        bar.inc(1);
        match result {
            Ok(stats) => {
                summary.objects_pulled += 1;
                summary.snapshots += u64::from(stats.snapshot);
                summary.keys_written += stats.written;
                summary.keys_deleted += stats.deleted;
                tracing::info!(class = %target.class, id = %target.id, written = stats.written, deleted = stats.deleted, "pulled");
            }
            Err(e) => {
                tracing::error!(class = %target.class, id = %target.id, error = %e, "download failed");
                summary.failed.push(format!("{} {}: {e}", target.class, target.id));
            }
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Pulls every `poll_every` until interrupted. A failed round is logged and retried at the next
/// tick; only a refused token ends the loop.
pub async fn watch(settings: &Settings, quiet: bool, report: impl Fn(&Summary)) -> std::process::ExitCode {
    let mut ticker = tokio::time::interval(settings.poll_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return std::process::ExitCode::SUCCESS,
            _ = ticker.tick() => {}
        }
        match once(settings, quiet).await {
            Ok(summary) if summary.objects_pulled > 0 || !summary.failed.is_empty() => report(&summary),
            Ok(_) => {}
            Err(e) if e.is_config() => {
                eprintln!("durafetch-pull: {e}");
                return std::process::ExitCode::from(2);
            }
            Err(e) => tracing::error!(error = %e, "pull failed; retrying at the next poll"),
        }
    }
}
