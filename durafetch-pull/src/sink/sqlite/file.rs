//! The SQLite file: durafetch's tables (`durable_objects`, `kv`) plus what resuming needs, its
//! writer lock, and the registry index's bookkeeping (which objects are behind).

use std::path::Path;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::IndexEntry;
use rusqlite::{params, Connection, OptionalExtension};

use crate::sink::interface::{OpenError, PullTarget};
use crate::sink::plan::INDEX_HEAD_NEWER;
use crate::sink::plan::{now_ms, Writes};

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
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("durable_objects", "key_filter", "TEXT"),
    ("durable_objects", "local_sql_seq", "INTEGER"),
    ("sql_schemas", "autoincrement_counter", "INTEGER"),
];

pub struct SqliteSink {
    pub(crate) conn: Connection,
    /// Whether changes are also appended to `kv_history`.
    pub(crate) history: bool,
    /// The downloads being written.
    pub(crate) writes: Writes,
    /// The file's writer lock, held for as long as the sink lives. Declared after `conn` so that
    /// it is closed after the connection: closing any descriptor of a file drops the process's
    /// POSIX locks on it, SQLite's own included.
    _writer: Option<std::fs::File>,
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

impl SqliteSink {
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
        conn.execute_batch(crate::sink::sqlite::sql_tables::SQL_SCHEMA)?;
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
        Ok(Self { conn, history, writes: Writes::default(), _writer: writer })
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
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO durable_objects (worker_name, class_name, name, id, log_id, write_id, insert_ts, update_ts, server_url, registry_rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9) {INDEX_HEAD_NEWER}"
            ))?;
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
            // The registry's head counts key log and SQL changes together (its sequence is their sum).
            "SELECT do_id, class_name, id, name, local_max_log_id, local_max_write_id, key_filter IS ?2, coalesce(local_sql_seq, 0)
             FROM durable_objects
             WHERE server_url = ?1 AND (
                local_max_log_id IS NULL
                OR local_max_log_id < log_id
                OR (local_max_log_id = log_id AND local_max_write_id + coalesce(local_sql_seq, 0) < write_id)
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
                local_sql: r.get::<_, i64>(7)? as u64,
                compare: false,
            })
        })?;
        rows.collect()
    }
}
