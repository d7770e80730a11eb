//! The SQLite sink, a local file (`file`): each download's pages written in stamped
//! transactions (`object_write`), SQL pages into a local table per (class, table)
//! (`sql_tables`); each object's cursor saved once every page it covers is written.

pub(crate) mod file;
pub(crate) mod object_write;
pub(crate) mod sql_tables;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, IndexEntry, SqlPage};

use crate::sink::interface::{ApplyStats, PullTarget, Sink, SinkError, Swept, WriteId};
pub use crate::sink::sqlite::file::SqliteSink;

/// The file's side of each call is its inherent method (in `file`, `object_write` and
/// `sql_tables`), which the unit tests also call directly.
impl Sink for SqliteSink {
    fn index_rev(&mut self, server_url: &str, shard: u32) -> Result<u64, SinkError> {
        Ok(SqliteSink::index_rev(self, server_url, shard)?)
    }
    fn record_index_page(&mut self, server_url: &str, worker: &str, entries: &[IndexEntry]) -> Result<(), SinkError> {
        Ok(SqliteSink::record_index_page(self, server_url, worker, entries)?)
    }
    fn save_index_rev(&mut self, server_url: &str, shard: u32, rev: u64) -> Result<(), SinkError> {
        Ok(SqliteSink::save_index_rev(self, server_url, shard, rev)?)
    }
    fn targets(&mut self, server_url: &str, key_filter: &str, every: bool) -> Result<Vec<PullTarget>, SinkError> {
        Ok(SqliteSink::targets(self, server_url, key_filter, every)?)
    }
    fn begin(&mut self, do_id: i64, mode: ExportMode, read_at: Cursor, key_filter: &str, compare: bool) -> Result<WriteId, SinkError> {
        SqliteSink::begin(self, do_id, mode, read_at, key_filter, compare)
    }
    fn apply(&mut self, id: WriteId, changes: &[Change]) -> Result<ApplyStats, SinkError> {
        SqliteSink::apply(self, id, changes)
    }
    fn apply_sql(&mut self, id: WriteId, page: &SqlPage) -> Result<ApplyStats, SinkError> {
        SqliteSink::apply_sql(self, id, page)
    }
    fn save_sql_schema(
        &mut self,
        id: WriteId,
        table: &str,
        statements: &[String],
        autoincrement: Option<i64>,
    ) -> Result<ApplyStats, SinkError> {
        SqliteSink::save_sql_schema(self, id, table, statements, autoincrement)
    }
    fn drop_sql_table(&mut self, id: WriteId, table: &str) -> Result<ApplyStats, SinkError> {
        SqliteSink::drop_sql_table(self, id, table)
    }
    fn finish(&mut self, id: WriteId, cursor: Cursor, sql: u64) -> Result<Swept, SinkError> {
        SqliteSink::finish(self, id, cursor, sql)
    }
    fn abandon(&mut self, id: WriteId) {
        SqliteSink::abandon(self, id)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;
    use crate::sink::interface::OpenError;

    /// One puller writes a file at a time: a second is refused before it writes, and the file is
    /// free again once the first has closed it.
    #[test]
    fn a_second_writer_of_one_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("durafetch-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.sqlite");
        let first = SqliteSink::open(&path, false).unwrap();
        assert!(matches!(SqliteSink::open(&path, false), Err(OpenError::Locked)));
        // Readers are not writers: a query beside the puller still works.
        let reader = Connection::open(&path).unwrap();
        let objects: i64 = reader.query_row("SELECT count(*) FROM durable_objects", [], |r| r.get(0)).unwrap();
        assert_eq!(objects, 0);
        drop(first);
        SqliteSink::open(&path, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
