//! Downloads one object: a snapshot or the changes since its local cursor, applied page by page,
//! with the cursor saved together with the last page.

use std::time::Duration;

use durafetch_sdk::core::protocol::ServerMessage;

use crate::config::Server;
use crate::connect;
use crate::session::{ClientSession, SessionError};
use crate::sink::{with_sink, ApplyStats, PullTarget, SharedSink};

const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Clone, Copy)]
pub struct ObjectStats {
    pub written: u64,
    pub deleted: u64,
    pub snapshot: bool,
}

/// Downloads with retries: exponential backoff with jitter, as long as the error is retryable.
pub async fn pull_with_retries(server: &Server, target: &PullTarget, sink: &SharedSink) -> Result<ObjectStats, SessionError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match pull(server, target, sink).await {
            Ok(stats) => return Ok(stats),
            Err(e) if attempt < ATTEMPTS && e.is_retryable() => {
                tracing::warn!(class = %target.class, id = %target.id, attempt, error = %e, "download failed; retrying");
                let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tokio::time::sleep(backoff + jitter).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn pull(server: &Server, target: &PullTarget, sink: &SharedSink) -> Result<ObjectStats, SessionError> {
    let socket = connect::open(server, &format!("/export/{}/{}", target.class, target.id)).await?;
    let mut session = ClientSession::start(socket, target.local, 0).await?;
    let (mode, epoch) = match session.next().await? {
        ServerMessage::Begin { mode, epoch } => (mode, epoch),
        other => return Err(SessionError::Protocol(format!("expected begin, got {other:?}"))),
    };
    let read_at = target.local.filter(|c| c.epoch == epoch).unwrap_or(durafetch_sdk::core::cursor::Cursor::new(epoch, 0));
    let write = with_sink(sink, |s| s.begin(target.do_id, mode, read_at))?;
    let mut stats = ObjectStats { snapshot: mode == durafetch_sdk::core::protocol::ExportMode::Snapshot, ..Default::default() };
    loop {
        match session.next().await? {
            ServerMessage::Page { changes } => {
                let ApplyStats { written, deleted } = with_sink(sink, |s| s.apply(&write, &changes))?;
                stats.written += written;
                stats.deleted += deleted;
                session.consumed_page().await?;
            }
            ServerMessage::End { cursor } => {
                stats.deleted += with_sink(sink, |s| s.finish(write, cursor))?;
                session.close().await;
                return Ok(stats);
            }
            other => return Err(SessionError::Protocol(format!("{other:?} in an export session"))),
        }
    }
}
