//! Reads the registry index "changed since" the revision this database last saw, page by page,
//! into `durable_objects`.

use durafetch_sdk::core::protocol::ServerMessage;

use crate::config::Server;
use crate::connect;
use crate::session::{ClientSession, SessionError};
use crate::sink::{with_sink, SharedSink};

/// What a read of the index found.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexStats {
    /// Index rows received: objects that changed since the last read.
    pub changed: u64,
}

pub async fn read(server: &Server, sink: &SharedSink) -> Result<IndexStats, SessionError> {
    let url = server.url.as_str();
    let since = with_sink(sink, |s| s.index_rev(url))?;
    let socket = connect::open(server, "/index").await?;
    let mut session = ClientSession::start(socket, None, since).await?;
    let mut stats = IndexStats::default();
    loop {
        match session.next().await? {
            ServerMessage::Objects { objects } => {
                with_sink(sink, |s| s.record_index_page(url, &server.worker, &objects))?;
                stats.changed += objects.len() as u64;
                session.consumed_page().await?;
            }
            ServerMessage::IndexEnd { rev } => {
                with_sink(sink, |s| s.save_index_rev(url, rev))?;
                session.close().await;
                return Ok(stats);
            }
            other => return Err(SessionError::Protocol(format!("{other:?} in an index session"))),
        }
    }
}
