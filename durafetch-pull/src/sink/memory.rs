//! A database in memory, for the pull logic's unit tests: the `Sink` contract kept in maps, so
//! that downloads, retries, filters and cursors are tested without SQLite or PostgreSQL. It
//! keeps what the contract promises (rows by object, write stamps and the snapshot's sweep,
//! cursors saved when a download finishes, heads replaced only by newer ones, each change of a
//! page applied in turn as the file applies them) and no history, nor a writer lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ChangeValue, ExportMode, IndexEntry, SqlPage, SqlValue};

use crate::sink::interface::{ApplyStats, OpenError, PullTarget, Sink, SinkError, Swept, WriteId};
use crate::sink::plan::{ObjectWrite, Reading, ValueColumns, Writes};

/// An object as the index recorded it, and how far it was pulled.
#[derive(Debug, Clone)]
struct Object {
    do_id: i64,
    server_url: String,
    worker: String,
    class: String,
    name: Option<String>,
    head: Cursor,
    local: Option<Cursor>,
    local_sql: u64,
    key_filter: Option<String>,
}

/// A table's statements and AUTOINCREMENT counter.
type Schema = (Vec<String>, Option<i64>);

#[derive(Default)]
struct State {
    /// By the object's id.
    objects: BTreeMap<String, Object>,
    index_revs: HashMap<(String, u32), u64>,
    /// (do_id, key) → the value and the stamp of the page that wrote it.
    keys: BTreeMap<(i64, String), (ChangeValue, i64)>,
    /// (do_id, table, row key) → the row's values and its stamp.
    rows: BTreeMap<(i64, String, String), (Vec<SqlValue>, i64)>,
    /// (do_id, table) → the table's schema, and its stamp.
    schemas: BTreeMap<(i64, String), (Schema, i64)>,
    stamp: i64,
}

/// The database: each sink [`MemoryDatabase::opener`] opens writes into the same maps, and the test reads
/// them after the pull.
#[derive(Clone, Default)]
pub(crate) struct MemoryDatabase(Arc<Mutex<State>>);

impl MemoryDatabase {
    /// Opens a sink on this database, as [`crate::sink::open`] opens a file.
    pub(crate) fn opener(&self) -> impl FnOnce() -> Result<Box<dyn Sink>, OpenError> + Send + 'static {
        let db = self.clone();
        move || Ok(Box::new(MemorySink { db, writes: Writes::default() }) as Box<dyn Sink>)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys of `worker`'s objects: (object name, key) → the value's JSON text, as `kv.val`
    /// holds it.
    pub(crate) fn live(&self, worker: &str) -> BTreeMap<(String, String), String> {
        let state = self.state();
        let names: HashMap<i64, String> =
            state.objects.values().filter(|o| o.worker == worker).map(|o| (o.do_id, o.name.clone().unwrap_or_default())).collect();
        state
            .keys
            .iter()
            .filter_map(|((do_id, key), (value, _))| Some(((names.get(do_id)?.clone(), key.clone()), ValueColumns::of(value)?.val?)))
            .collect()
    }

    /// The cursor saved for the object `id`.
    pub(crate) fn cursor(&self, id: &str) -> Option<Cursor> {
        self.state().objects.get(id).and_then(|o| o.local)
    }
}

pub(crate) struct MemorySink {
    db: MemoryDatabase,
    writes: Writes,
}

impl MemorySink {
    /// Runs `write_rows` for the download `id` with a new write stamp, as one page.
    fn write_page(
        &mut self,
        id: WriteId,
        write_rows: impl FnOnce(&mut State, &ObjectWrite, i64) -> ApplyStats,
    ) -> Result<ApplyStats, SinkError> {
        let write = self.writes.get(id)?;
        let mut state = self.db.state();
        state.stamp += 1;
        let stamp = state.stamp;
        Ok(write_rows(&mut state, write, stamp))
    }
}

impl Sink for MemorySink {
    fn index_rev(&mut self, server_url: &str, shard: u32) -> Result<u64, SinkError> {
        Ok(self.db.state().index_revs.get(&(server_url.to_owned(), shard)).copied().unwrap_or(0))
    }

    fn record_index_page(&mut self, server_url: &str, worker: &str, entries: &[IndexEntry]) -> Result<(), SinkError> {
        let mut state = self.db.state();
        for e in entries {
            let do_id = state.objects.len() as i64 + 1;
            let recorded = Object {
                do_id,
                server_url: server_url.to_owned(),
                worker: worker.to_owned(),
                class: e.class.clone(),
                name: e.name.clone(),
                head: e.head,
                local: None,
                local_sql: 0,
                key_filter: None,
            };
            match state.objects.get_mut(&e.id) {
                None => {
                    state.objects.insert(e.id.clone(), recorded);
                }
                // A head no newer than the one held changes nothing (a row left in another
                // registry shard after a reshard).
                Some(held) if (e.head.epoch, e.head.seq) > (held.head.epoch, held.head.seq) => {
                    // As `INDEX_HEAD_NEWER`: the worker stays the one that first recorded it.
                    held.class = recorded.class;
                    held.name = recorded.name.or(held.name.take());
                    held.head = recorded.head;
                    held.server_url = recorded.server_url;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn save_index_rev(&mut self, server_url: &str, shard: u32, rev: u64) -> Result<(), SinkError> {
        self.db.state().index_revs.insert((server_url.to_owned(), shard), rev);
        Ok(())
    }

    fn targets(&mut self, server_url: &str, key_filter: &str, every: bool) -> Result<Vec<PullTarget>, SinkError> {
        let state = self.db.state();
        let mut targets: Vec<PullTarget> = state
            .objects
            .iter()
            .filter(|(_, o)| o.server_url == server_url)
            .filter_map(|(id, o)| {
                let same_filter = o.key_filter.as_deref() == Some(key_filter);
                // The registry's head counts key log and SQL changes together.
                let behind = match o.local {
                    None => true,
                    Some(local) => (local.epoch, local.seq + o.local_sql) < (o.head.epoch, o.head.seq),
                };
                (behind || !same_filter || every).then(|| PullTarget {
                    do_id: o.do_id,
                    class: o.class.clone(),
                    id: id.clone(),
                    name: o.name.clone(),
                    local: o.local.filter(|_| same_filter),
                    local_sql: o.local_sql,
                    compare: false,
                })
            })
            .collect();
        targets.sort_by_key(|t| t.do_id);
        Ok(targets)
    }

    fn begin(&mut self, do_id: i64, mode: ExportMode, read_at: Cursor, key_filter: &str, compare: bool) -> Result<WriteId, SinkError> {
        let mut state = self.db.state();
        let object = state.objects.values().find(|o| o.do_id == do_id).cloned().ok_or(SinkError::Abandoned)?;
        let held_rows =
            mode == ExportMode::Snapshot && (state.keys.keys().any(|(d, _)| *d == do_id) || state.rows.keys().any(|(d, _, _)| *d == do_id));
        let sweep_below = held_rows.then(|| {
            state.stamp += 1;
            state.stamp
        });
        drop(state);
        let reading = Reading { mode, read_at, key_filter, compare };
        Ok(self.writes.start(ObjectWrite::new(do_id, (object.worker, object.class, object.name), reading, sweep_below, false)))
    }

    fn apply(&mut self, id: WriteId, changes: &[Change]) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |state, write, stamp| {
            let mut stats = ApplyStats::default();
            for change in changes {
                let key = (write.do_id, change.key.clone());
                if matches!(change.value, ChangeValue::Deleted) {
                    stats.deleted += u64::from(state.keys.remove(&key).is_some());
                    continue;
                }
                let held = state.keys.insert(key, (change.value.clone(), stamp));
                stats.differed += u64::from(write.compare && held.is_none_or(|(v, _)| v != change.value));
                stats.written += 1;
            }
            stats
        })
    }

    fn apply_sql(&mut self, id: WriteId, page: &SqlPage) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |state, write, stamp| {
            let mut stats = ApplyStats::default();
            for row in &page.rows {
                let key = (write.do_id, page.table.clone(), row.k.clone());
                match &row.v {
                    None => stats.deleted += u64::from(state.rows.remove(&key).is_some()),
                    Some(values) => {
                        let held = state.rows.insert(key, (values.clone(), stamp));
                        stats.differed += u64::from(write.compare && held.is_none_or(|(v, _)| v != *values));
                        stats.written += 1;
                    }
                }
            }
            stats
        })
    }

    fn save_sql_schema(
        &mut self,
        id: WriteId,
        table: &str,
        statements: &[String],
        autoincrement: Option<i64>,
    ) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |state, write, stamp| {
            state.schemas.insert((write.do_id, table.to_owned()), ((statements.to_vec(), autoincrement), stamp));
            ApplyStats::default()
        })
    }

    fn drop_sql_table(&mut self, id: WriteId, table: &str) -> Result<ApplyStats, SinkError> {
        self.write_page(id, |state, write, _| {
            let before = state.rows.len();
            state.rows.retain(|(d, t, _), _| !(*d == write.do_id && t == table));
            state.schemas.remove(&(write.do_id, table.to_owned()));
            ApplyStats { deleted: (before - state.rows.len()) as u64, ..ApplyStats::default() }
        })
    }

    fn finish(&mut self, id: WriteId, cursor: Cursor, sql: u64) -> Result<Swept, SinkError> {
        let write = self.writes.end(id)?;
        let mut state = self.db.state();
        let mut swept = Swept::default();
        if let Some(below) = write.sweep_below {
            let (keys, rows) = (state.keys.len(), state.rows.len());
            state.keys.retain(|(d, _), (_, stamp)| *d != write.do_id || *stamp >= below);
            state.rows.retain(|(d, _, _), (_, stamp)| *d != write.do_id || *stamp >= below);
            state.schemas.retain(|(d, _), (_, stamp)| *d != write.do_id || *stamp >= below);
            swept = Swept { keys: (keys - state.keys.len()) as u64, rows: (rows - state.rows.len()) as u64 };
        }
        let object = state.objects.values_mut().find(|o| o.do_id == write.do_id).ok_or(SinkError::Abandoned)?;
        object.local = Some(cursor);
        object.local_sql = sql;
        object.key_filter = Some(write.key_filter);
        Ok(swept)
    }

    fn abandon(&mut self, id: WriteId) {
        let _ = self.writes.end(id);
    }
}
