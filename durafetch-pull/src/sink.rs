//! The local SQLite file: durafetch's tables (`durable_objects`, `kv`) plus what resuming needs.
//! Each object's cursor is written in the same transaction as the last of the data it covers.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ChangeValue, ExportMode, IndexEntry};
use rusqlite::{params, Connection, OptionalExtension};

use crate::session::SessionError;

type Job = Box<dyn FnOnce(&mut Sink) + Send>;

enum Request {
    Run(Job),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The database on a thread of its own, shared by the index reader and every download task.
/// Calls run there one at a time, in the order they were made: a download queues a page and
/// goes on receiving and parsing the next while SQLite writes it, and whatever a failed attempt
/// queued is written before anything its retry queues, so the two never interleave.
#[derive(Clone)]
pub struct SinkThread {
    requests: std::sync::mpsc::Sender<Request>,
}

/// A call queued on the [`SinkThread`]; [`Queued::wait`] gives its result.
pub struct Queued<T>(tokio::sync::oneshot::Receiver<rusqlite::Result<T>>);

impl<T> Queued<T> {
    pub async fn wait(self) -> Result<T, SessionError> {
        match self.0.await {
            Ok(result) => result.map_err(|e| SessionError::Sink(e.to_string())),
            Err(_) => Err(SessionError::Sink("the database thread stopped".into())),
        }
    }
}

impl SinkThread {
    pub fn start(mut sink: Sink) -> Self {
        let (requests, incoming) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(request) = incoming.recv() {
                match request {
                    Request::Run(job) => job(&mut sink),
                    Request::Close(closed) => {
                        // Closing the connection checkpoints the WAL into the file.
                        drop(sink);
                        let _ = closed.send(());
                        return;
                    }
                }
            }
        });
        SinkThread { requests }
    }

    /// Queues `f` behind the calls made before it, without waiting for it.
    pub fn queue<T: Send + 'static>(&self, f: impl FnOnce(&mut Sink) -> rusqlite::Result<T> + Send + 'static) -> Queued<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |sink| {
            let _ = done.send(f(sink));
        });
        // A send fails only after `close`; the dropped job then reports the thread stopped.
        let _ = self.requests.send(Request::Run(job));
        Queued(result)
    }

    /// Runs `f` after the calls made before it and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Sink) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SessionError> {
        self.queue(f).wait().await
    }

    /// Writes what is queued and closes the file.
    pub async fn close(self) {
        let (closed, done) = tokio::sync::oneshot::channel();
        if self.requests.send(Request::Close(closed)).is_ok() {
            let _ = done.await;
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS durable_objects (
    do_id INTEGER PRIMARY KEY,
    worker_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    name TEXT,
    id TEXT NOT NULL UNIQUE,
    last_started_at INTEGER,
    log_id INTEGER,
    write_id INTEGER,
    local_max_log_id INTEGER,
    local_max_write_id INTEGER,
    insert_ts INTEGER NOT NULL,
    update_ts INTEGER NOT NULL,
    server_url TEXT NOT NULL,
    registry_rev INTEGER,
    key_filter TEXT
);
CREATE TABLE IF NOT EXISTS kv (
    val_id INTEGER PRIMARY KEY,
    do_id INTEGER NOT NULL REFERENCES durable_objects (do_id),
    worker_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    name TEXT,
    key TEXT NOT NULL,
    val TEXT,
    read_at_log_id INTEGER,
    read_at_write_id INTEGER,
    insert_ts INTEGER NOT NULL,
    update_ts INTEGER NOT NULL,
    val_type TEXT NOT NULL DEFAULT 'json',
    val_blob BLOB,
    val_error TEXT,
    pull_gen INTEGER,
    UNIQUE (do_id, key)
);
CREATE TABLE IF NOT EXISTS kv_history (
    history_id INTEGER PRIMARY KEY,
    do_id INTEGER NOT NULL REFERENCES durable_objects (do_id),
    worker_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    name TEXT,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    val TEXT,
    val_type TEXT,
    val_blob BLOB,
    val_error TEXT,
    read_at_log_id INTEGER,
    read_at_write_id INTEGER,
    pulled_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_history_by_key ON kv_history (do_id, key, history_id);
CREATE TABLE IF NOT EXISTS durafetch_servers (
    server_url TEXT NOT NULL,
    shard INTEGER NOT NULL,
    index_rev INTEGER NOT NULL,
    PRIMARY KEY (server_url, shard)
);
CREATE TABLE IF NOT EXISTS durafetch_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// Columns added after the first release, for files an older puller created.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("durable_objects", "key_filter", "TEXT")];

/// An object that needs a download: its local cursor is behind what the registry reported, or
/// its rows were pulled under another key filter.
#[derive(Debug, Clone)]
pub struct PullTarget {
    pub do_id: i64,
    pub class: String,
    pub id: String,
    pub name: Option<String>,
    /// `None`: download a snapshot.
    pub local: Option<Cursor>,
    /// Compare each row the download sends with the file's (`--verify=full`), counting those
    /// that differ.
    pub compare: bool,
}

/// A download in progress, between `begin` and `finish`.
pub struct ObjectWrite {
    do_id: i64,
    worker: String,
    class: String,
    name: Option<String>,
    /// For a snapshot into a file that held rows of the object: the write stamp taken when it
    /// began. Finishing drops the object's rows stamped below it, which no write since the
    /// snapshot began has touched: keys the object no longer holds. A row written after the
    /// snapshot began, by it or by anything else, is never dropped. Into a file that held no row
    /// of the object there is nothing older to drop, and the sweep (a scan of its rows) is skipped.
    sweep_below: Option<i64>,
    read_at: Cursor,
    key_filter: String,
    history: bool,
    /// Count the rows that differ from the file's before writing them.
    compare: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyStats {
    pub written: u64,
    pub deleted: u64,
    /// With `compare`: rows written that the file lacked or held with another value.
    pub differed: u64,
}

pub struct Sink {
    conn: Connection,
    /// Whether changes are also appended to `kv_history`.
    history: bool,
    /// The file's writer lock, held for as long as the sink lives. Declared after `conn` so that
    /// it is closed after the connection: closing any descriptor of a file drops the process's
    /// POSIX locks on it, SQLite's own included.
    _writer: Option<std::fs::File>,
}

/// Why the file could not be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "another durafetch-pull is writing to this file; one puller writes a file at a time (let it finish, or give this run its own --db)"
    )]
    Locked,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Takes the file's writer lock (an advisory `flock`, which SQLite's own `fcntl` locks do not
/// touch): a second puller on the same file is refused at once, before it writes anything, so
/// two pulls can never interleave their writes to one object. Readers are not affected.
fn lock_writer(path: &Path) -> Result<Option<std::fs::File>, OpenError> {
    if path == Path::new(":memory:") {
        return Ok(None);
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Sink {
    pub fn open(path: &Path, history: bool) -> Result<Self, OpenError> {
        let writer = lock_writer(path)?;
        let conn = Connection::open(path)?;
        // Pages of 16 KiB for a new file (an existing file keeps its own; WAL mode fixes it):
        // SQLite writes the WAL and checkpoints a page per system call, and with 4 KiB pages
        // those calls were the larger part of a pull's time (a 100 MB pull: 0.52 s against 0.57 s).
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The schema declares its foreign keys for readers. The puller writes every parent row
        // before its children, and checking costs a lookup per row written.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        for (table, column, kind) in ADDED_COLUMNS {
            let present: bool =
                conn.query_row(&format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"), [column], |r| r.get(0))?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
            }
        }
        // Files written before rows carried write stamps counted snapshot generations instead;
        // the stamps go on above the highest one in use.
        conn.execute(
            "INSERT INTO durafetch_meta (name, value)
             SELECT 'write_stamp', coalesce((SELECT max(pull_gen) FROM kv), 0)
             WHERE NOT EXISTS (SELECT 1 FROM durafetch_meta WHERE name = 'write_stamp')",
            [],
        )?;
        Ok(Self { conn, history, _writer: writer })
    }

    pub fn index_rev(&self, server_url: &str, shard: u32) -> rusqlite::Result<u64> {
        let rev: Option<i64> = self
            .conn
            .query_row("SELECT index_rev FROM durafetch_servers WHERE server_url = ?1 AND shard = ?2", params![server_url, shard], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(rev.unwrap_or(0) as u64)
    }

    /// Records a page of the registry index: the registry's head for each object. A head older
    /// than the one held (a row left in another shard after a reshard) changes nothing.
    pub fn record_index_page(&mut self, server_url: &str, worker: &str, entries: &[IndexEntry]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO durable_objects (worker_name, class_name, name, id, log_id, write_id, insert_ts, update_ts, server_url, registry_rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET
                    class_name = excluded.class_name, name = coalesce(excluded.name, durable_objects.name),
                    log_id = excluded.log_id, write_id = excluded.write_id, update_ts = excluded.update_ts,
                    server_url = excluded.server_url, registry_rev = excluded.registry_rev
                 WHERE excluded.log_id > durable_objects.log_id
                    OR (excluded.log_id = durable_objects.log_id AND excluded.write_id > durable_objects.write_id)
                    OR durable_objects.log_id IS NULL",
            )?;
            let now = now_ms();
            for e in entries {
                upsert.execute(params![worker, e.class, e.name, e.id, e.head.epoch, e.head.seq as i64, now, server_url, e.rev as i64])?;
            }
        }
        tx.commit()
    }

    /// Saves how far a shard of the index of `server_url` has been read, once every page is recorded.
    pub fn save_index_rev(&mut self, server_url: &str, shard: u32, rev: u64) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO durafetch_servers (server_url, shard, index_rev) VALUES (?1, ?2, ?3)
             ON CONFLICT (server_url, shard) DO UPDATE SET index_rev = excluded.index_rev",
            params![server_url, shard, rev as i64],
        )?;
        Ok(())
    }

    /// Objects of `server_url` whose local copy is behind the registry (or was never pulled, or
    /// was pulled under another key filter than `key_filter`, which makes it start over); with
    /// `every`, all of the server's objects.
    pub fn targets(&self, server_url: &str, key_filter: &str, every: bool) -> rusqlite::Result<Vec<PullTarget>> {
        let mut stmt = self.conn.prepare(
            "SELECT do_id, class_name, id, name, local_max_log_id, local_max_write_id, key_filter IS ?2
             FROM durable_objects
             WHERE server_url = ?1 AND (
                local_max_log_id IS NULL
                OR local_max_log_id < log_id
                OR (local_max_log_id = log_id AND local_max_write_id < write_id)
                OR key_filter IS NOT ?2
                OR ?3)
             ORDER BY do_id",
        )?;
        let rows = stmt.query_map(params![server_url, key_filter, every], |r| {
            let epoch: Option<i64> = r.get(4)?;
            let seq: Option<i64> = r.get(5)?;
            let same_filter: bool = r.get(6)?;
            Ok(PullTarget {
                do_id: r.get(0)?,
                class: r.get(1)?,
                id: r.get(2)?,
                name: r.get(3)?,
                local: epoch.zip(seq).filter(|_| same_filter).map(|(e, s)| Cursor::new(e as u32, s as u64)),
                compare: false,
            })
        })?;
        rows.collect()
    }

    pub fn begin(
        &mut self,
        do_id: i64,
        mode: ExportMode,
        read_at: Cursor,
        key_filter: &str,
        compare: bool,
    ) -> rusqlite::Result<ObjectWrite> {
        let (worker, class, name) =
            self.conn.query_row("SELECT worker_name, class_name, name FROM durable_objects WHERE do_id = ?1", [do_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        let held_rows: bool = match mode {
            ExportMode::Snapshot => self.conn.query_row("SELECT EXISTS (SELECT 1 FROM kv WHERE do_id = ?1)", [do_id], |r| r.get(0))?,
            ExportMode::Changes => false,
        };
        let sweep_below = if held_rows { Some(next_write_stamp(&self.conn)?) } else { None };
        self.conn.execute("UPDATE durable_objects SET last_started_at = ?2 WHERE do_id = ?1", params![do_id, now_ms()])?;
        Ok(ObjectWrite {
            do_id,
            worker,
            class,
            name,
            sweep_below,
            read_at,
            key_filter: key_filter.to_owned(),
            history: self.history,
            compare,
        })
    }

    /// Applies a page of changes in one transaction, its rows stamped with a new write stamp.
    pub fn apply(&mut self, write: &ObjectWrite, changes: &[Change]) -> rusqlite::Result<ApplyStats> {
        let tx = self.conn.transaction()?;
        let stamp = next_write_stamp(&tx)?;
        let stats = apply_changes(&tx, write, stamp, changes)?;
        tx.commit()?;
        Ok(stats)
    }

    /// Ends a download: sweeps what a snapshot did not send and saves the cursor, together.
    pub fn finish(&mut self, write: &ObjectWrite, cursor: Cursor) -> rusqlite::Result<u64> {
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
            tx.execute(&format!("DELETE {UNSEEN}"), params![write.do_id, sweep_below])? as u64
        } else {
            0
        };
        tx.execute(
            "UPDATE durable_objects SET local_max_log_id = ?2, local_max_write_id = ?3, update_ts = ?4, key_filter = ?5 WHERE do_id = ?1",
            params![write.do_id, cursor.epoch, cursor.seq as i64, now, write.key_filter],
        )?;
        tx.commit()?;
        Ok(swept)
    }
}

/// The next write stamp of the file: higher than every stamp taken before, in this process or
/// another, since taking one writes the file.
fn next_write_stamp(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("UPDATE durafetch_meta SET value = value + 1 WHERE name = 'write_stamp' RETURNING value", [], |r| r.get(0))
}

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
        let (val, kind, blob, error): (Option<String>, &str, Option<&[u8]>, Option<&str>) = match &change.value {
            ChangeValue::Deleted => {
                let deleted = delete.execute(params![write.do_id, change.key])? as u64;
                if write.history && deleted > 0 {
                    history.execute(params![
                        write.do_id,
                        write.worker,
                        write.class,
                        write.name,
                        change.key,
                        true,
                        None::<String>,
                        None::<String>,
                        None::<Vec<u8>>,
                        None::<String>,
                        write.read_at.epoch,
                        write.read_at.seq as i64,
                        now
                    ])?;
                }
                stats.deleted += deleted;
                continue;
            }
            ChangeValue::Json(v) => (Some(json_text(v)), "json", None, None),
            ChangeValue::Bytes(b) => (None, "bytes", Some(b), None),
            ChangeValue::Tagged(t) => (Some(t.to_string()), "tagged", None, None),
            ChangeValue::Unsupported(e) => (None, "error", None, Some(e)),
        };
        if write.compare && !same.query_row(params![write.do_id, change.key, val, kind, blob, error], |r| r.get::<_, bool>(0))? {
            stats.differed += 1;
        }
        if write.history {
            history.execute(params![
                write.do_id,
                write.worker,
                write.class,
                write.name,
                change.key,
                false,
                val,
                kind,
                blob,
                error,
                write.read_at.epoch,
                write.read_at.seq as i64,
                now
            ])?;
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

/// The JSON text of a value, as serde_json writes it: the file's one spelling of every value.
/// A string value with nothing to escape, the common case and the large one, is copied between
/// quotes after one pass that the compiler vectorises; serde_json's writer checks each byte in
/// turn, which was 15% of a pull of 100 KiB strings.
fn json_text(value: &serde_json::Value) -> String {
    if let serde_json::Value::String(s) = value {
        let plain = s.bytes().fold(true, |plain, b| plain & (b >= 0x20 && b != b'"' && b != b'\\'));
        if plain {
            let mut text = String::with_capacity(s.len() + 2);
            text.push('"');
            text.push_str(s);
            text.push('"');
            return text;
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str) -> Change {
        Change { key: key.into(), value: ChangeValue::Json(serde_json::json!(key)) }
    }

    fn keys(sink: &Sink, do_id: i64) -> Vec<String> {
        let mut stmt = sink.conn.prepare("SELECT key FROM kv WHERE do_id = ?1 ORDER BY key").unwrap();
        stmt.query_map([do_id], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// A snapshot leaves exactly the keys it sent, whether the file held none of the object's
    /// rows (no sweep needed), rows of an earlier pull, or rows of an attempt that failed midway.
    #[test]
    fn a_snapshot_leaves_exactly_the_keys_it_sent() {
        let mut sink = Sink::open(Path::new(":memory:"), false).unwrap();
        let entry = IndexEntry { class: "C".into(), id: "00ff".into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
        sink.record_index_page("ws://s", "w", &[entry]).unwrap();
        let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
        let snapshot = |sink: &mut Sink, sent: &[&str], finished: bool| {
            let write = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
            sink.apply(&write, &sent.iter().map(|k| change(k)).collect::<Vec<_>>()).unwrap();
            finished.then(|| sink.finish(&write, Cursor::new(1, 9)).unwrap())
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
        let mut sink = Sink::open(Path::new(":memory:"), false).unwrap();
        let entry = IndexEntry { class: "C".into(), id: "00ff".into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
        sink.record_index_page("ws://s", "w", &[entry]).unwrap();
        let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
        let page = |keys: &[&str]| keys.iter().map(|k| change(k)).collect::<Vec<_>>();
        // The file already holds an old row the object no longer has: a sweep must drop it.
        let old = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(&old, &page(&["gone"])).unwrap();
        sink.finish(&old, Cursor::new(1, 1)).unwrap();

        let first = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(&first, &page(&["a", "b"])).unwrap();
        let second = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(&second, &page(&["a", "b", "c"])).unwrap();
        sink.apply(&first, &page(&["c"])).unwrap();
        sink.finish(&second, Cursor::new(1, 9)).unwrap();
        assert_eq!(keys(&sink, do_id), ["a", "b", "c"]);
        sink.finish(&first, Cursor::new(1, 9)).unwrap();
        assert_eq!(keys(&sink, do_id), ["a", "b", "c"]);
    }

    /// A compared snapshot (`--verify=full`) counts the rows the file lacked or held with
    /// another value, and sweeps the rows the object no longer holds.
    #[test]
    fn a_compared_snapshot_counts_what_it_repairs() {
        let mut sink = Sink::open(Path::new(":memory:"), false).unwrap();
        let entry = IndexEntry { class: "C".into(), id: "00ff".into(), name: None, head: Cursor::new(1, 9), rev: 1, changed_at: 0 };
        sink.record_index_page("ws://s", "w", &[entry]).unwrap();
        let do_id = sink.targets("ws://s", "", false).unwrap()[0].do_id;
        let first = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", false).unwrap();
        sink.apply(&first, &["same", "stale", "extra"].map(change)).unwrap();
        sink.finish(&first, Cursor::new(1, 9)).unwrap();

        let verify = sink.begin(do_id, ExportMode::Snapshot, Cursor::new(1, 0), "", true).unwrap();
        let stale = Change { key: "stale".into(), value: ChangeValue::Json(serde_json::json!(2)) };
        let stats = sink.apply(&verify, &[change("same"), stale, change("missing")]).unwrap();
        assert_eq!((stats.written, stats.differed), (3, 2));
        assert_eq!(sink.finish(&verify, Cursor::new(1, 9)).unwrap(), 1, "the extra row is swept");
        assert_eq!(keys(&sink, do_id), ["missing", "same", "stale"]);
    }

    /// One puller writes a file at a time: a second is refused before it writes, and the file is
    /// free again once the first has closed it.
    #[test]
    fn a_second_writer_of_one_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("durafetch-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.sqlite");
        let first = Sink::open(&path, false).unwrap();
        assert!(matches!(Sink::open(&path, false), Err(OpenError::Locked)));
        // Readers are not writers: a query beside the puller still works.
        let reader = Connection::open(&path).unwrap();
        let objects: i64 = reader.query_row("SELECT count(*) FROM durable_objects", [], |r| r.get(0)).unwrap();
        assert_eq!(objects, 0);
        drop(first);
        Sink::open(&path, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_text_spells_values_as_serde_json_does() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = ['a', 'é', '"', '\\', '\n', '\u{1}', '\u{7f}', '\u{2028}', '😀', '/', ' '];
        for len in 0..200 {
            let s: String = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            let value = serde_json::Value::String(s);
            assert_eq!(json_text(&value), value.to_string(), "{value:?}");
        }
        let plain = serde_json::Value::String("x".repeat(100 * 1024));
        assert_eq!(json_text(&plain), plain.to_string());
        for other in [serde_json::json!(1.5), serde_json::json!({"b": [1, "\""], "a": null})] {
            assert_eq!(json_text(&other), other.to_string());
        }
    }
}
