//! Downloads one object: a snapshot or the changes since its local cursor, applied page by page,
//! with the cursor saved together with the last page.

use std::sync::Arc;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{ExportMode, ServerMessage};

use crate::config::Server;
use crate::connect;
use crate::filter::Filter;
use crate::retry::Backoff;
use crate::session::{ClientSession, SessionError};
use crate::sink::{ApplyStats, PullTarget, Queued, SinkThread};

#[derive(Debug, Default, Clone, Copy)]
pub struct ObjectStats {
    pub written: u64,
    pub deleted: u64,
    /// With `--verify=full`: rows the file lacked or held with another value.
    pub differed: u64,
    pub snapshot: bool,
    /// Bytes of export messages received.
    pub bytes: u64,
}

impl ObjectStats {
    /// Waits for the page being written, if any, and counts what it wrote.
    async fn count_written(&mut self, page: Option<Queued<ApplyStats>>) -> Result<(), SessionError> {
        if let Some(page) = page {
            let ApplyStats { written, deleted, differed } = page.wait().await?;
            self.written += written;
            self.deleted += deleted;
            self.differed += differed;
        }
        Ok(())
    }
}

/// Downloads with retries, as long as the error is retryable.
pub async fn pull_with_retries(
    server: &Server,
    target: &PullTarget,
    sink: &SinkThread,
    filter: &Filter,
) -> Result<ObjectStats, SessionError> {
    let mut backoff = Backoff::new();
    loop {
        match pull(server, target, sink, filter).await {
            Ok(stats) => return Ok(stats),
            Err(e) if backoff.retry_after(&e, &target.id).await => {}
            Err(e) => return Err(e),
        }
    }
}

async fn pull(server: &Server, target: &PullTarget, sink: &SinkThread, filter: &Filter) -> Result<ObjectStats, SessionError> {
    let socket = connect::open(server, &format!("/export/{}/{}", target.class, target.id)).await?;
    let mut session = ClientSession::export(socket, target.local).await?;
    let (mode, epoch) = match session.next().await? {
        ServerMessage::Begin { mode, epoch } => (mode, epoch),
        other => return Err(SessionError::Protocol(format!("expected begin, got {other:?}"))),
    };
    let read_at = target.local.filter(|c| c.epoch == epoch).unwrap_or(Cursor::new(epoch, 0));
    let (do_id, key_filter, compare) = (target.do_id, filter.key_filter_id().to_owned(), target.compare);
    let write = Arc::new(sink.run(move |s| s.begin(do_id, mode, read_at, &key_filter, compare)).await?);
    let mut stats = ObjectStats { snapshot: mode == ExportMode::Snapshot, ..Default::default() };
    // One page is written while the next is received and parsed.
    let mut writing: Option<Queued<ApplyStats>> = None;
    loop {
        match session.next().await? {
            ServerMessage::Page { mut changes } => {
                changes.retain(|c| filter.keeps_key(&c.key));
                stats.count_written(writing.take()).await?;
                let write = write.clone();
                writing = Some(sink.queue(move |s| s.apply(&write, &changes)));
                session.consumed_page().await?;
            }
            ServerMessage::End { cursor } => {
                stats.count_written(writing.take()).await?;
                stats.deleted += sink.run(move |s| s.finish(&write, cursor)).await?;
                stats.bytes = session.received_bytes();
                session.close().await;
                return Ok(stats);
            }
            other => return Err(SessionError::Protocol(format!("{other:?} in an export session"))),
        }
    }
}
