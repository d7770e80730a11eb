//! Downloads one object: a snapshot or the changes since its local cursor, applied page by page,
//! with the cursor saved together with the last page.

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{ExportMode, ServerMessage};

use crate::config::Server;
use crate::connect;
use crate::filter::Filter;
use crate::retry::Backoff;
use crate::session::{ClientSession, SessionError};
use crate::sink::{with_sink, ApplyStats, PullTarget, SharedSink};

#[derive(Debug, Default, Clone, Copy)]
pub struct ObjectStats {
    pub written: u64,
    pub deleted: u64,
    pub snapshot: bool,
    /// Bytes of export messages received.
    pub bytes: u64,
}

/// Downloads with retries, as long as the error is retryable.
pub async fn pull_with_retries(server: &Server, target: &PullTarget, sink: &SharedSink, filter: &Filter) -> Result<ObjectStats, SessionError> {
    let mut backoff = Backoff::new();
    loop {
        match pull(server, target, sink, filter).await {
            Ok(stats) => return Ok(stats),
            Err(e) if backoff.retry_after(&e, &target.id).await => {}
            Err(e) => return Err(e),
        }
    }
}

async fn pull(server: &Server, target: &PullTarget, sink: &SharedSink, filter: &Filter) -> Result<ObjectStats, SessionError> {
    let socket = connect::open(server, &format!("/export/{}/{}", target.class, target.id)).await?;
    let mut session = ClientSession::export(socket, target.local).await?;
    let (mode, epoch) = match session.next().await? {
        ServerMessage::Begin { mode, epoch } => (mode, epoch),
        other => return Err(SessionError::Protocol(format!("expected begin, got {other:?}"))),
    };
    let read_at = target.local.filter(|c| c.epoch == epoch).unwrap_or(Cursor::new(epoch, 0));
    let write = with_sink(sink, |s| s.begin(target.do_id, mode, read_at, filter.key_filter_id()))?;
    let mut stats = ObjectStats { snapshot: mode == ExportMode::Snapshot, ..Default::default() };
    loop {
        match session.next().await? {
            ServerMessage::Page { mut changes } => {
                changes.retain(|c| filter.keeps_key(&c.key));
                let ApplyStats { written, deleted } = with_sink(sink, |s| s.apply(&write, &changes))?;
                stats.written += written;
                stats.deleted += deleted;
                session.consumed_page().await?;
            }
            ServerMessage::End { cursor } => {
                stats.deleted += with_sink(sink, |s| s.finish(write, cursor))?;
                stats.bytes = session.received_bytes();
                session.close().await;
                return Ok(stats);
            }
            other => return Err(SessionError::Protocol(format!("{other:?} in an export session"))),
        }
    }
}
