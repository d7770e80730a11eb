//! One instrumented object's change log as seen from inside the object: its state, the load of
//! that state before the first event, and where the other parts of the runtime find it.
//!
//! The hooks (`write_hooks`) are installed as own properties of the raw
//! storage object, where the `worker` glue looks methods up at call time, so every write made
//! through `worker::Storage` is seen, whichever function makes it and whichever event is running.
//!
//! The state lives as long as the runtime keeps the object: the storage object holds it (through
//! the hooks' anchor), and it holds the storage object only weakly. When the runtime lets the
//! object go, the state goes with it; the isolate's table of objects keeps weak entries only.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Map, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, State};

use super::compactor_memory::CompactorSlot;
use super::js_methods::{js_error, Methods};
use super::pending::Pending;
use crate::core::compaction::DEFAULT_TOMBSTONE_HORIZON;
use crate::core::cursor::Cursor;
use crate::core::keys::{parse_log_key, FLOOR_KEY, LOG_END, LOG_PREFIX, REPORTED_KEY};

thread_local! {
    /// Instrumented objects living in this isolate, by id: an isolate can host several objects
    /// of a script, so the export handler finds its object here rather than in a global. Weak:
    /// an object the runtime let go is not kept alive by this table.
    static OBJECTS: RefCell<ObjectTable> = RefCell::new(ObjectTable::default());
}

#[derive(Default)]
struct ObjectTable {
    by_id: HashMap<String, Weak<ObjectLog>>,
    /// Entries past which the next insert first drops the entries of objects that are gone.
    prune_at: usize,
}

impl ObjectTable {
    fn insert(&mut self, id: String, log: &Rc<ObjectLog>) {
        if self.by_id.len() >= self.prune_at {
            self.by_id.retain(|_, log| log.strong_count() > 0);
            // Amortised: the table is scanned again only once it has doubled.
            self.prune_at = (self.by_id.len() * 2).max(64);
        }
        self.by_id.insert(id, Rc::downgrade(log));
    }
}

/// The object `id`, if it lives in this isolate.
pub(crate) fn find(id: &str) -> Option<Rc<ObjectLog>> {
    OBJECTS.with(|objects| objects.borrow().by_id.get(id).and_then(Weak::upgrade))
}

/// How many instrumented objects this isolate holds the state of: a debug view for tests.
pub(crate) fn objects_held() -> usize {
    OBJECTS.with(|objects| objects.borrow().by_id.values().filter(|log| log.strong_count() > 0).count())
}

/// Where the coalesced registry report stands (see `report`): at most one in flight, and one
/// more after it if writes happened meanwhile.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportState {
    Idle,
    InFlight,
    InFlightDirty,
}

/// One instrumented object's change log as seen from inside the object.
pub(crate) struct ObjectLog {
    pub class: &'static str,
    pub id: String,
    pub name: Option<String>,
    /// The raw storage object, weakly: it holds this log, not the other way round.
    storage: js_sys::WeakRef<Object>,
    pub env: Env,
    /// The last position handed out; `None` until the constructor's read of the log finishes.
    pub head: Cell<Option<Cursor>>,
    /// The lowest position incremental reads can start from (see `FLOOR_KEY`).
    pub floor: Cell<Cursor>,
    /// How far the tombstone sweep has looked, in this instance's lifetime.
    pub swept_to: Cell<Cursor>,
    pub tombstone_horizon: u64,
    pub registry_shards: u32,
    pub report: Cell<ReportState>,
    pub compactor: Rc<CompactorSlot>,
    pub compacting: Cell<bool>,
    /// The head each open transaction saw when it started (a multiset): exports must not hand
    /// out key cursors past the oldest, since its rows appear only when it commits.
    pub open_transactions: RefCell<std::collections::BTreeMap<Cursor, usize>>,
    /// The runtime's own storage methods, for durafetch's own writes, which are not logged.
    pub storage_methods: OnceCell<Rc<Methods>>,
    /// Keys written outside transactions since the last row.
    pub pending: RefCell<Pending>,
    /// A resolved promise whose reactions run the per-turn check: a plain promise reaction is a
    /// microtask without the per-call wrapping the runtime's `queueMicrotask` adds.
    pub resolved: js_sys::Promise,
    pub turn_check: OnceCell<Closure<dyn FnMut(JsValue)>>,
    /// A SQLite-backed object's SQL storage, recorded by triggers (see `sql_hooks`).
    pub sql: OnceCell<super::sql_storage::SqlStorage>,
    /// The SQL head as last read or written (0: no SQL storage): odd while changes since the last
    /// export are recorded (see `core::sql_capture`).
    pub sql_head: Cell<u64>,
}

/// The property of the storage object that holds its log alive for as long as the storage
/// object itself lives.
const ANCHOR: &str = "__durafetchLog";

/// Instruments the object being constructed. Called by the `#[durafetch]` attribute at the top
/// of `DurableObject::new`, before the user's code can write.
pub fn install(state: &State, env: &Env, class: &'static str) {
    let id = state.id().to_string();
    let storage = state.storage();
    let raw: &JsValue = storage.as_raw().unchecked_ref();
    let storage: Object = raw.clone().unchecked_into();
    // A missing or malformed config, or a class it does not map to its binding, is logged here
    // and reported by the worker's API; writes are recorded regardless.
    let config = super::config::Config::from_env(env);
    super::config::check_instrumented_class(&config, env, class, &id);
    let config = config.ok();
    let log = Rc::new(ObjectLog {
        class,
        id: id.clone(),
        name: state.id().name(),
        storage: js_sys::WeakRef::new(&storage),
        env: env.clone(),
        head: Cell::new(None),
        floor: Cell::new(Cursor::default()),
        swept_to: Cell::new(Cursor::default()),
        tombstone_horizon: config.as_ref().and_then(|c| c.tombstone_horizon).unwrap_or(DEFAULT_TOMBSTONE_HORIZON),
        registry_shards: config.as_ref().map_or(1, |c| c.registry_shards),
        report: Cell::new(ReportState::Idle),
        compactor: Rc::default(),
        compacting: Cell::new(false),
        open_transactions: RefCell::new(std::collections::BTreeMap::new()),
        storage_methods: OnceCell::new(),
        pending: RefCell::new(Pending::new()),
        resolved: js_sys::Promise::resolve(&JsValue::UNDEFINED),
        turn_check: OnceCell::new(),
        sql: OnceCell::new(),
        sql_head: Cell::new(0),
    });
    // Instrumenting cannot fail short of a runtime without the storage API; going on without the
    // hooks would lose changes silently, so fail the constructor loudly instead.
    log.install_hooks(&storage).unwrap_or_else(|e| panic!("durafetch: cannot instrument {class}: {e:?}"));
    log.install_sql_hooks(&storage).unwrap_or_else(|e| panic!("durafetch: cannot instrument the SQL storage of {class}: {e:?}"));
    // The storage object owns the log: a function only JS holds (never called), which the
    // runtime frees with the storage object, and the log with it.
    let owner = log.clone();
    let anchor = Closure::<dyn Fn()>::new(move || {
        let _ = &owner;
    })
    .into_js_value();
    Reflect::set(&storage, &ANCHOR.into(), &anchor).unwrap_or_else(|e| panic!("durafetch: cannot instrument {class}: {e:?}"));

    // Events are held back until the log head is known, so no write can take a stale position.
    // `blockConcurrencyWhile` is called at once; the future it returns only carries the outcome,
    // so a failure is logged here, where its cause is known.
    let loader = log.clone();
    drop(state.block_concurrency_while(async move {
        if let Err(e) = loader.load().await {
            worker::console_error!("durafetch: cannot read the change log of {} {}: {e}; its writes will fail", loader.class, loader.id);
        }
        Ok(())
    }));
    OBJECTS.with(|objects| objects.borrow_mut().insert(id, &log));
}

impl ObjectLog {
    /// The raw storage object, while the runtime keeps the object.
    pub fn storage(&self) -> Result<Object, JsValue> {
        self.storage.deref().ok_or_else(|| js_error("durafetch: the object's storage is gone"))
    }

    /// Reads the log head and markers; until this is done, writes are refused.
    async fn load(self: &Rc<Self>) -> worker::Result<()> {
        let storage = self.storage()?;
        let head = read_head(&storage).await?;
        let (floor, reported) = read_markers(&storage, head).await?;
        self.floor.set(floor);
        self.swept_to.set(floor);
        self.head.set(Some(head));
        // Tables made or changed while no instrumented code ran (by an earlier version of the
        // worker, say) are found here, before any event.
        if let Err(e) = self.sync_sql() {
            worker::console_error!("durafetch: cannot record the SQL tables of {} {}: {e:?}", self.class, self.id);
        }
        let head = self.reported_head().unwrap_or(head);
        // Writes the registry never acknowledged are reported now, not at the next write.
        if head != Cursor::default() && reported != Some(head) {
            self.schedule_report();
        }
        Ok(())
    }

    pub fn head(&self) -> Option<Cursor> {
        self.head.get()
    }

    /// The head the registry is told: the key log's position with the SQL change sequence
    /// added to its sequence, so that it grows with every change of either kind. Only its
    /// growth means anything; a reader resumes from the two parts, which its export ends with.
    pub fn reported_head(&self) -> Option<Cursor> {
        self.head.get().map(|h| Cursor::new(h.epoch, h.seq + self.sql_head.get()))
    }

    pub fn floor(&self) -> Cursor {
        self.floor.get()
    }

    /// The head the oldest open transaction saw when it started, if any is open.
    pub fn oldest_open_transaction(&self) -> Option<Cursor> {
        self.open_transactions.borrow().keys().next().copied()
    }

    pub fn loaded_head(&self) -> Result<Cursor, JsValue> {
        self.head.get().ok_or_else(|| {
            js_error("durafetch: storage was written in the constructor before the change log was loaded; move the write into a handler")
        })
    }

    pub fn next_position(&self) -> Result<Cursor, JsValue> {
        let next = self.loaded_head()?.next_seq();
        self.head.set(Some(next));
        Ok(next)
    }
}

/// The newest position in storage: the last row of the log range, or the start of epoch 0.
async fn read_head(storage: &Object) -> worker::Result<Cursor> {
    let options = Object::new();
    Reflect::set(&options, &"start".into(), &LOG_PREFIX.into())?;
    Reflect::set(&options, &"end".into(), &LOG_END.into())?;
    Reflect::set(&options, &"reverse".into(), &true.into())?;
    Reflect::set(&options, &"limit".into(), &1.into())?;
    let list = super::storage::runtime_method(storage, "list")?;
    let promise: js_sys::Promise = list.call1(storage, &options)?.dyn_into()?;
    let rows: Map = wasm_bindgen_futures::JsFuture::from(promise).await?.dyn_into()?;
    let last = rows.keys().into_iter().next().transpose()?;
    Ok(last.and_then(|k| k.as_string()).and_then(|k| parse_log_key(&k)).unwrap_or_default())
}

/// The stored floor if it belongs to the current epoch (else the epoch's start), and the head
/// the registry last acknowledged.
async fn read_markers(storage: &Object, head: Cursor) -> worker::Result<(Cursor, Option<Cursor>)> {
    let rows = super::storage::get_many(storage, &[FLOOR_KEY.to_owned(), REPORTED_KEY.to_owned()]).await?;
    let marker = |key: &str| {
        rows.get(&key.into())
            .dyn_ref::<Array>()
            .map(|a| Cursor::new(a.get(0).as_f64().unwrap_or(0.0) as u32, a.get(1).as_f64().unwrap_or(0.0) as u64))
    };
    let floor = marker(FLOOR_KEY).filter(|f| f.epoch == head.epoch).unwrap_or(Cursor::new(head.epoch, 0));
    Ok((floor, marker(REPORTED_KEY)))
}
