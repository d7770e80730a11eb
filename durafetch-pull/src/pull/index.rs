//! Reads the registry index "changed since" the revision this database last saw, page by page,
//! into `durable_objects`: once, or as a watch subscription that stays open and says when new
//! changes arrived.

use durafetch_sdk::core::protocol::ServerMessage;
use durafetch_sdk::core::shard::index_path;
use tokio::sync::mpsc::UnboundedSender;

use crate::pull::error::TransferError;
use crate::retry::Backoff;
use crate::settings::file::Server;
use crate::sink::thread::SinkThread;
use crate::transport::session::{ClientSession, SessionError};
use crate::transport::Transport;

/// What a read of the index found.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexStats {
    /// Index rows received: objects that changed since the last read.
    pub changed: u64,
    /// How many registry shards the worker has (from shard 0's answer).
    pub shards: u32,
}

/// Checks that `server` answers and takes the token (with retries, as a download would), before
/// anything is written: the connection is closed at once, so none waits past the server's
/// limit for a hello while other servers are checked.
pub async fn probe(transport: &dyn Transport, server: &Server) -> Result<(), TransferError> {
    let mut backoff = Backoff::new();
    loop {
        match transport.open(server, &index_path(0)).await {
            Ok(mut socket) => {
                let _ = futures_util::SinkExt::close(&mut socket).await;
                return Ok(());
            }
            Err(e) => {
                let e = TransferError::from(e);
                if !backoff.retry_after(&e, "index").await {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads every shard of a server's index: shard 0 says how many there are. Answers the rows
/// received in all.
pub async fn read_all_shards(transport: &dyn Transport, server: &Server, sink: &SinkThread) -> Result<IndexStats, TransferError> {
    let first = read_with_retries(transport, server, 0, sink).await?;
    let mut total = first;
    for shard in 1..first.shards {
        total.changed += read_with_retries(transport, server, shard, sink).await?.changed;
    }
    Ok(total)
}

/// Reads one shard of the index, with retries.
pub async fn read_with_retries(
    transport: &dyn Transport,
    server: &Server,
    shard: u32,
    sink: &SinkThread,
) -> Result<IndexStats, TransferError> {
    let mut backoff = Backoff::new();
    loop {
        match read(transport, server, shard, sink, None).await {
            Err(e) if backoff.retry_after(&e, "index").await => {}
            result => return result,
        }
    }
}

/// Keeps a watch subscription open, reconnecting after failures with backoff (the waits start
/// over once a session has worked). After each batch of changes is recorded it sends on
/// `changed`. Returns only for errors a reconnect cannot fix, such as a refused token.
pub async fn subscribe(
    transport: &dyn Transport,
    server: &Server,
    shard: u32,
    sink: &SinkThread,
    changed: UnboundedSender<()>,
) -> TransferError {
    let mut backoff = Backoff::endless();
    let what = format!("watch of {} shard {shard}", server.url);
    loop {
        // A watch session only ends with an error; `Closed` means it was up until then.
        let error = read(transport, server, shard, sink, Some(&changed)).await.err().unwrap_or(SessionError::Closed.into());
        if matches!(error, TransferError::Session(SessionError::Closed)) {
            backoff.reset();
        }
        if !backoff.retry_after(&error, &what).await {
            return error;
        }
    }
}

/// One index session. With `watch`, the session stays open: each `index_end` is saved and
/// announced, and the read goes on until the server or the network ends it.
async fn read(
    transport: &dyn Transport,
    server: &Server,
    shard: u32,
    sink: &SinkThread,
    watch: Option<&UnboundedSender<()>>,
) -> Result<IndexStats, TransferError> {
    let socket = transport.open(server, &index_path(shard)).await?;
    let url = server.url.to_string();
    let since = {
        let url = url.clone();
        sink.run(move |s| s.index_rev(&url, shard)).await?
    };
    let mut session = ClientSession::index(socket, since, watch.is_some()).await?;
    let mut stats = IndexStats::default();
    loop {
        match session.next().await? {
            ServerMessage::Objects { worker, objects } => {
                stats.changed += objects.len() as u64;
                let url = url.clone();
                sink.run(move |s| s.record_index_page(&url, &worker, &objects)).await?;
                session.consumed_page().await?;
            }
            ServerMessage::IndexEnd { rev, shards } => {
                let url = url.clone();
                sink.run(move |s| s.save_index_rev(&url, shard, rev)).await?;
                stats.shards = shards;
                match watch {
                    Some(changed) => {
                        let _ = changed.send(());
                    }
                    None => {
                        session.close().await;
                        return Ok(stats);
                    }
                }
            }
            other => return Err(SessionError::Protocol(format!("{other:?} in an index session")).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fake_server::{file, pull, temp_db, FakeServer, Fault};

    /// A worker restarting as the pull starts (its first index connection refused with 503) costs
    /// a retry; a refused token fails at once, with no retry and no file.
    #[tokio::test]
    async fn the_index_is_retried_when_unavailable_and_not_when_the_token_is_refused() {
        let server = FakeServer::filled("app");
        server.fail_next("/index", Fault::Unavailable);
        let (db, dir) = temp_db("index-retry");
        pull(&server, &db, &["app"]).await.unwrap();
        assert_eq!(file(&db, "app"), server.live("app"));

        let refused_db = dir.join("refused.sqlite");
        let before = server.connections("/index");
        server.fail_next("/index", Fault::Unauthorized);
        let error = pull(&server, &refused_db, &["app"]).await.unwrap_err();
        assert!(error.is_config(), "{error}");
        assert_eq!(server.connections("/index"), before, "no retry of a refused token");
        assert!(!refused_db.exists(), "a refused pull creates no file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
