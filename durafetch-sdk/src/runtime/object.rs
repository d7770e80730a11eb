//! The instrumented object: storage-write hooks that log which keys every write call changed,
//! the in-memory log head, coalesced reports to the registry, and the object's end of the export.
//!
//! The hooks are installed as own properties of the raw storage object (and of each transaction
//! object), where the `worker` glue looks methods up at call time, so every write made through
//! `worker::Storage` is seen, whichever function makes it and whichever event is running.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Map, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Request, Response, State, WebSocketPair};

use super::value::converted_faithfully;
use super::{config, export, json_error, registry, Routed};
use crate::core::auth::INTERNAL_HEADER;
use crate::core::compaction::{sweep_tombstones, Compactor, DEFAULT_TOMBSTONE_HORIZON};
use crate::core::cursor::Cursor;
use crate::core::keys::{
    check_user_key, log_key, outside_reserved, parse_log_key, KeyRange, Start, FLOOR_KEY, LOG_END, LOG_PREFIX, REPORTED_KEY,
    RESERVED_PREFIX,
};
use crate::core::pending_row::{row_runs, Noted, PendingRow, TakenRow, Turn, MAX_ROW_KEYS};
use crate::core::protocol::{ObjectReport, MAX_PAGE_CHANGES, MAX_PAGE_KEYS};

/// Header naming the object an internal export call is for.
pub(crate) const OBJECT_HEADER: &str = "x-durafetch-object";

thread_local! {
    /// Instrumented objects living in this isolate, by id. An isolate can host several objects of
    /// a script, so the export handler finds its object here rather than in a global.
    static OBJECTS: RefCell<HashMap<String, Rc<ObjectLog>>> = RefCell::new(HashMap::new());
}

type PutHook = Closure<dyn Fn(JsValue, JsValue, JsValue, JsValue) -> Result<JsValue, JsValue>>;
type DeleteHook = Closure<dyn Fn(JsValue, JsValue, JsValue) -> Result<JsValue, JsValue>>;
type DeleteAllHook = Closure<dyn Fn(JsValue, JsValue) -> Result<JsValue, JsValue>>;
type ListHook = Closure<dyn Fn(JsValue, JsValue) -> Result<JsValue, JsValue>>;
type TransactionHook = Closure<dyn Fn(JsValue, JsValue, JsValue) -> Result<JsValue, JsValue>>;

/// The runtime's own write methods of one kind of target (the storage, or a transaction).
struct Methods {
    put: Function,
    delete: Function,
    delete_all: Function,
    list: Function,
}

impl Methods {
    fn of_prototype(target: &JsValue) -> Result<Self, JsValue> {
        let proto = Object::get_prototype_of(target);
        let method = |name: &str| -> Result<Function, JsValue> { Reflect::get(&proto, &name.into())?.dyn_into::<Function>() };
        Ok(Self { put: method("put")?, delete: method("delete")?, delete_all: method("deleteAll")?, list: method("list")? })
    }
}

/// Hooks for one kind of target. Each hook takes the target as its first argument and is bound
/// to a concrete target with `Function.prototype.bind`, so one set serves every transaction.
struct WriteHooks {
    put: PutHook,
    delete: DeleteHook,
    delete_all: DeleteAllHook,
    list: ListHook,
}

/// Where a target's writes are logged. Writes to storage join the pending row and feed the
/// compactor. Writes inside a transaction carry their own rows, which must roll back with them,
/// and do not feed the compactor: they may still roll back, and compaction only needs most dead
/// entries, not all of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Storage,
    Transaction,
}

impl WriteHooks {
    fn new(log: Weak<ObjectLog>, methods: Rc<Methods>, target_kind: Target) -> Self {
        let (l, m) = (log.clone(), methods.clone());
        let put = Closure::wrap(Box::new(move |target: JsValue, a: JsValue, b: JsValue, c: JsValue| {
            with_log(&l)?.put(&m, &target, target_kind, a, b, c)
        }) as Box<dyn Fn(_, _, _, _) -> _>);
        let (l, m) = (log.clone(), methods.clone());
        let delete = Closure::wrap(Box::new(move |target: JsValue, keys: JsValue, options: JsValue| {
            with_log(&l)?.delete(&m, &target, target_kind, keys, options)
        }) as Box<dyn Fn(_, _, _) -> _>);
        let (l, m) = (log.clone(), methods.clone());
        let delete_all = Closure::wrap(
            Box::new(move |target: JsValue, options: JsValue| with_log(&l)?.delete_all(&m, &target, options)) as Box<dyn Fn(_, _) -> _>
        );
        let list = Closure::wrap(Box::new(move |target: JsValue, options: JsValue| list_outside_reserved(&methods.list, &target, options))
            as Box<dyn Fn(_, _) -> _>);
        Self { put, delete, delete_all, list }
    }

    fn install_on(&self, target: &JsValue) -> Result<(), JsValue> {
        bind_hook(target, "put", self.put.as_ref())?;
        bind_hook(target, "delete", self.delete.as_ref())?;
        bind_hook(target, "deleteAll", self.delete_all.as_ref())?;
        bind_hook(target, "list", self.list.as_ref())
    }
}

fn bind_hook(target: &JsValue, name: &str, hook: &JsValue) -> Result<(), JsValue> {
    let bound = hook.unchecked_ref::<Function>().bind1(&JsValue::NULL, target);
    Reflect::set(target, &name.into(), &bound)?;
    Ok(())
}

fn with_log(log: &Weak<ObjectLog>) -> Result<Rc<ObjectLog>, JsValue> {
    log.upgrade().ok_or_else(|| js_error("durafetch: storage used after its object was replaced"))
}

fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

/// Where the coalesced registry report stands: at most one in flight, and one more after it if
/// writes happened meanwhile.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReportState {
    Idle,
    InFlight,
    InFlightDirty,
}

/// One instrumented object's change log as seen from inside the object.
pub(crate) struct ObjectLog {
    pub class: &'static str,
    pub id: String,
    name: Option<String>,
    pub storage: Object,
    pub env: Env,
    /// The last position handed out; `None` until the constructor's read of the log finishes.
    head: Cell<Option<Cursor>>,
    /// The lowest position incremental reads can start from (see `FLOOR_KEY`).
    floor: Cell<Cursor>,
    /// How far the tombstone sweep has looked, in this instance's lifetime.
    swept_to: Cell<Cursor>,
    tombstone_horizon: u64,
    registry_shards: u32,
    report: Cell<ReportState>,
    compactor: RefCell<Compactor>,
    compacting: Cell<bool>,
    /// The head each open transaction saw when it started (a multiset): exports must not hand
    /// out cursors past the oldest, since its rows appear only when it commits.
    open_transactions: RefCell<std::collections::BTreeMap<Cursor, usize>>,
    /// The runtime's own storage methods, for durafetch's own writes, which are not logged.
    storage_methods: OnceCell<Rc<Methods>>,
    storage_hooks: OnceCell<WriteHooks>,
    transaction_hooks: OnceCell<WriteHooks>,
    transaction_hook: OnceCell<TransactionHook>,
    /// Keys written outside transactions since the last row.
    pending: RefCell<Pending>,
    /// A resolved promise whose reactions run the per-turn check: a plain promise reaction is a
    /// microtask without the per-call wrapping the runtime's `queueMicrotask` adds.
    resolved: js_sys::Promise,
    turn_check: OnceCell<Closure<dyn FnMut(JsValue)>>,
}

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
        storage,
        env: env.clone(),
        head: Cell::new(None),
        floor: Cell::new(Cursor::default()),
        swept_to: Cell::new(Cursor::default()),
        tombstone_horizon: config.as_ref().and_then(|c| c.tombstone_horizon).unwrap_or(DEFAULT_TOMBSTONE_HORIZON),
        registry_shards: config.as_ref().map_or(1, |c| c.registry_shards),
        report: Cell::new(ReportState::Idle),
        compactor: RefCell::new(Compactor::default()),
        compacting: Cell::new(false),
        open_transactions: RefCell::new(std::collections::BTreeMap::new()),
        storage_methods: OnceCell::new(),
        storage_hooks: OnceCell::new(),
        transaction_hooks: OnceCell::new(),
        transaction_hook: OnceCell::new(),
        pending: RefCell::new(Pending::new()),
        resolved: js_sys::Promise::resolve(&JsValue::UNDEFINED),
        turn_check: OnceCell::new(),
    });
    // Instrumenting cannot fail short of a runtime without the storage API; going on without the
    // hooks would lose changes silently, so fail the constructor loudly instead.
    log.install_hooks().unwrap_or_else(|e| panic!("durafetch: cannot instrument {class}: {e:?}"));

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
    OBJECTS.with(|objects| objects.borrow_mut().insert(id, log));
}

impl ObjectLog {
    fn install_hooks(self: &Rc<Self>) -> Result<(), JsValue> {
        let target: &JsValue = self.storage.as_ref();
        let methods = Rc::new(Methods::of_prototype(target)?);
        let hooks = WriteHooks::new(Rc::downgrade(self), methods.clone(), Target::Storage);
        hooks.install_on(target)?;
        let _ = self.storage_hooks.set(hooks);
        let _ = self.storage_methods.set(methods);

        let original: Function = Reflect::get(&Object::get_prototype_of(target), &"transaction".into())?.dyn_into()?;
        let log = Rc::downgrade(self);
        let hook: TransactionHook = Closure::wrap(Box::new(move |target: JsValue, body: JsValue, options: JsValue| {
            with_log(&log)?.transaction(&original, &target, body, options)
        }) as Box<dyn Fn(_, _, _) -> _>);
        bind_hook(target, "transaction", hook.as_ref())?;
        let _ = self.transaction_hook.set(hook);

        let log = Rc::downgrade(self);
        let check = Closure::wrap(Box::new(move |_: JsValue| {
            if let Some(log) = log.upgrade() {
                log.pending_turn();
            }
        }) as Box<dyn FnMut(JsValue)>);
        let _ = self.turn_check.set(check);
        Ok(())
    }

    /// Reads the log head and markers; until this is done, writes are refused.
    async fn load(self: &Rc<Self>) -> worker::Result<()> {
        let head = self.read_head().await?;
        let (floor, reported) = self.read_markers(head).await?;
        self.floor.set(floor);
        self.swept_to.set(floor);
        self.head.set(Some(head));
        // Writes the registry never acknowledged are reported now, not at the next write.
        if head != Cursor::default() && reported != Some(head) {
            self.schedule_report();
        }
        Ok(())
    }

    /// The newest position in storage: the last row of the log range, or the start of epoch 0.
    async fn read_head(&self) -> worker::Result<Cursor> {
        let options = Object::new();
        Reflect::set(&options, &"start".into(), &LOG_PREFIX.into())?;
        Reflect::set(&options, &"end".into(), &LOG_END.into())?;
        Reflect::set(&options, &"reverse".into(), &true.into())?;
        Reflect::set(&options, &"limit".into(), &1.into())?;
        let list = super::storage::runtime_method(&self.storage, "list")?;
        let promise: js_sys::Promise = list.call1(&self.storage, &options)?.dyn_into()?;
        let rows: Map = wasm_bindgen_futures::JsFuture::from(promise).await?.dyn_into()?;
        let last = rows.keys().into_iter().next().transpose()?;
        Ok(last.and_then(|k| k.as_string()).and_then(|k| parse_log_key(&k)).unwrap_or_default())
    }

    /// The stored floor if it belongs to the current epoch (else the epoch's start), and the head
    /// the registry last acknowledged.
    async fn read_markers(&self, head: Cursor) -> worker::Result<(Cursor, Option<Cursor>)> {
        let rows = super::storage::get_many(&self.storage, &[FLOOR_KEY.to_owned(), REPORTED_KEY.to_owned()]).await?;
        let marker = |key: &str| {
            rows.get(&key.into())
                .dyn_ref::<Array>()
                .map(|a| Cursor::new(a.get(0).as_f64().unwrap_or(0.0) as u32, a.get(1).as_f64().unwrap_or(0.0) as u64))
        };
        let floor = marker(FLOOR_KEY).filter(|f| f.epoch == head.epoch).unwrap_or(Cursor::new(head.epoch, 0));
        Ok((floor, marker(REPORTED_KEY)))
    }

    pub fn head(&self) -> Option<Cursor> {
        self.head.get()
    }

    pub fn floor(&self) -> Cursor {
        self.floor.get()
    }

    /// The head the oldest open transaction saw when it started, if any is open.
    pub fn oldest_open_transaction(&self) -> Option<Cursor> {
        self.open_transactions.borrow().keys().next().copied()
    }

    fn loaded_head(&self) -> Result<Cursor, JsValue> {
        self.head.get().ok_or_else(|| {
            js_error("durafetch: storage was written in the constructor before the change log was loaded; move the write into a handler")
        })
    }

    fn next_position(&self) -> Result<Cursor, JsValue> {
        let next = self.loaded_head()?.next_seq();
        self.head.set(Some(next));
        Ok(next)
    }

    /// `put(key, value, options)` or `put(entries, options)`. Outside a transaction the keys join
    /// the pending row; inside one, the log row goes into the same call.
    fn put(self: &Rc<Self>, m: &Methods, target: &JsValue, kind: Target, a: JsValue, b: JsValue, c: JsValue) -> Result<JsValue, JsValue> {
        if let Some(key) = a.as_string() {
            if !converted_faithfully(&a, &key) {
                return Err(js_error(NOT_UNICODE));
            }
            check_user_key(&key).map_err(|e| js_error(&e.to_string()))?;
            if b.is_undefined() {
                // Storage refuses `put(key, undefined)`, but the entries form below would drop the
                // key silently: the call goes through unchanged so the user sees storage's error.
                return m.put.call3(target, &a, &b, &c);
            }
            if kind == Target::Storage {
                return self.write_then_note((vec![key], &a), &c, || m.put.call3(target, &a, &b, &c));
            }
            let at = self.next_position()?;
            let entries = Object::new();
            Reflect::set(&entries, &a, &b)?;
            Reflect::set(&entries, &log_key(at).into(), &Array::of1(&a))?;
            let promise = m.put.call2(target, &entries, &c)?;
            self.changed(kind, at, &[key]);
            return Ok(promise);
        }
        let Some(entries) = entries_object(&a)? else {
            // Not a shape storage accepts: let the runtime give its own error.
            return m.put.call3(target, &a, &b, &c);
        };
        let keys = Object::keys(entries.object());
        let names = user_keys(&keys)?;
        if names.is_empty() {
            return m.put.call2(target, entries.object(), &b);
        }
        if kind == Target::Storage {
            return self.write_then_note((names, &keys), &b, || m.put.call2(target, entries.object(), &b));
        }
        if (keys.length() as usize) < MAX_PAGE_KEYS && fits_one_row(&names) {
            let at = self.next_position()?;
            let with_row = entries.into_own();
            Reflect::set(&with_row, &log_key(at).into(), &keys)?;
            let promise = m.put.call2(target, &with_row, &b)?;
            self.changed(kind, at, &names);
            return Ok(promise);
        }
        // One more key would exceed the storage API's per-call limit, or the keys need more than
        // one row. The rows go first, so a failure can only leave a row naming unchanged keys,
        // never a change without one.
        self.put_rows(m, target, kind, (&names, &keys), &b)?;
        m.put.call2(target, entries.object(), &b)
    }

    /// `delete(key | keys, options)`. Outside a transaction the keys join the pending row; inside
    /// one, the log row is put first in the same synchronous step.
    fn delete(self: &Rc<Self>, m: &Methods, target: &JsValue, kind: Target, keys: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let array: Array = if keys.is_string() {
            Array::of1(&keys)
        } else if Array::is_array(&keys) {
            keys.clone().unchecked_into()
        } else {
            return m.delete.call2(target, &keys, &options);
        };
        let names = user_keys(&array)?;
        if names.is_empty() {
            return m.delete.call2(target, &keys, &options);
        }
        if kind == Target::Storage {
            return self.write_then_note((names, &array), &options, || m.delete.call2(target, &keys, &options));
        }
        self.put_rows(m, target, kind, (&names, &array), &options)?;
        m.delete.call2(target, &keys, &options)
    }

    /// `deleteAll()` wipes the log with everything else; a marker row starts the next epoch.
    fn delete_all(self: &Rc<Self>, m: &Methods, target: &JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let at = self.loaded_head()?.next_epoch();
        let promise = m.delete_all.call1(target, &options)?;
        self.pending.borrow_mut().clear();
        self.head.set(Some(at));
        m.put.call1(target, &log_entry(at, &Array::new())?)?;
        self.compactor.borrow_mut().reset();
        self.floor.set(at);
        self.swept_to.set(at);
        self.schedule_report();
        Ok(promise)
    }

    /// `transaction(body)`: the body receives a transaction object carrying the same hooks, so its
    /// writes and their log rows commit or roll back together.
    fn transaction(self: &Rc<Self>, original: &Function, target: &JsValue, body: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let body: Function = body.dyn_into()?;
        // Written before the transaction opens: a row written while it is open could roll back
        // with it, while the writes the row names stay.
        self.write_pending_row()?;
        let log = Rc::downgrade(self);
        let wrapped = Closure::once_into_js(move |txn: JsValue| -> Result<JsValue, JsValue> {
            let log = with_log(&log)?;
            log.transaction_hooks(&txn)?.install_on(&txn)?;
            body.call1(&JsValue::NULL, &txn)
        });
        let started_at = self.loaded_head()?;
        let promise: js_sys::Promise = original.call2(target, &wrapped, &options)?.dyn_into()?;
        *self.open_transactions.borrow_mut().entry(started_at).or_insert(0) += 1;
        // Committed or rolled back, the transaction no longer holds readers back.
        let log = Rc::downgrade(self);
        let settled: JsValue = Closure::once_into_js(move || {
            if let Some(log) = log.upgrade() {
                let mut open = log.open_transactions.borrow_mut();
                if let Some(count) = open.get_mut(&started_at) {
                    *count -= 1;
                    if *count == 0 {
                        open.remove(&started_at);
                    }
                }
            }
        });
        let finally: Function = Reflect::get(&promise, &"finally".into())?.dyn_into()?;
        finally.call1(&promise, &settled)
    }

    /// A write outside a transaction: storage takes the call unchanged, then its keys join the
    /// pending row (a write storage refused at once changed nothing).
    fn write_then_note(
        self: &Rc<Self>,
        keys: (Vec<String>, &JsValue),
        options: &JsValue,
        write: impl FnOnce() -> Result<JsValue, JsValue>,
    ) -> Result<JsValue, JsValue> {
        self.loaded_head()?;
        let promise = write()?;
        let allow_unconfirmed = options.is_object() && Reflect::get(options, &"allowUnconfirmed".into()).is_ok_and(|v| v.is_truthy());
        let noted = self.pending.borrow_mut().note(keys, allow_unconfirmed);
        match noted {
            Noted::Full => self.write_pending_row()?,
            Noted::StartChecking => self.queue_turn_check()?,
            Noted::Checking => {}
        }
        Ok(promise)
    }

    fn queue_turn_check(&self) -> Result<(), JsValue> {
        let check = self.turn_check.get().ok_or_else(|| js_error(NOT_INSTRUMENTED))?;
        let _ = self.resolved.then(check);
        Ok(())
    }

    /// One microtask turn of the pending row's check.
    fn pending_turn(self: &Rc<Self>) {
        let turn = self.pending.borrow_mut().row.turn();
        let outcome = match turn {
            Turn::Wait => self.queue_turn_check(),
            Turn::Write => self.write_pending_row(),
            Turn::Stop => Ok(()),
        };
        if let Err(e) = outcome {
            // The keys stay pending, and the next write's row names them.
            worker::console_error!("durafetch: cannot write the change-log row of {} {}: {e:?}", self.class, self.id);
        }
    }

    /// Writes the pending row with the runtime's own `put`, in the commit of the writes it names:
    /// several rows if the keys are past one row's bounds.
    fn write_pending_row(self: &Rc<Self>) -> Result<(), JsValue> {
        let (TakenRow { keys, allow_unconfirmed, .. }, names) = self.pending.borrow_mut().take();
        if keys.is_empty() {
            return Ok(());
        }
        let written = self.own_methods().and_then(|methods| {
            let options = Object::new();
            if allow_unconfirmed {
                Reflect::set(&options, &"allowUnconfirmed".into(), &true.into())?;
            }
            self.put_rows(methods, self.storage.as_ref(), Target::Storage, (&keys, &names), &options)
        });
        match written {
            Ok(rows) => {
                for row in rows {
                    wasm_bindgen_futures::spawn_local(report_failed_row(self.clone(), row));
                }
                Ok(())
            }
            Err(e) => {
                // Rows already put name keys that stay pending too: naming a key twice only
                // makes a reader send its current value again.
                self.pending.borrow_mut().restore(keys, &names, allow_unconfirmed);
                Err(e)
            }
        }
    }

    /// Puts a log row for each run of `keys` that fits one row, with the runtime's `put`, each at
    /// its own position, and notes each. `names` holds the same keys as JS strings, in the same
    /// order; a row of all of them is that array itself.
    fn put_rows(
        self: &Rc<Self>,
        m: &Methods,
        target: &JsValue,
        kind: Target,
        (keys, names): (&[String], &Array),
        options: &JsValue,
    ) -> Result<Vec<js_sys::Promise>, JsValue> {
        let mut rows = Vec::new();
        let mut start = 0;
        for run in row_runs(keys) {
            let at = self.next_position()?;
            let end = start + run.len();
            let row = if run.len() == keys.len() { names.clone() } else { names.slice(start as u32, end as u32) };
            rows.push(m.put.call2(target, &log_entry(at, &row)?, options)?.unchecked_into());
            self.changed(kind, at, run);
            start = end;
        }
        Ok(rows)
    }

    /// The runtime's own storage methods, for durafetch's own writes.
    fn own_methods(&self) -> Result<&Methods, JsValue> {
        self.storage_methods.get().map(|m| &**m).ok_or_else(|| js_error(NOT_INSTRUMENTED))
    }

    /// Issues compaction's own writes with the runtime's methods (they are not logged): the put
    /// first, then the deletes, in one synchronous step.
    fn rewrite(&self, put: Option<Object>, delete: &[Cursor]) -> Result<Vec<js_sys::Promise>, JsValue> {
        let methods = self.own_methods()?;
        let target: &JsValue = self.storage.as_ref();
        let mut pending = Vec::new();
        if let Some(entries) = put {
            pending.push(methods.put.call1(target, &entries)?.unchecked_into());
        }
        if !delete.is_empty() {
            let keys: Array = delete.iter().map(|r| JsValue::from(log_key(*r))).collect();
            pending.push(methods.delete.call1(target, &keys)?.unchecked_into());
        }
        Ok(pending)
    }

    fn transaction_hooks(self: &Rc<Self>, txn: &JsValue) -> Result<&WriteHooks, JsValue> {
        if let Some(hooks) = self.transaction_hooks.get() {
            return Ok(hooks);
        }
        let hooks = WriteHooks::new(Rc::downgrade(self), Rc::new(Methods::of_prototype(txn)?), Target::Transaction);
        Ok(self.transaction_hooks.get_or_init(|| hooks))
    }

    /// After a write call: feeds the compactor (outside transactions) and the registry report.
    fn changed(self: &Rc<Self>, kind: Target, at: Cursor, keys: &[String]) {
        if kind == Target::Storage {
            let mut compactor = self.compactor.borrow_mut();
            compactor.record(at, keys.iter().map(String::as_str));
            if (compactor.is_due() || self.sweep_is_due()) && !self.compacting.replace(true) {
                wasm_bindgen_futures::spawn_local(compact_while_due(self.clone()));
            }
        }
        self.schedule_report();
    }

    /// The position before which tombstones may be dropped.
    fn horizon(&self) -> Option<Cursor> {
        let head = self.head.get()?;
        Some(Cursor::new(head.epoch, head.seq.saturating_sub(self.tombstone_horizon)))
    }

    /// A sweep is worth a step once a page of rows has fallen behind the horizon.
    fn sweep_is_due(&self) -> bool {
        let swept = self.swept_to.get();
        self.horizon().is_some_and(|h| h.epoch == swept.epoch && h.seq > swept.seq + MAX_PAGE_KEYS as u64)
    }

    /// Notes a write for the registry. Reports are coalesced: one in flight, one trailing.
    fn schedule_report(self: &Rc<Self>) {
        match self.report.get() {
            ReportState::Idle => {
                self.report.set(ReportState::InFlight);
                wasm_bindgen_futures::spawn_local(report_until_idle(self.clone()));
            }
            ReportState::InFlight => self.report.set(ReportState::InFlightDirty),
            ReportState::InFlightDirty => {}
        }
    }

    /// Remembers durably what the registry acknowledged (a write per report, not per write).
    fn mark_reported(&self, head: Cursor) {
        let entry = Object::new();
        let value = Array::of2(&(head.epoch as f64).into(), &(head.seq as f64).into());
        let marked = Reflect::set(&entry, &REPORTED_KEY.into(), &value).and_then(|_| self.rewrite(Some(entry), &[]).map(drop));
        if let Err(e) = marked {
            worker::console_error!("durafetch: cannot store the reported head of {} {}: {e:?}", self.class, self.id);
        }
    }

    fn report_body(&self) -> Option<ObjectReport> {
        Some(ObjectReport { class: self.class.to_owned(), id: self.id.clone(), name: self.name.clone(), head: self.head.get()? })
    }
}

/// A row write that storage accepted but failed later leaves writes without a row: say so, since
/// pullers will not see them until their next snapshot.
async fn report_failed_row(log: Rc<ObjectLog>, row: js_sys::Promise) {
    if let Err(e) = wasm_bindgen_futures::JsFuture::from(row).await {
        worker::console_error!("durafetch: storing a change-log row of {} {} failed: {e:?}", log.class, log.id);
    }
}

async fn report_until_idle(log: Rc<ObjectLog>) {
    loop {
        log.report.set(ReportState::InFlight);
        let Some(report) = log.report_body() else {
            log.report.set(ReportState::Idle);
            return;
        };
        if let Err(e) = registry::report(&log.env, &log.storage, &report, log.registry_shards).await {
            // Reported again at the next write, or when the object next starts: the stored
            // marker still names an older head.
            worker::console_error!("durafetch: reporting {} {} to the registry failed: {e}", log.class, log.id);
            log.report.set(ReportState::Idle);
            return;
        }
        log.mark_reported(report.head);
        if log.report.get() == ReportState::InFlight {
            log.report.set(ReportState::Idle);
            return;
        }
    }
}

/// `list(options)` as the user sees it: the reserved range left out, with `limit`, `reverse`,
/// `prefix`, `start`, `startAfter` and `end` keeping their meaning. A range that cannot touch
/// the reserved one goes straight to the runtime.
fn list_outside_reserved(list: &Function, target: &JsValue, options: JsValue) -> Result<JsValue, JsValue> {
    let option = |name: &str| -> Option<JsValue> {
        options.is_object().then(|| Reflect::get(&options, &name.into()).ok()).flatten().filter(|v| !v.is_undefined())
    };
    if let Some(prefix) = option("prefix").and_then(|p| p.as_string()) {
        if prefix.starts_with(RESERVED_PREFIX) {
            return Ok(js_sys::Promise::resolve(&Map::new()).into());
        }
        if !RESERVED_PREFIX.starts_with(&prefix) {
            return list.call1(target, &options);
        }
    }
    let start = match (option("startAfter").and_then(|s| s.as_string()), option("start").and_then(|s| s.as_string())) {
        (Some(after), _) => Start::After(after),
        (None, Some(from)) => Start::From(from),
        (None, None) => Start::Beginning,
    };
    let range = KeyRange { start, end: option("end").and_then(|e| e.as_string()) };
    let mut parts = outside_reserved(&range);
    if parts == [range] {
        return list.call1(target, &options);
    }
    if option("reverse").and_then(|r| r.as_bool()).unwrap_or(false) {
        parts.reverse();
    }
    let limit = option("limit").and_then(|l| l.as_f64());
    let (list, target) = (list.clone(), target.clone());
    let base = if options.is_object() { Object::assign(&Object::new(), options.unchecked_ref()) } else { Object::new() };
    let listing = async move {
        let result = Map::new();
        for part in parts {
            let remaining = limit.map(|l| l - f64::from(result.size()));
            if remaining.is_some_and(|r| r <= 0.0) {
                break;
            }
            let options = Object::assign(&Object::new(), &base);
            for name in ["start", "startAfter", "end", "limit"] {
                Reflect::delete_property(&options, &name.into())?;
            }
            match &part.start {
                Start::Beginning => {}
                Start::From(s) => drop(Reflect::set(&options, &"start".into(), &s.into())?),
                Start::After(s) => drop(Reflect::set(&options, &"startAfter".into(), &s.into())?),
            }
            if let Some(end) = &part.end {
                Reflect::set(&options, &"end".into(), &end.into())?;
            }
            if let Some(remaining) = remaining {
                Reflect::set(&options, &"limit".into(), &remaining.into())?;
            }
            let promise: js_sys::Promise = list.call1(&target, &options)?.dyn_into()?;
            let page: Map = wasm_bindgen_futures::JsFuture::from(promise).await?.dyn_into()?;
            page.for_each(&mut |value, key| {
                result.set(&key, &value);
            });
        }
        Ok(result.into())
    };
    Ok(wasm_bindgen_futures::future_to_promise(listing).into())
}

/// How many rows the change log holds: a debug view for tests and benchmarks.
pub async fn log_rows(state: &State) -> worker::Result<u32> {
    let storage = state.storage();
    let raw: &JsValue = storage.as_raw().unchecked_ref();
    let mut scan = super::storage::RangeScan::new(Some(LOG_PREFIX), Some(LOG_END));
    let mut rows = 0;
    while let Some(page) = scan.next_page(raw.unchecked_ref(), MAX_PAGE_CHANGES).await? {
        rows += page.size();
    }
    Ok(rows)
}

/// Compaction steps run off the write path, one batch at a time, until no batch is due.
async fn compact_while_due(log: Rc<ObjectLog>) {
    loop {
        let step = if log.compactor.borrow().is_due() {
            compact_step(&log).await
        } else if log.sweep_is_due() {
            sweep_step(&log).await
        } else {
            break;
        };
        if let Err(e) = step {
            worker::console_error!("durafetch: compacting the change log of {} {} failed: {e:?}", log.class, log.id);
            break;
        }
    }
    log.compacting.set(false);
}

/// Log rows one sweep step reads: the step holds and `get`s every key they name, so this bounds
/// it at 16,384 names.
const SWEEP_ROWS: usize = MAX_PAGE_KEYS * MAX_PAGE_KEYS / MAX_ROW_KEYS;

/// Drops tombstones from one page of rows behind the horizon. The raised floor is written in
/// the same call as the rewritten rows and before any row is deleted, so no reader is ever
/// served incrementally across a forgotten deletion.
async fn sweep_step(log: &ObjectLog) -> Result<(), JsValue> {
    let (Some(horizon), from) = (log.horizon(), log.swept_to.get()) else { return Ok(()) };
    let mut scan = super::storage::RangeScan::new(Some(&log_key(from.next_seq())), Some(&log_key(horizon)));
    let Some(page) = scan.next_page(&log.storage, SWEEP_ROWS).await.map_err(JsValue::from)? else {
        log.swept_to.set(horizon);
        return Ok(());
    };
    let mut rows = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for entry in page.entries() {
        let entry: Array = entry?.unchecked_into();
        let Some(at) = entry.get(0).as_string().and_then(|k| parse_log_key(&k)) else { continue };
        let keys: Vec<String> =
            entry.get(1).dyn_ref::<Array>().map(|a| a.iter().filter_map(|k| k.as_string()).collect()).unwrap_or_default();
        named.extend(keys.iter().cloned());
        rows.push((at, keys));
    }
    let named: Vec<String> = named.into_iter().collect();
    let mut existing = std::collections::HashSet::new();
    for chunk in named.chunks(MAX_PAGE_KEYS) {
        let values = super::storage::get_many(&log.storage, chunk).await.map_err(JsValue::from)?;
        existing.extend(chunk.iter().filter(|k| values.has(&JsValue::from_str(k))).cloned());
    }
    if log.head.get().map(|h| h.epoch) != Some(horizon.epoch) {
        return Ok(());
    }
    let sweep = sweep_tombstones(&rows, |k| existing.contains(k));
    let last = rows.last().map_or(horizon, |(at, _)| *at);
    if let Some(floor) = sweep.floor {
        let floor = floor.max(log.floor.get());
        let entries = Object::new();
        Reflect::set(&entries, &FLOOR_KEY.into(), &Array::of2(&(floor.epoch as f64).into(), &(floor.seq as f64).into()))?;
        set_rows(&entries, &sweep.rewrite.put)?;
        let writes = log.rewrite(Some(entries), &sweep.rewrite.delete)?;
        log.floor.set(floor);
        for promise in writes {
            wasm_bindgen_futures::JsFuture::from(promise).await?;
        }
    }
    log.swept_to.set(last);
    Ok(())
}

async fn compact_step(log: &ObjectLog) -> Result<(), JsValue> {
    let Some(head) = log.head.get() else { return Ok(()) };
    let batch = log.compactor.borrow_mut().take_batch(head.epoch);
    let row_keys: Vec<String> = batch.rows.iter().map(|r| log_key(*r)).collect();
    let rows = super::storage::get_many(&log.storage, &row_keys).await.map_err(JsValue::from)?;
    let mut stored = std::collections::BTreeMap::new();
    for (cursor, key) in batch.rows.iter().zip(&row_keys) {
        if let Some(keys) = rows.get(&key.into()).dyn_ref::<Array>() {
            stored.insert(*cursor, keys.iter().filter_map(|k| k.as_string()).collect::<Vec<_>>());
        }
    }
    // A delete_all while the rows were read makes them history: writing them back would
    // resurrect rows of a finished epoch.
    if log.head.get().map(|h| h.epoch) != Some(batch.epoch) {
        return Ok(());
    }
    let rewrite = batch.plan(&stored);
    let entries = (!rewrite.put.is_empty()).then(Object::new);
    if let Some(entries) = &entries {
        set_rows(entries, &rewrite.put)?;
    }
    for promise in log.rewrite(entries, &rewrite.delete)? {
        wasm_bindgen_futures::JsFuture::from(promise).await?;
    }
    Ok(())
}

/// Adds rewritten log rows to the entries of one `put`.
fn set_rows(entries: &Object, rows: &[(Cursor, Vec<String>)]) -> Result<(), JsValue> {
    for (row, keys) in rows {
        let keys: Array = keys.iter().map(|k| JsValue::from_str(k)).collect();
        Reflect::set(entries, &log_key(*row).into(), &keys)?;
    }
    Ok(())
}

/// The pending row ([`PendingRow`]) and the same keys as the JS strings the write calls named,
/// in the same order: a row of a burst with no key written twice is that array, and its names
/// need not cross back from wasm.
struct Pending {
    row: PendingRow,
    names: Array,
}

impl Pending {
    fn new() -> Self {
        Self { row: PendingRow::default(), names: Array::new() }
    }

    /// Notes a write call's keys; `names` is the key string of a one-key call, or the array of
    /// the keys as the call named them.
    fn note(&mut self, (keys, names): (Vec<String>, &JsValue), allow_unconfirmed: bool) -> Noted {
        match names.dyn_ref::<Array>() {
            Some(many) => self.names = self.names.concat(many),
            None => {
                self.names.push(names);
            }
        }
        self.row.note(keys, allow_unconfirmed)
    }

    /// The row's keys and their JS names, one for one: the writes' own names, or, where repeats
    /// were dropped, names made from the keys.
    fn take(&mut self) -> (TakenRow, Array) {
        let taken = self.row.take();
        let names = std::mem::replace(&mut self.names, Array::new());
        let names = if taken.dropped_repeats { js_names(&taken.keys) } else { names };
        (taken, names)
    }

    /// Puts back a taken row's keys and names, after the new ones, as the row failed.
    fn restore(&mut self, keys: Vec<String>, names: &Array, allow_unconfirmed: bool) {
        self.names = self.names.concat(names);
        self.row.restore(keys, allow_unconfirmed);
    }

    fn clear(&mut self) {
        self.row.clear();
        self.names = Array::new();
    }
}

/// `keys` as a JS array: one JSON text crosses to JS for all of them, where key by key would
/// cost a call and a copy per key. (serde_json writes any `String`, and `JSON.parse` reads
/// what it writes; key by key is there only so that no path can fail.)
fn js_names(keys: &[String]) -> Array {
    serde_json::to_string(keys)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .map_or_else(|| keys.iter().map(|k| JsValue::from_str(k)).collect(), JsCast::unchecked_into)
}

const NOT_INSTRUMENTED: &str = "durafetch: storage not instrumented";

/// A key durafetch could not name faithfully in the log.
const NOT_UNICODE: &str = "durafetch: storage keys must be strings of valid Unicode text (no lone surrogates)";

/// The keys of a write call as strings, refusing any inside the reserved range. They cross from
/// JS as one JSON text: two calls and one copy for the whole write call, where key by key would
/// cost two calls and a copy per key.
fn user_keys(keys: &Array) -> Result<Vec<String>, JsValue> {
    let text = js_sys::JSON::stringify(keys)?.as_string().unwrap_or_default();
    // JSON.stringify escapes a lone surrogate, which no Rust string holds: such a key could not
    // be named in the log faithfully, so the write is refused rather than logged wrong.
    let names: Vec<String> = serde_json::from_str(&text).map_err(|_| js_error(NOT_UNICODE))?;
    for name in &names {
        check_user_key(name).map_err(|e| js_error(&e.to_string()))?;
    }
    Ok(names)
}

/// Whether `names` fit one log row, so that a write in a transaction can carry its row itself.
fn fits_one_row(names: &[String]) -> bool {
    row_runs(names).nth(1).is_none()
}

fn log_entry(at: Cursor, keys: &Array) -> Result<JsValue, JsValue> {
    let entry = Object::new();
    Reflect::set(&entry, &log_key(at).into(), keys)?;
    Ok(entry.into())
}

/// The entries of a multi-key put as a plain object storage accepts.
enum Entries {
    /// The caller's own object, which must not be changed.
    Callers(Object),
    /// A fresh object made here.
    Own(Object),
}

impl Entries {
    fn object(&self) -> &Object {
        match self {
            Entries::Callers(object) | Entries::Own(object) => object,
        }
    }

    /// An object that may take the log row: the fresh one, or a copy of the caller's.
    fn into_own(self) -> Object {
        match self {
            Entries::Callers(object) => Object::assign(&Object::new(), &object),
            Entries::Own(object) => object,
        }
    }
}

/// The entries of a multi-key put. A JS `Map` (what `put_multiple` makes of a `HashMap` or
/// `json!` value) is turned into a plain object, which storage would otherwise ignore without
/// an error; `None` for anything else storage cannot take.
fn entries_object(value: &JsValue) -> Result<Option<Entries>, JsValue> {
    if let Some(map) = value.dyn_ref::<Map>() {
        let entries = Object::new();
        let mut bad_key = None;
        map.for_each(&mut |v, k| {
            if k.is_string() {
                let _ = Reflect::set(&entries, &k, &v);
            } else {
                bad_key = Some(k);
            }
        });
        if bad_key.is_some() {
            return Err(js_error("durafetch: put_multiple needs string keys"));
        }
        return Ok(Some(Entries::Own(entries)));
    }
    if value.is_object() && !Array::is_array(value) {
        return Ok(Some(Entries::Callers(value.clone().unchecked_into())));
    }
    Ok(None)
}

/// The object's side of an export: answers internal calls from the worker, passes everything
/// else to the user's `fetch` untouched.
pub async fn route_object_request(req: Request) -> Routed<Request> {
    if !req.headers().has(INTERNAL_HEADER).unwrap_or(false) {
        return Routed::Pass(req);
    }
    Routed::Handled(serve_export(req).await)
}

async fn serve_export(req: Request) -> worker::Result<Response> {
    let id = req.headers().get(OBJECT_HEADER)?.unwrap_or_default();
    // Without the object there is no secret to check the call against: answer as for a forged
    // call, so an outside request learns nothing from the header it sent.
    let Some(log) = OBJECTS.with(|objects| objects.borrow().get(&id).cloned()) else {
        return json_error(403, "forbidden");
    };
    let secret = match config::secret(&log.env) {
        Ok(secret) => secret,
        Err(e) => return json_error(500, &e.to_string()),
    };
    if !secret.accepts_internal(req.headers().get(INTERNAL_HEADER)?.as_deref()) {
        return json_error(403, "forbidden");
    }
    if !secret.accepts_header(req.headers().get("authorization")?.as_deref()) {
        return json_error(401, "unauthorized");
    }
    if !super::is_websocket_upgrade(&req) {
        return json_error(426, "expected a WebSocket upgrade");
    }
    let pair = WebSocketPair::new()?;
    wasm_bindgen_futures::spawn_local(export::run(log, pair.server));
    Response::from_websocket(pair.client)
}
