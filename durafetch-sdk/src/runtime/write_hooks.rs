//! The write hooks: `put`, `delete`, `deleteAll`, `list` and `transaction` replaced, on the
//! raw storage object and on each transaction object, by functions that record which keys every
//! write call changed, in the same commit as the write.

use std::cell::OnceCell;
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Map, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use super::js_methods::{bind_hook, js_error, Methods, Target, NOT_INSTRUMENTED};
use super::list_filter::list_outside_reserved;
use super::object_log::ObjectLog;
use super::rows::log_entry;
use super::value::converted_faithfully;
use crate::core::cursor::Cursor;
use crate::core::keys::{check_user_key, log_key};
use crate::core::pending_row::row_runs;
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// The hook functions for one kind of target, owned by JS: they live as long as the targets they
/// are bound to, and reach the log only weakly.
pub(crate) struct WriteHooks {
    put: JsValue,
    delete: JsValue,
    delete_all: JsValue,
    list: JsValue,
}

impl WriteHooks {
    fn new(log: Weak<ObjectLog>, methods: Rc<Methods>, target_kind: Target) -> Self {
        let (l, m) = (log.clone(), methods.clone());
        let put = Closure::wrap(Box::new(move |target: JsValue, a: JsValue, b: JsValue, c: JsValue| {
            with_log(&l)?.put(&m, &target, target_kind, a, b, c)
        }) as Box<dyn Fn(_, _, _, _) -> Result<JsValue, JsValue>>);
        let (l, m) = (log.clone(), methods.clone());
        let delete = Closure::wrap(Box::new(move |target: JsValue, keys: JsValue, options: JsValue| {
            with_log(&l)?.delete(&m, &target, target_kind, keys, options)
        }) as Box<dyn Fn(_, _, _) -> Result<JsValue, JsValue>>);
        let (l, m) = (log.clone(), methods.clone());
        let delete_all = Closure::wrap(Box::new(move |target: JsValue, options: JsValue| with_log(&l)?.delete_all(&m, &target, options))
            as Box<dyn Fn(_, _) -> Result<JsValue, JsValue>>);
        let list = Closure::wrap(Box::new(move |target: JsValue, options: JsValue| list_outside_reserved(&methods.list, &target, options))
            as Box<dyn Fn(_, _) -> Result<JsValue, JsValue>>);
        Self {
            put: put.into_js_value(),
            delete: delete.into_js_value(),
            delete_all: delete_all.into_js_value(),
            list: list.into_js_value(),
        }
    }

    fn install_on(&self, target: &JsValue) -> Result<(), JsValue> {
        bind_hook(target, "put", &self.put)?;
        bind_hook(target, "delete", &self.delete)?;
        bind_hook(target, "deleteAll", &self.delete_all)?;
        bind_hook(target, "list", &self.list)
    }
}

fn with_log(log: &Weak<ObjectLog>) -> Result<Rc<ObjectLog>, JsValue> {
    log.upgrade().ok_or_else(|| js_error("durafetch: storage used after its object was replaced"))
}

impl ObjectLog {
    /// Installs the hooks on the object's raw storage `target`.
    pub fn install_hooks(self: &Rc<Self>, target: &Object) -> Result<(), JsValue> {
        let target: &JsValue = target.as_ref();
        let methods = Rc::new(Methods::of_prototype(target)?);
        WriteHooks::new(Rc::downgrade(self), methods.clone(), Target::Storage).install_on(target)?;
        let _ = self.storage_methods.set(methods);

        // The hooks of transaction objects, made at the first transaction and bound to each.
        let transaction_hooks: Rc<OnceCell<WriteHooks>> = Rc::default();
        let original: Function = Reflect::get(&Object::get_prototype_of(target), &"transaction".into())?.dyn_into()?;
        let log = Rc::downgrade(self);
        let hook = Closure::wrap(Box::new(move |target: JsValue, body: JsValue, options: JsValue| {
            with_log(&log)?.transaction(&original, &transaction_hooks, &target, body, options)
        }) as Box<dyn Fn(_, _, _) -> Result<JsValue, JsValue>>);
        bind_hook(target, "transaction", &hook.into_js_value())?;

        let log = Rc::downgrade(self);
        let check = Closure::wrap(Box::new(move |_: JsValue| {
            if let Some(log) = log.upgrade() {
                log.pending_turn();
            }
        }) as Box<dyn FnMut(JsValue)>);
        let _ = self.turn_check.set(check);
        Ok(())
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
            // Defined, not assigned: a key `__proto__` stays a key.
            let entries = Object::from_entries(&Array::of1(&Array::of2(&a, &b)))?;
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
        if (keys.length() as usize) < MAX_KEYS_PER_CALL && fits_one_row(&names) {
            let at = self.next_position()?;
            let with_row = entries.into_own()?;
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
        // On a SQLite-backed object this also dropped every table, durafetch's included; the
        // head starts again from where it was, so the reported head never goes back.
        if let Err(e) = self.sync_sql() {
            worker::console_error!("durafetch: cannot record the SQL tables of {} {} after deleteAll: {e:?}", self.class, self.id);
        }
        m.put.call1(target, &log_entry(at, &Array::new())?)?;
        self.compactor.borrow_mut().reset();
        self.floor.set(at);
        self.swept_to.set(at);
        self.schedule_report();
        Ok(promise)
    }

    /// `transaction(body)`: the body receives a transaction object carrying the same hooks, so its
    /// writes and their log rows commit or roll back together.
    fn transaction(
        self: &Rc<Self>,
        original: &Function,
        hooks: &Rc<OnceCell<WriteHooks>>,
        target: &JsValue,
        body: JsValue,
        options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let body: Function = body.dyn_into()?;
        // Written before the transaction opens: a row written while it is open could roll back
        // with it, while the writes the row names stay.
        self.write_pending_row()?;
        let (log, hooks) = (Rc::downgrade(self), hooks.clone());
        let wrapped = Closure::once_into_js(move |txn: JsValue| -> Result<JsValue, JsValue> {
            let log = with_log(&log)?;
            if hooks.get().is_none() {
                let made = WriteHooks::new(Rc::downgrade(&log), Rc::new(Methods::of_prototype(&txn)?), Target::Transaction);
                let _ = hooks.set(made);
            }
            hooks.get().ok_or_else(|| js_error(NOT_INSTRUMENTED))?.install_on(&txn)?;
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

    /// After a write call: feeds the compactor (outside transactions) and the registry report.
    pub fn changed(self: &Rc<Self>, kind: Target, at: Cursor, keys: &[String]) {
        if kind == Target::Storage {
            self.feed_compactor(at, keys);
        }
        self.schedule_report();
    }
}

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

    /// An object that may take the log row: the fresh one, or a copy of the caller's, made
    /// property by property (`Object.assign` would set the prototype for a key `__proto__`).
    fn into_own(self) -> Result<Object, JsValue> {
        match self {
            Entries::Callers(object) => Object::from_entries(&Object::entries(&object)),
            Entries::Own(object) => Ok(object),
        }
    }
}

/// The entries of a multi-key put. A JS `Map` (what `put_multiple` makes of a `HashMap` or
/// `json!` value) is turned into a plain object, which storage would otherwise ignore without
/// an error; `None` for anything else storage cannot take.
fn entries_object(value: &JsValue) -> Result<Option<Entries>, JsValue> {
    if let Some(map) = value.dyn_ref::<Map>() {
        let mut all_strings = true;
        map.for_each(&mut |_, k| all_strings &= k.is_string());
        if !all_strings {
            return Err(js_error("durafetch: put_multiple needs string keys"));
        }
        // Defined property by property, so a key such as `__proto__` is a key.
        return Ok(Some(Entries::Own(Object::from_entries(map)?)));
    }
    if value.is_object() && !Array::is_array(value) {
        return Ok(Some(Entries::Callers(value.clone().unchecked_into())));
    }
    Ok(None)
}
