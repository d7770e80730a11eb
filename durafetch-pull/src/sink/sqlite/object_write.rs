//! Writing one object's download into the file: a snapshot or a page of changes at a time, each
//! page in one transaction stamped with a new write stamp, and the cursor saved in the same
//! transaction as the sweep that ends a snapshot.

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, SqlPage};
use rusqlite::{params, Connection};

use crate::sink::interface::SinkError;
use crate::sink::interface::{ApplyStats, Swept, WriteId};
use crate::sink::plan::{now_ms, ObjectWrite, Reading, ValueColumns};
use crate::sink::sqlite::file::SqliteSink;
use crate::sink::sqlite::sql_tables::{apply_sql_page, drop_sql_table, holds_sql_rows, save_schema, sweep_sql_rows};

impl SqliteSink {
    /// Starts writing a download of the object `do_id`; its state stays here, named by the id.
    pub fn begin(&mut self, do_id: i64, mode: ExportMode, read_at: Cursor, key_filter: &str, compare: bool) -> Result<WriteId, SinkError> {
        let (worker, class, name): (String, String, Option<String>) =
            self.conn.query_row("SELECT worker_name, class_name, name FROM durable_objects WHERE do_id = ?1", [do_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let held_rows: bool = match mode {
            ExportMode::Snapshot => {
                self.conn.query_row("SELECT EXISTS (SELECT 1 FROM kv WHERE do_id = ?1)", [do_id], |r| r.get(0))?
                    || holds_sql_rows(&self.conn, &worker, &class, do_id)?
            }
            ExportMode::Changes => false,
        };
        let sweep_below = if held_rows { Some(next_write_stamp(&self.conn)?) } else { None };
        self.conn.execute("UPDATE durable_objects SET last_started_at = ?2 WHERE do_id = ?1", params![do_id, now_ms()])?;
        let reading = Reading { mode, read_at, key_filter, compare };
        Ok(self.writes.start(ObjectWrite::new(do_id, (worker, class, name), reading, sweep_below, self.history)))
    }

    /// Applies a page of changes in one transaction, its rows stamped with a new write stamp.
    pub fn apply(&mut self, id: WriteId, changes: &[Change]) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, stamp| apply_changes(tx, write, stamp, changes))
    }

    /// Applies a page of one SQL table's rows in one transaction, stamped as key pages are.
    pub fn apply_sql(&mut self, id: WriteId, page: &SqlPage) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, stamp| apply_sql_page(tx, write, stamp, page))
    }

    /// Keeps the schema of one of the object's SQL tables, and its AUTOINCREMENT counter.
    pub fn save_sql_schema(
        &mut self,
        id: WriteId,
        table: &str,
        statements: &[String],
        autoincrement: Option<i64>,
    ) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, stamp| save_schema(tx, write, stamp, table, statements, autoincrement))
    }

    /// Drops the object's rows of an SQL table it no longer has.
    pub fn drop_sql_table(&mut self, id: WriteId, table: &str) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |tx, write, _| drop_sql_table(tx, write, table))
    }

    /// Runs `write_rows` for the download `id` in one transaction, with a new write stamp.
    fn write_page(
        &mut self,
        id: WriteId,
        write_rows: impl FnOnce(&rusqlite::Transaction<'_>, &ObjectWrite, i64) -> rusqlite::Result<ApplyStats>,
    ) -> Result<ApplyStats, SinkError> {
        let write = self.writes.get(id)?;
        let tx = self.conn.transaction()?;
        let stamp = next_write_stamp(&tx)?;
        let stats = write_rows(&tx, write, stamp)?;
        tx.commit()?;
        Ok(stats)
    }

    /// Ends a download: sweeps what a snapshot did not send and saves the cursor (the key log's
    /// and the SQL one), together.
    pub fn finish(&mut self, id: WriteId, cursor: Cursor, sql: u64) -> Result<Swept, SinkError> {
        let write = self.writes.end(id)?;
        let tx = self.conn.transaction()?;
        let now = now_ms();
        let swept = if let Some(sweep_below) = write.sweep_below {
            const UNSEEN: &str = "FROM kv WHERE do_id = ?1 AND (pull_gen IS NULL OR pull_gen < ?2)";
            if write.history {
                tx.execute(
                        &format!(
                            "INSERT INTO kv_history (do_id, worker_name, class_name, name, key, deleted, read_at_log_id, read_at_write_id, pulled_at)
                             SELECT do_id, worker_name, class_name, name, key, 1, ?3, ?4, ?5 {UNSEEN}"
                        ),
                        params![write.do_id, sweep_below, write.read_at.epoch, write.read_at.seq as i64, now],
                    )?;
            }
            let keys = tx.execute(&format!("DELETE {UNSEEN}"), params![write.do_id, sweep_below])? as u64;
            Swept { keys, rows: sweep_sql_rows(&tx, &write, sweep_below)? }
        } else {
            Swept::default()
        };
        tx.execute(
            "UPDATE durable_objects SET local_max_log_id = ?2, local_max_write_id = ?3, local_sql_seq = ?6, update_ts = ?4, key_filter = ?5
             WHERE do_id = ?1",
            params![write.do_id, cursor.epoch, cursor.seq as i64, now, write.key_filter, sql as i64],
        )?;
        tx.commit()?;
        Ok(swept)
    }

    /// Drops the state of a download that ended without finishing: its cursor stays as it was.
    pub fn abandon(&mut self, id: WriteId) {
        let _ = self.writes.end(id);
    }
}

/// The next write stamp of the file: higher than every stamp taken before, in this process or
/// another, since taking one writes the file.
fn next_write_stamp(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("UPDATE durafetch_meta SET value = value + 1 WHERE name = 'write_stamp' RETURNING value", [], |r| r.get(0))
}

/// A value's `val`, `val_type`, `val_blob` and `val_error` columns.
type HistoryValue<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a [u8]>, Option<&'a str>);

fn apply_changes(tx: &rusqlite::Transaction<'_>, write: &ObjectWrite, stamp: i64, changes: &[Change]) -> rusqlite::Result<ApplyStats> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO kv (do_id, worker_name, class_name, name, key, val, val_type, val_blob, val_error,
                         read_at_log_id, read_at_write_id, pull_gen, insert_ts, update_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)
         ON CONFLICT (do_id, key) DO UPDATE SET
            val = excluded.val, val_type = excluded.val_type, val_blob = excluded.val_blob,
            val_error = excluded.val_error, read_at_log_id = excluded.read_at_log_id,
            read_at_write_id = excluded.read_at_write_id, pull_gen = excluded.pull_gen,
            update_ts = excluded.update_ts",
    )?;
    let mut delete = tx.prepare_cached("DELETE FROM kv WHERE do_id = ?1 AND key = ?2")?;
    // History rows only for real changes: a snapshot re-sends unchanged keys, and a deletion of
    // a key the file never held is no event.
    let mut history = tx.prepare_cached(
        "INSERT INTO kv_history (do_id, worker_name, class_name, name, key, deleted, val, val_type, val_blob, val_error,
                                 read_at_log_id, read_at_write_id, pulled_at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13
         WHERE ?6 = 1 OR NOT EXISTS (SELECT 1 FROM kv WHERE do_id = ?1 AND key = ?5
            AND val IS ?7 AND val_type IS ?8 AND val_blob IS ?9 AND val_error IS ?10)",
    )?;
    let mut same = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM kv WHERE do_id = ?1 AND key = ?2
            AND val IS ?3 AND val_type IS ?4 AND val_blob IS ?5 AND val_error IS ?6)",
    )?;
    let now = now_ms();
    // One history row: the change to `key` (`deleted`, or its value's four columns).
    let note_history = |history: &mut rusqlite::CachedStatement<'_>, key: &str, deleted: bool, value: HistoryValue<'_>| {
        let (val, kind, blob, error) = value;
        let read_at = (write.read_at.epoch, write.read_at.seq as i64);
        history.execute(params![
            write.do_id,
            write.worker,
            write.class,
            write.name,
            key,
            deleted,
            val,
            kind,
            blob,
            error,
            read_at.0,
            read_at.1,
            now
        ])
    };
    // What every row of the page shares is bound once; a row binds only its own five values
    // (SQLite keeps bindings from one execution to the next).
    for (index, shared) in [
        (1, &write.do_id as &dyn rusqlite::ToSql),
        (2, &write.worker),
        (3, &write.class),
        (4, &write.name),
        (10, &write.read_at.epoch),
        (11, &(write.read_at.seq as i64)),
        (12, &stamp),
        (13, &now),
    ] {
        upsert.raw_bind_parameter(index, shared)?;
    }
    let mut stats = ApplyStats::default();
    for change in changes {
        let Some(ValueColumns { val, kind, blob, error }) = ValueColumns::of(&change.value) else {
            let deleted = delete.execute(params![write.do_id, change.key])? as u64;
            if write.history && deleted > 0 {
                note_history(&mut history, &change.key, true, (None, None, None, None))?;
            }
            stats.deleted += deleted;
            continue;
        };
        if write.compare && !same.query_row(params![write.do_id, change.key, val, kind, blob, error], |r| r.get::<_, bool>(0))? {
            stats.differed += 1;
        }
        if write.history {
            note_history(&mut history, &change.key, false, (val.as_deref(), Some(kind), blob, error))?;
        }
        upsert.raw_bind_parameter(5, &change.key)?;
        upsert.raw_bind_parameter(6, val)?;
        upsert.raw_bind_parameter(7, kind)?;
        upsert.raw_bind_parameter(8, blob)?;
        upsert.raw_bind_parameter(9, error)?;
        upsert.raw_execute()?;
        stats.written += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use durafetch_sdk::core::protocol::ChangeValue;

    use super::*;
    use durafetch_sdk::core::protocol::IndexEntry;
    use std::path::Path;

    fn change(key: &str) -> Change {
        Change { key: key.into(), value: ChangeValue::Json(serde_json::json!(key)) }
    }

    /// A file in memory that knows one object, and that object's `do_id`.
    fn one_object() -> (SqliteSink, i64) {
        let mut sink = SqliteSink::open(Path::new(":memory:"), false).unwrap();
        let entry = IndexEntry { class: "C".into(), id: "00ff".into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
        sink.record_index_page("ws://s", "w", &[entry]).unwrap();
        let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
        (sink, do_id)
    }

    fn keys(sink: &SqliteSink, do_id: i64) -> Vec<String> {
        let mut stmt = sink.conn.prepare("SELECT key FROM kv WHERE do_id = ?1 ORDER BY key").unwrap();
        stmt.query_map([do_id], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// A snapshot leaves exactly the keys it sent, whether the file held none of the object's
    /// rows (no sweep needed), rows of an earlier pull, or rows of an attempt that failed midway.
    #[test]
    fn a_snapshot_leaves_exactly_the_keys_it_sent() {
        let (mut sink, do_id) = one_object();
        let snapshot = |sink: &mut SqliteSink, sent: &[&str], finished: bool| {
            let write = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
            sink.apply(write, &sent.iter().map(|k| change(k)).collect::<Vec<_>>()).unwrap();
            finished.then(|| sink.finish(write, Cursor::new(1, 9), 0).unwrap().keys)
        };

        assert_eq!(snapshot(&mut sink, &["a", "b", "c"], true), Some(0));
        assert_eq!(keys(&sink, do_id), ["a", "b", "c"]);
        assert_eq!(snapshot(&mut sink, &["a", "c"], true), Some(1));
        assert_eq!(keys(&sink, do_id), ["a", "c"]);
        // An attempt cut off after its first page, then the retry, which sends less.
        snapshot(&mut sink, &["a", "c", "d"], false);
        assert_eq!(snapshot(&mut sink, &["d"], true), Some(2));
        assert_eq!(keys(&sink, do_id), ["d"]);
    }

    /// Two snapshots of one object whose writes interleave (two pullers on one file, were the
    /// writer lock bypassed) leave every key: a sweep drops only rows no write since its own
    /// begin has touched, never the other download's.
    #[test]
    fn interleaved_snapshots_of_one_object_lose_no_row() {
        let (mut sink, do_id) = one_object();
        let page = |keys: &[&str]| keys.iter().map(|k| change(k)).collect::<Vec<_>>();
        // The file already holds an old row the object no longer has: a sweep must drop it.
        let old = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(old, &page(&["gone"])).unwrap();
        sink.finish(old, Cursor::new(1, 1), 0).unwrap();

        let first = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(first, &page(&["a", "b"])).unwrap();
        let second = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(second, &page(&["a", "b", "c"])).unwrap();
        sink.apply(first, &page(&["c"])).unwrap();
        sink.finish(second, Cursor::new(1, 9), 0).unwrap();
        assert_eq!(keys(&sink, do_id), ["a", "b", "c"]);
        sink.finish(first, Cursor::new(1, 9), 0).unwrap();
        assert_eq!(keys(&sink, do_id), ["a", "b", "c"]);
    }

    /// A compared snapshot (`--verify=full`) counts the rows the file lacked or held with
    /// another value, and sweeps the rows the object no longer holds.
    #[test]
    fn a_compared_snapshot_counts_what_it_repairs() {
        let (mut sink, do_id) = one_object();
        let first = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(first, &["same", "stale", "extra"].map(change)).unwrap();
        sink.finish(first, Cursor::new(1, 9), 0).unwrap();

        let verify = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", true).unwrap();
        let stale = Change { key: "stale".into(), value: ChangeValue::Json(serde_json::json!(2)) };
        let stats = sink.apply(verify, &[change("same"), stale, change("missing")]).unwrap();
        assert_eq!((stats.written, stats.differed), (3, 2));
        assert_eq!(sink.finish(verify, Cursor::new(1, 9), 0).unwrap(), Swept { keys: 1, rows: 0 }, "the extra key is swept");
        assert_eq!(keys(&sink, do_id), ["missing", "same", "stale"]);
    }
}
