//! Writing log rows, in the same commit as the writes they name: the pending row of a burst of
//! writes outside transactions, once the burst ends (a microtask turn check) or the row is full;
//! the rows of a write inside a transaction, in its own calls; and durafetch's own writes
//! (compaction, markers), made with the runtime's methods so that they are not recorded.

use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::js_methods::{js_error, Methods, Target, NOT_INSTRUMENTED};
use super::object_log::ObjectLog;
use crate::core::cursor::Cursor;
use crate::core::keys::log_key;
use crate::core::pending_row::{row_runs, Noted, TakenRow, Turn};

impl ObjectLog {
    /// A write outside a transaction: storage takes the call unchanged, then its keys join the
    /// pending row (a write storage refused at once changed nothing).
    pub fn write_then_note(
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
    pub fn pending_turn(self: &Rc<Self>) {
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
    pub fn write_pending_row(self: &Rc<Self>) -> Result<(), JsValue> {
        let (TakenRow { keys, allow_unconfirmed, .. }, names) = self.pending.borrow_mut().take();
        if keys.is_empty() {
            return Ok(());
        }
        let written = self.own_methods().and_then(|methods| {
            let options = Object::new();
            if allow_unconfirmed {
                Reflect::set(&options, &"allowUnconfirmed".into(), &true.into())?;
            }
            self.put_rows(methods, self.storage()?.as_ref(), Target::Storage, (&keys, &names), &options)
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
    pub fn put_rows(
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
    pub fn own_methods(&self) -> Result<&Methods, JsValue> {
        self.storage_methods.get().map(|m| &**m).ok_or_else(|| js_error(NOT_INSTRUMENTED))
    }

    /// Issues durafetch's own writes (compaction, markers) with the runtime's methods (they are not logged): the put
    /// first, then the deletes, in one synchronous step.
    pub fn rewrite(&self, put: Option<Object>, delete: &[Cursor]) -> Result<Vec<js_sys::Promise>, JsValue> {
        let methods = self.own_methods()?;
        let storage = self.storage()?;
        let target: &JsValue = storage.as_ref();
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
}

/// A row write that storage accepted but failed later leaves writes without a row: say so, since
/// pullers will not see them until their next snapshot.
async fn report_failed_row(log: Rc<ObjectLog>, row: js_sys::Promise) {
    if let Err(e) = wasm_bindgen_futures::JsFuture::from(row).await {
        worker::console_error!("durafetch: storing a change-log row of {} {} failed: {e:?}", log.class, log.id);
    }
}

pub(crate) fn log_entry(at: Cursor, keys: &Array) -> Result<JsValue, JsValue> {
    let entry = Object::new();
    Reflect::set(&entry, &log_key(at).into(), keys)?;
    Ok(entry.into())
}
