//! Downloads one object: a snapshot or the changes since its local cursor, applied page by page,
//! with the cursor saved when the last page is written.

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{ExportMode, ServerMessage};

use crate::pull::error::TransferError;
use crate::pull::export_reader::ExportReader;
use crate::retry::Backoff;
use crate::settings::file::Server;
use crate::settings::filter::Filter;
use crate::sink::interface::{ApplyStats, PullTarget};
use crate::sink::thread::{Queued, SinkThread};
use crate::transport::session::SessionError;
use crate::transport::Transport;

/// What a page being written holds, and so which counts its outcome goes to.
enum Of {
    Keys,
    Rows,
}

type Writing = (Queued<ApplyStats>, Of);

#[derive(Debug, Default, Clone)]
pub struct ObjectStats {
    pub keys_written: u64,
    pub keys_deleted: u64,
    /// Rows of SQL tables.
    pub rows_written: u64,
    pub rows_deleted: u64,
    /// With `--verify=full`: rows the file lacked or held with another value.
    pub differed: u64,
    pub snapshot: bool,
    /// Bytes of export messages received.
    pub bytes: u64,
    /// SQL tables the object holds and durafetch cannot record (the object logs why).
    pub tables_not_recorded: Vec<String>,
}

impl ObjectStats {
    /// Waits for the page being written, if any, and counts what it wrote.
    async fn count_written(&mut self, page: Option<Writing>) -> Result<(), TransferError> {
        let Some((page, of)) = page else { return Ok(()) };
        let ApplyStats { written, deleted, differed } = page.wait().await?;
        let (counted_written, counted_deleted) = match of {
            Of::Keys => (&mut self.keys_written, &mut self.keys_deleted),
            Of::Rows => (&mut self.rows_written, &mut self.rows_deleted),
        };
        *counted_written += written;
        *counted_deleted += deleted;
        self.differed += differed;
        Ok(())
    }
}

/// One object's download: where from, into which file, under which filter.
pub struct ObjectDownload<'a> {
    /// The pull's `--concurrency`: permits to talk to the server. A download holds one while
    /// its export arrives, and lets it go once an export answered whole is in hand, so that
    /// writing it into the database does not keep the next object waiting.
    pub network: &'a tokio::sync::Semaphore,
    pub transport: &'a dyn Transport,
    pub server: &'a Server,
    pub target: &'a PullTarget,
    pub sink: &'a SinkThread,
    pub filter: &'a Filter,
}

impl ObjectDownload<'_> {
    /// Downloads with retries, as long as the error is retryable.
    pub async fn run_with_retries(&self) -> Result<ObjectStats, TransferError> {
        let mut backoff = Backoff::new();
        loop {
            match self.run().await {
                Ok(stats) => return Ok(stats),
                Err(e) if backoff.retry_after(&e, &self.target.id).await => {}
                Err(e) => return Err(e),
            }
        }
    }

    async fn run(&self) -> Result<ObjectStats, TransferError> {
        let ObjectDownload { network, transport, server, target, sink, filter } = *self;
        let path = format!("/export/{}/{}", target.class, target.id);
        let permit = network.acquire().await.expect("the pull never closes its permits");
        let mut session = ExportReader::open(transport, server, &path, target.local, target.local_sql).await?;
        let _talking = matches!(session, ExportReader::Session(_)).then_some(permit);
        let (mode, epoch) = match session.next().await? {
            ServerMessage::Begin { mode, epoch } => (mode, epoch),
            other => return Err(SessionError::Protocol(format!("expected begin, got {other:?}")).into()),
        };
        let read_at = target.local.filter(|c| c.epoch == epoch).unwrap_or(Cursor::new(epoch, 0));
        let writer = sink.begin(target.do_id, mode, read_at, filter.key_filter_id().to_owned(), target.compare).await?;
        let mut stats = ObjectStats { snapshot: mode == ExportMode::Snapshot, ..Default::default() };
        // One page is written while the next is received and parsed.
        let mut writing: Option<Writing> = None;
        loop {
            match session.next().await? {
                ServerMessage::Page { mut changes } => {
                    changes.retain(|c| filter.keeps_key(&c.key));
                    stats.count_written(writing.take()).await?;
                    writing = Some((writer.apply(changes), Of::Keys));
                    session.consumed_page().await?;
                }
                ServerMessage::SqlPage(page) => {
                    if filter.keeps_table(&page.table) {
                        stats.count_written(writing.take()).await?;
                        writing = Some((writer.apply_sql(page), Of::Rows));
                    }
                    session.consumed_page().await?;
                }
                ServerMessage::SqlTableGone { table } if filter.keeps_table(&table) => {
                    stats.count_written(writing.take()).await?;
                    writing = Some((writer.drop_sql_table(table), Of::Rows));
                }
                ServerMessage::SqlTableGone { .. } => {}
                ServerMessage::SqlSchema { table, refused: Some(why), .. } if filter.keeps_table(&table) => {
                    tracing::warn!(class = %target.class, id = %target.id, table = %table, "{why}");
                    stats.tables_not_recorded.push(table);
                }
                ServerMessage::SqlSchema { table, statements, autoincrement, refused: None } if filter.keeps_table(&table) => {
                    stats.count_written(writing.take()).await?;
                    writing = Some((writer.save_sql_schema(table, statements, autoincrement), Of::Rows));
                }
                ServerMessage::SqlSchema { .. } => {}
                ServerMessage::End { cursor, sql } => {
                    stats.count_written(writing.take()).await?;
                    let swept = writer.finish(cursor, sql).await?;
                    (stats.keys_deleted, stats.rows_deleted) = (stats.keys_deleted + swept.keys, stats.rows_deleted + swept.rows);
                    stats.bytes = session.received_bytes();
                    session.close().await;
                    return Ok(stats);
                }
                other => return Err(SessionError::Protocol(format!("{other:?} in an export session")).into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::fake_server::{pull_into, since, FakeServer, Fault};
    use crate::sink::memory::MemoryDatabase;
    use durafetch_sdk::core::cursor::Cursor;

    /// A snapshot cut off after its first page is retried; the retry, a snapshot again (no
    /// cursor was saved), leaves exactly the object's keys.
    #[tokio::test]
    async fn a_download_cut_off_mid_snapshot_is_retried_and_resumed_exactly() {
        let server = FakeServer::filled("app");
        server.fail_next("/export/Cart/cc", Fault::CutAfterPages(1));
        let db = MemoryDatabase::default();
        let summary = pull_into(&server, &db, &["app"]).await.unwrap();
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        assert_eq!(server.connections("/export/Cart/cc"), 2, "one retry");
        assert_eq!(since(&server.hellos("/export/Cart/cc")[1]).0, None, "the retry starts over: no cursor was saved");
        assert_eq!(db.live("app"), server.live("app"));
        assert_eq!(db.cursor("cc"), Some(Cursor::new(1, 3)), "the cursor saved once the last page is written");
    }

    /// A small object comes in one answer, a larger one over a session after the server says
    /// it needs one; both land exactly, and a later change of the small one comes whole too.
    #[tokio::test]
    async fn small_exports_come_in_one_answer_and_larger_ones_over_a_session() {
        let server = FakeServer::filled("app");
        for key in ["k4", "k5", "k6"] {
            server.write("app", "Room", "bb", key, Some(serde_json::json!(key)));
        }
        let db = MemoryDatabase::default();
        let summary = pull_into(&server, &db, &["app"]).await.unwrap();
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        assert_eq!(db.live("app"), server.live("app"));
        assert_eq!((server.whole_answers("/export/Room/aa"), server.connections("/export/Room/aa")), (1, 1), "3 keys: one answer");
        assert_eq!((server.whole_answers("/export/Room/bb"), server.connections("/export/Room/bb")), (0, 1), "6 keys: a session");

        server.write("app", "Room", "aa", "k1", None);
        let summary = pull_into(&server, &db, &["app"]).await.unwrap();
        assert!(summary.failed.is_empty(), "{:?}", summary.failed);
        assert_eq!(db.live("app"), server.live("app"));
        assert_eq!(server.whole_answers("/export/Room/aa"), 2, "the change came in one answer");
        assert_eq!(since(&server.hellos("/export/Room/aa")[1]).0.map(|c| c.seq), Some(3), "from the cursor the first answer left");
    }
}
