//! A pull over every server: read each index, then download the objects that are behind with
//! bounded concurrency; once, or continuously as the registry's watch says objects changed.

pub(crate) mod download;
pub mod error;
pub(crate) mod export_reader;
pub(crate) mod index;
pub mod progress;

use std::sync::Arc;

use futures_util::StreamExt;

use crate::pull::error::TransferError;
use crate::pull::progress::{object_bar, Summary};
use crate::settings::file::Server;
use crate::settings::pull::{Settings, Verify};
use crate::sink;
use crate::sink::interface::SinkError;
use crate::sink::interface::{OpenError, Sink};
use crate::sink::thread::SinkThread;
use crate::transport::error::ConnectError;
use crate::transport::session::SessionError;
use crate::transport::websocket::NetworkTransport;
use crate::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("cannot open the database {path}: {source}")]
    Database { path: String, source: OpenError },
    #[error("{server}: {source}")]
    Index { server: String, source: TransferError },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("internal error: {0}")]
    Task(String),
}

impl PullError {
    /// A refused token, or a file another puller is writing, is a matter for the operator:
    /// retrying at once will not help.
    pub fn is_config(&self) -> bool {
        matches!(self, PullError::Index { source: TransferError::Session(SessionError::Connect(ConnectError::Unauthorized)), .. })
            || matches!(self, PullError::Database { source, .. } if source.is_config())
    }
}

/// Pulls once over the network.
pub async fn once(settings: &Settings, quiet: bool) -> Result<Summary, PullError> {
    once_with(settings, &NetworkTransport::default(), quiet).await
}

/// Pulls once through `transport` into the database the settings name.
pub async fn once_with(settings: &Settings, transport: &dyn Transport, quiet: bool) -> Result<Summary, PullError> {
    once_into(settings, transport, database(settings), quiet).await
}

/// Pulls once through `transport` into the database `open` opens.
pub(crate) async fn once_into(
    settings: &Settings,
    transport: &dyn Transport,
    open: impl FnOnce() -> Result<Box<dyn Sink>, OpenError> + Send + 'static,
    quiet: bool,
) -> Result<Summary, PullError> {
    // Every server is reached before the database is opened: an unreachable server or a refused
    // token leaves the file as it was (or not created at all).
    for server in &settings.servers {
        index::probe(transport, server).await.map_err(|e| index_error(server, e))?;
    }
    let sink = start_sink(settings, open).await?;
    let pulled = async {
        let mut changed = 0;
        for server in &settings.servers {
            changed += index::read_all_shards(transport, server, &sink).await.map_err(|e| index_error(server, e))?.changed;
        }
        let mut summary = download_behind(settings, transport, &sink, quiet, settings.verify).await?;
        summary.index_changed = changed;
        Ok(summary)
    }
    .await;
    sink.close().await;
    pulled
}

fn index_error(server: &Server, source: TransferError) -> PullError {
    PullError::Index { server: server.url.to_string(), source }
}

/// Opens the database the settings name, as `sink::open` does.
fn database(settings: &Settings) -> impl FnOnce() -> Result<Box<dyn Sink>, OpenError> + Send + 'static {
    let (db, history, part) = (settings.db.clone(), settings.history, settings.part);
    move || sink::open(&db, history, part)
}

/// The database `open` opens, on a thread of its own.
async fn start_sink(
    settings: &Settings,
    open: impl FnOnce() -> Result<Box<dyn Sink>, OpenError> + Send + 'static,
) -> Result<SinkThread, PullError> {
    SinkThread::start(open).await.map_err(|source| PullError::Database { path: settings.db.to_string(), source })
}

/// Downloads every object the index shows behind (when verifying, every object it lists) that
/// the filters keep.
async fn download_behind(
    settings: &Settings,
    transport: &dyn Transport,
    sink: &SinkThread,
    quiet: bool,
    verify: Verify,
) -> Result<Summary, PullError> {
    let mut summary = Summary::default();
    let mut work = Vec::new();
    for server in &settings.servers {
        let (url, key_filter) = (server.url.to_string(), settings.filter.key_filter_id().to_owned());
        let every = verify != Verify::Off;
        let mut targets = sink.run(move |s| s.targets(&url, &key_filter, every)).await?;
        if verify == Verify::Full {
            for target in &mut targets {
                target.local = None;
                target.compare = true;
            }
        }
        let (kept, skipped): (Vec<_>, Vec<_>) =
            targets.into_iter().partition(|t| settings.filter.keeps_object(&t.class, t.name.as_deref()));
        summary.filtered_out += skipped.len() as u64;
        work.extend(kept.into_iter().map(|t| (server, t)));
    }

    let bar = object_bar(work.len() as u64, quiet);
    let network = tokio::sync::Semaphore::new(settings.concurrency);
    let network = &network;
    // `--concurrency` downloads talk to the server at once (the permits); as many again may be
    // writing an export answered whole, at most 256 KiB each, into the database meanwhile.
    let mut downloads = futures_util::stream::iter(work)
        .map(|(server, target)| async move {
            let download = download::ObjectDownload { network, transport, server, target: &target, sink, filter: &settings.filter };
            let result = download.run_with_retries().await;
            (target, result)
        })
        .buffer_unordered(2 * settings.concurrency);
    while let Some((target, result)) = downloads.next().await {
        bar.inc(1);
        match result {
            Ok(stats) => {
                summary.objects_pulled += 1;
                summary.snapshots += u64::from(stats.snapshot);
                summary.keys_written += stats.keys_written;
                summary.keys_deleted += stats.keys_deleted;
                summary.rows_written += stats.rows_written;
                summary.rows_deleted += stats.rows_deleted;
                summary.bytes += stats.bytes;
                let object = target.name.as_deref().unwrap_or(&target.id);
                summary.tables_not_recorded.extend(stats.tables_not_recorded.iter().map(|t| format!("{} {object}: {t}", target.class)));
                let rate = summary.bytes as f64 / 1e6 / bar.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} keys, {} rows, {:.1} MB, {rate:.1} MB/s",
                    summary.keys_written + summary.keys_deleted,
                    summary.rows_written + summary.rows_deleted,
                    summary.bytes as f64 / 1e6
                ));
                tracing::info!(
                    class = %target.class,
                    id = %target.id,
                    keys_written = stats.keys_written,
                    keys_deleted = stats.keys_deleted,
                    rows_written = stats.rows_written,
                    rows_deleted = stats.rows_deleted,
                    "pulled"
                );
                let extra = stats.keys_deleted + stats.rows_deleted;
                if target.compare && stats.differed + extra > 0 {
                    summary.rows_repaired += stats.differed + extra;
                    tracing::warn!(
                        class = %target.class,
                        id = %target.id,
                        missing_or_different = stats.differed,
                        extra,
                        "the file disagreed with the object; repaired"
                    );
                }
            }
            Err(e) => {
                tracing::error!(class = %target.class, id = %target.id, error = %e, "download failed");
                summary.failed.push(format!("{}: {e}", target.described()));
            }
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Keeps the file up to date until interrupted: a watch subscription per server says when the
/// registry recorded changes, and the objects behind are downloaded at once. Objects that failed
/// are tried again every `poll_every`. Only a refused token or a database error ends the loop.
/// A stop (SIGINT or SIGTERM) ends it at once, wherever it is, retry waits and sessions included:
/// what the downloads queued for the file is written, and an object whose download was cut off
/// keeps its old cursor, to be finished by the next run.
pub async fn watch(settings: &Settings, quiet: bool, report: impl Fn(&Summary)) -> Result<(), PullError> {
    // Listening from the start: a signal that arrives while the first index read runs is kept.
    let stop = stop_signal();
    let sink = start_sink(settings, database(settings)).await?;
    let ended = tokio::select! {
        () = stop => Ok(()),
        ended = keep_up_to_date(settings, Arc::new(NetworkTransport::default()), &sink, quiet, report) => ended,
    };
    sink.close().await;
    ended
}

async fn keep_up_to_date(
    settings: &Settings,
    transport: Arc<dyn Transport>,
    sink: &SinkThread,
    quiet: bool,
    report: impl Fn(&Summary),
) -> Result<(), PullError> {
    let (changed, mut wakeups) = tokio::sync::mpsc::unbounded_channel();
    // Dropped when the watch ends, which aborts every subscription.
    let mut subscriptions = tokio::task::JoinSet::new();
    for server in &settings.servers {
        // Shard 0 says how many shards to subscribe to; the subscriptions then catch up.
        let shards = index::read_with_retries(&*transport, server, 0, sink).await.map_err(|e| index_error(server, e))?.shards;
        for shard in 0..shards {
            let (server, sink, changed, transport) = (server.clone(), sink.clone(), changed.clone(), transport.clone());
            subscriptions.spawn(async move { index_error(&server, index::subscribe(&*transport, &server, shard, &sink, changed).await) });
        }
    }
    let mut retry = tokio::time::interval(settings.poll_every);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(ended) = subscriptions.join_next() => {
                return Err(ended.unwrap_or_else(|e| PullError::Task(e.to_string())));
            }
            Some(()) = wakeups.recv() => while wakeups.try_recv().is_ok() {},
            _ = retry.tick() => {}
        }
        match download_behind(settings, &*transport, sink, quiet, Verify::Off).await {
            Ok(summary) if summary.objects_pulled > 0 || !summary.failed.is_empty() => report(&summary),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "pull failed; retrying"),
        }
    }
}

/// A future that resolves at the first SIGINT or SIGTERM (a terminal's Ctrl-C, or a service
/// manager's stop). The handlers are registered here, at the call, so no signal is missed later.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
        async move {
            match handlers {
                Ok((mut interrupt, mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use durafetch_sdk::core::cursor::Cursor;
    use serde_json::json;

    use super::*;
    use crate::fake_server::{file, fill, pull, settings, since, temp_db, FakeServer};
    use crate::settings::filter::FilterSpec;
    use crate::sink::memory::MemoryDatabase;

    /// A first pull copies every object; the next reads the index since the revision the file
    /// saved, contacts only the object that changed, and asks it only for what changed since the
    /// cursor the file saved: a key written, a key deleted.
    #[tokio::test]
    async fn a_second_pull_reads_only_what_changed_since_the_saved_revision_and_cursor() {
        let server = FakeServer::filled("app");
        let db = MemoryDatabase::default();
        let settings = settings(Path::new("memory"), &["app"], FilterSpec::default());
        let first = once_into(&settings, &server, db.opener(), true).await.unwrap();
        assert_eq!((first.objects_pulled, first.snapshots, first.keys_written), (3, 3, 9));
        assert_eq!(db.live("app"), server.live("app"));

        server.write("app", "Room", "bb", "k4", Some(json!(4)));
        server.write("app", "Room", "bb", "k1", None);
        let second = once_into(&settings, &server, db.opener(), true).await.unwrap();
        assert_eq!((second.index_changed, second.objects_pulled, second.snapshots), (1, 1, 0), "{second:?}");
        assert_eq!((second.keys_written, second.keys_deleted), (1, 1));
        assert_eq!(db.live("app"), server.live("app"));
        let index_hellos = server.hellos("/index");
        assert_eq!(since(index_hellos.last().unwrap()), (None, 9), "the index is read since the saved revision");
        let exports = server.hellos("/export/Room/bb");
        assert_eq!(since(&exports[1]), (Some(Cursor::new(1, 3)), 0), "the export starts at the saved cursor");
    }

    /// Filters choose objects before any is contacted, and keys as pages arrive.
    #[tokio::test]
    async fn filters_choose_objects_before_contacting_them_and_keys_as_they_arrive() {
        let server = FakeServer::filled("app");
        let db = MemoryDatabase::default();
        let filter = FilterSpec { classes: vec!["Room".into()], key_prefixes: vec!["k1".into(), "k3".into()], ..FilterSpec::default() };
        let summary = once_into(&settings(Path::new("memory"), &["app"], filter), &server, db.opener(), true).await.unwrap();
        assert_eq!((summary.objects_pulled, summary.filtered_out), (2, 1));
        assert_eq!(server.connections("/export/Cart"), 0, "a filtered-out object is not contacted");
        let expected: BTreeMap<_, _> = server.live("app").into_iter().filter(|((name, key), _)| name != "name-cc" && key != "k2").collect();
        assert_eq!(db.live("app"), expected);
    }

    /// Several servers share one file, each object under its own worker.
    #[tokio::test]
    async fn several_servers_share_one_file_and_stay_apart() {
        let server = FakeServer::default();
        fill(&server, "first");
        server.write("second", "Room", "dd", "k", Some(json!("second")));
        let (db, dir) = temp_db("servers");
        let summary = pull(&server, &db, &["first", "second"]).await.unwrap();
        assert_eq!(summary.objects_pulled, 4);
        assert_eq!(file(&db, "first"), server.live("first"));
        assert_eq!(file(&db, "second"), server.live("second"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
