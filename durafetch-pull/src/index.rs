//! Reads the registry index "changed since" the revision this database last saw, page by page,
//! into `durable_objects`: once, or as a watch subscription that stays open and says when new
//! changes arrived.

use durafetch_sdk::core::protocol::ServerMessage;
use durafetch_sdk::core::shard::index_path;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Server;
use crate::connect::{self, Socket};
use crate::retry::Backoff;
use crate::session::{ClientSession, SessionError};
use crate::sink::SinkThread;

/// What a read of the index found.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexStats {
    /// Index rows received: objects that changed since the last read.
    pub changed: u64,
    /// How many registry shards the worker has (from shard 0's answer).
    pub shards: u32,
}

/// Reads every shard of a server's index: shard 0 (on `socket`, if connected) says how many
/// there are. Answers the rows received in all.
pub async fn read_all_shards(server: &Server, socket: Option<Socket>, sink: &SinkThread) -> Result<IndexStats, SessionError> {
    let first = read_with_retries(server, 0, socket, sink).await?;
    let mut total = first;
    for shard in 1..first.shards {
        total.changed += read_with_retries(server, shard, None, sink).await?.changed;
    }
    Ok(total)
}

/// Connects to one shard's index, retrying as a download does: a worker that restarts as a
/// pull starts costs a retry, not a failed run.
pub async fn connect_with_retries(server: &Server, shard: u32) -> Result<Socket, SessionError> {
    let mut backoff = Backoff::new();
    loop {
        match connect::open(server, &index_path(shard)).await {
            Ok(socket) => return Ok(socket),
            Err(e) => {
                let e = SessionError::from(e);
                if !backoff.retry_after(&e, "index").await {
                    return Err(e);
                }
            }
        }
    }
}

/// Reads one shard of the index, starting on `socket` if the caller already connected one, with
/// retries.
pub async fn read_with_retries(
    server: &Server,
    shard: u32,
    mut socket: Option<Socket>,
    sink: &SinkThread,
) -> Result<IndexStats, SessionError> {
    let mut backoff = Backoff::new();
    loop {
        let attempt = match socket.take() {
            Some(socket) => read(server, shard, socket, sink, None).await,
            None => match connect::open(server, &index_path(shard)).await {
                Ok(socket) => read(server, shard, socket, sink, None).await,
                Err(e) => Err(e.into()),
            },
        };
        match attempt {
            Err(e) if backoff.retry_after(&e, "index").await => {}
            result => return result,
        }
    }
}

/// Keeps a watch subscription open, reconnecting after failures with backoff (the waits start
/// over once a session has worked). After each batch of changes is recorded it sends on
/// `changed`. Returns only for errors a reconnect cannot fix, such as a refused token.
pub async fn subscribe(server: &Server, shard: u32, sink: &SinkThread, changed: UnboundedSender<()>) -> SessionError {
    let mut backoff = Backoff::endless();
    let what = format!("watch of {} shard {shard}", server.url);
    loop {
        let attempt = match connect::open(server, &index_path(shard)).await {
            Ok(socket) => read(server, shard, socket, sink, Some(&changed)).await,
            Err(e) => Err(e.into()),
        };
        // A watch session only ends with an error; `Closed` means it was up until then.
        let error = attempt.err().unwrap_or(SessionError::Closed);
        if matches!(error, SessionError::Closed) {
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
    server: &Server,
    shard: u32,
    socket: Socket,
    sink: &SinkThread,
    watch: Option<&UnboundedSender<()>>,
) -> Result<IndexStats, SessionError> {
    let url = server.url.to_string();
    let since = {
        let url = url.clone();
        sink.run(move |s| s.index_rev(&url, shard)).await?
    };
    let mut session = ClientSession::index(socket, since, watch.is_some()).await?;
    let mut stats = IndexStats::default();
    loop {
        match session.next().await? {
            ServerMessage::Objects { objects } => {
                stats.changed += objects.len() as u64;
                let (url, worker) = (url.clone(), server.worker.clone());
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
            other => return Err(SessionError::Protocol(format!("{other:?} in an index session"))),
        }
    }
}
