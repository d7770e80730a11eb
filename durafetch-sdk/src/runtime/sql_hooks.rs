//! The SQL half of an object's log, inside a SQLite-backed object: `storage.sql` pinned, its
//! `exec` wrapped so that every statement is checked for durafetch's reserved names and followed,
//! when it may have changed the schema, by a sync of the change sets and triggers that record
//! row changes (`sql_storage`, `core::sql_capture`), and at the end of the turn by a read of the
//! head, reported when it grew.
//!
//! The triggers record every row change whatever made it (a statement, a cascade, the user's own
//! triggers, a transaction, which rolls the marks back with the rows); the wrapper only keeps
//! the triggers in step with the tables and tells the registry.

use std::rc::{Rc, Weak};

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

use super::js_methods::js_error;
use super::object_log::ObjectLog;
use super::sql_storage::SqlStorage;
use crate::core::sql_capture::{self, StatementText};

// The wrapper's every-call path stays in JS: a call crosses into wasm only the first time its
// text is seen (to read it), when its text asks for more (a refusal, a schema change), and once
// per turn (the head). Crossing with the text on every call cost more than the triggers.
#[wasm_bindgen(inline_js = r#"
// Texts are kept (their answers) only when short: an app that writes values into its texts would
// otherwise keep every one of them alive.
const REFUSE_OR_DROP = 1 | 4, SCHEMA = 2, KEPT_TEXTS = 512, KEPT_TEXT_CHARS = 4096;

export function wrapExec(exec, read, before, afterSchema, endOfTurn) {
  const known = new Map();
  let turn = false;
  return new Proxy(exec, {
    apply(target, thisArg, args) {
      let query = args[0];
      // A query given as an object or a function (`new String(..)`, anything with a `toString`)
      // is made text once, here: the text checked is the text run.
      if ((typeof query === "object" && query !== null) || typeof query === "function") {
        query = String(query);
        args[0] = query;
      }
      let flags = 0;
      if (typeof query === "string") {
        flags = known.get(query);
        if (flags === undefined) {
          flags = read(query);
          if (query.length <= KEPT_TEXT_CHARS) {
            if (known.size >= KEPT_TEXTS) known.clear();
            known.set(query, flags);
          }
        }
      }
      if (flags & REFUSE_OR_DROP) before(flags);
      try {
        return Reflect.apply(target, thisArg, args);
      } finally {
        // A call that failed may follow statements of its own that ran.
        if (flags & SCHEMA) afterSchema();
        if (!turn) {
          turn = true;
          Promise.resolve().then(() => { turn = false; endOfTurn(); });
        }
      }
    },
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = wrapExec)]
    fn wrap_exec(exec: &Function, read: &Function, before: &Function, after_schema: &Function, end_of_turn: &Function) -> JsValue;
}

impl ObjectLog {
    /// On a SQLite-backed object: pins `storage.sql`, wraps its `exec` and has row changes
    /// recorded from now on. Nothing the object's own statements can observe changes: no
    /// setting is touched, and the triggers only write durafetch's tables. On a key-value object
    /// nothing is done.
    pub fn install_sql_hooks(self: &Rc<Self>, storage: &Object) -> Result<(), JsValue> {
        let Ok(sql) = Reflect::get(storage, &"sql".into()) else { return Ok(()) };
        let Ok(sql) = sql.dyn_into::<Object>() else { return Ok(()) };
        let exec: Function = Reflect::get(&Object::get_prototype_of(&sql), &"exec".into())?.dyn_into()?;
        let captured = SqlStorage { exec: exec.clone(), sql: js_sys::WeakRef::new(&sql) };
        if let Err(e) = captured.run("SELECT 1", &[]) {
            // A key-value-backed object has `sql`, but every statement fails with this.
            if worker::Error::from(e.clone()).to_string().contains("SQL is not enabled") {
                return Ok(());
            }
            return Err(e);
        }
        let descriptor = Object::new();
        Reflect::set(&descriptor, &"value".into(), &sql)?;
        Object::define_property(storage, &"sql".into(), &descriptor);

        let read = Closure::wrap(Box::new(|query: String| StatementText::read(&query).flags()) as Box<dyn Fn(String) -> u32>);
        let log = Rc::downgrade(self);
        let before = Closure::wrap(
            Box::new(move |flags: u32| before_exec(&log, StatementText::from_flags(flags))) as Box<dyn Fn(u32) -> Result<(), JsValue>>
        );
        let log = Rc::downgrade(self);
        let after_schema = Closure::wrap(Box::new(move || after_schema_change(&log)) as Box<dyn Fn()>);
        let log = Rc::downgrade(self);
        let end_of_turn = Closure::wrap(Box::new(move || end_of_turn(&log)) as Box<dyn Fn()>);
        let proxy = wrap_exec(
            &exec,
            read.into_js_value().unchecked_ref(),
            before.into_js_value().unchecked_ref(),
            after_schema.into_js_value().unchecked_ref(),
            end_of_turn.into_js_value().unchecked_ref(),
        );
        Reflect::set(&sql, &"exec".into(), &proxy)?;
        let _ = self.sql.set(captured);
        Ok(())
    }

    /// Syncs the triggers and reads the SQL head, at load and after a statement that may have
    /// changed the schema.
    pub fn sync_sql(&self) -> Result<(), JsValue> {
        let Some(sql) = self.sql.get() else { return Ok(()) };
        sql.sync(self.class, &self.id, self.sql_head.get())?;
        self.sql_head.set(sql.head()?);
        Ok(())
    }
}

/// Before a call whose text names durafetch's tables (refused) or may drop a column.
fn before_exec(log: &Weak<ObjectLog>, text: StatementText) -> Result<(), JsValue> {
    if text.names_reserved {
        return Err(js_error(&format!(
            "durafetch: this statement's text holds {} (any case), which names durafetch's change log (names starting with it are \
             durafetch's, and SQLite takes a string literal where a name goes); rename, or bind such text as a parameter",
            sql_capture::SQL_PREFIX
        )));
    }
    match log.upgrade().as_ref().and_then(|log| log.sql.get()) {
        Some(sql) if text.may_drop_column => sql.drop_conflict_triggers(),
        _ => Ok(()),
    }
}

/// After a call that may have changed the schema: at once, as the next statement may write to a
/// table made by this one.
fn after_schema_change(log: &Weak<ObjectLog>) {
    let Some(log) = log.upgrade() else { return };
    let Some(sql) = log.sql.get() else { return };
    // The head the sync's markers open is read, and reported, at the end of the turn.
    if let Err(e) = sql.sync(log.class, &log.id, log.sql_head.get()) {
        // The user's statement has run: failing it now would not undo it. The next sync (the
        // next schema statement, or the object's next start) catches up.
        worker::console_error!("durafetch: recording the SQL tables of {} {}: {e:?}", log.class, log.id);
    }
}

/// Once the statements of a turn have run, the head is read (a loop of single-row statements
/// costs one read, not one each) and reported if it grew. It grows at the first change after an
/// export only: later changes leave it, and cost no report.
fn end_of_turn(log: &Weak<ObjectLog>) {
    let Some(log) = log.upgrade() else { return };
    let Some(sql) = log.sql.get() else { return };
    match sql.head() {
        Ok(head) if head > log.sql_head.get() => {
            log.sql_head.set(head);
            log.schedule_report();
        }
        // A transaction rolled back the generation's opening after it was reported: opened
        // again, or readers at the even head would be behind for ever.
        Ok(head) if head < log.sql_head.get() => {
            if let Err(e) = sql.raise_head(log.sql_head.get()) {
                worker::console_error!("durafetch: restoring the SQL head of {} {}: {e:?}", log.class, log.id);
            }
        }
        Ok(_) => {}
        Err(e) => worker::console_error!("durafetch: reading the SQL head of {} {}: {e:?}", log.class, log.id),
    }
}
