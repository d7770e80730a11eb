//! The SQL half of an object's log, inside a SQLite-backed object: `storage.sql` pinned, its
//! `exec` wrapped so that every statement is checked for durafetch's reserved names and followed,
//! when it may have changed the schema, by a sync of the triggers that record row changes
//! (`core::sql_capture`), and, when it wrote, by a report of the new head.
//!
//! The triggers record every row change whatever made it (a statement, a cascade, the user's own
//! triggers, a transaction, which rolls the records back with the rows); the wrapper only keeps
//! the triggers in step with the tables and tells the registry.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

use super::js_methods::js_error;
use super::object_log::ObjectLog;
use crate::core::sql_capture::{self, ColumnInfo, KnownTable, StatementText, TableShape};

/// The runtime's own `exec` of the object's SQL storage, and that storage.
pub(crate) struct SqlStorage {
    exec: Function,
    /// Weak, as the log holds the storage object: the SQL storage belongs to it.
    sql: js_sys::WeakRef<Object>,
}

impl SqlStorage {
    /// Runs `query` with `bindings` through the runtime's own `exec` (unrecorded: durafetch's
    /// own statements never name user tables' rows) and answers its rows as arrays.
    pub fn rows(&self, query: &str, bindings: &[JsValue]) -> Result<Array, JsValue> {
        let cursor = self.run(query, bindings)?;
        let raw: Function = Reflect::get(&cursor, &"raw".into())?.dyn_into()?;
        Ok(Array::from(&raw.call0(&cursor)?))
    }

    /// [`Self::rows`] as JSON values, crossing from JS as one JSON text: a read of thousands of
    /// values costs one crossing, not one per value. The query selects only what JSON carries
    /// exactly (`core::sql_capture::decode_value`).
    pub fn json_rows(&self, query: &str, bindings: &[JsValue]) -> Result<Vec<Vec<serde_json::Value>>, JsValue> {
        let text: String = js_sys::JSON::stringify(self.rows(query, bindings)?.as_ref())?.into();
        serde_json::from_str(&text).map_err(|e| js_error(&format!("durafetch: a SQL read did not parse: {e}")))
    }

    fn run(&self, query: &str, bindings: &[JsValue]) -> Result<JsValue, JsValue> {
        self.apply(&self.exec, query, bindings)
    }

    /// Runs `query` as the user's code would, through the wrapped `exec`: refused if it names
    /// durafetch's tables, followed by a sync if it changes the schema, and reported (a restore's
    /// statements).
    pub fn run_recorded(&self, query: &str, bindings: &[JsValue]) -> Result<JsValue, JsValue> {
        let sql = self.sql.deref().ok_or_else(|| js_error("durafetch: the object's storage is gone"))?;
        let wrapped: Function = Reflect::get(&sql, &"exec".into())?.dyn_into()?;
        self.apply(&wrapped, query, bindings)
    }

    fn apply(&self, exec: &Function, query: &str, bindings: &[JsValue]) -> Result<JsValue, JsValue> {
        let sql = self.sql.deref().ok_or_else(|| js_error("durafetch: the object's storage is gone"))?;
        let args = Array::of1(&query.into());
        for binding in bindings {
            args.push(binding);
        }
        Reflect::apply(exec, &sql, &args)
    }

    /// The head: odd while changes since the last export are recorded (see `core::sql_capture`).
    pub fn head(&self) -> Result<u64, JsValue> {
        self.number(sql_capture::HEAD, &[])
    }

    /// Closes the generation if anything changed in it, as an export does first; answers the
    /// head, which becomes the reader's cursor.
    pub fn close_generation(&self) -> Result<u64, JsValue> {
        self.number(sql_capture::CLOSE_GENERATION, &[])
    }

    /// Puts the head back to `head` if it is lower: a transaction that rolled back took away the
    /// generation's opening, which the registry has already been told of.
    pub fn raise_head(&self, head: u64) -> Result<(), JsValue> {
        self.run(sql_capture::RAISE_HEAD, &[(head as f64).into()]).map(drop)
    }

    /// The first value of the first row `query` answers, as a number (0 when none).
    fn number(&self, query: &str, bindings: &[JsValue]) -> Result<u64, JsValue> {
        let rows = self.rows(query, bindings)?;
        Ok(Array::from(&rows.get(0)).get(0).as_f64().unwrap_or(0.0) as u64)
    }

    /// What the log knows of each table.
    pub fn known(&self) -> Result<Vec<KnownTable>, JsValue> {
        Ok(self
            .rows(sql_capture::KNOWN_TABLES, &[])?
            .iter()
            .map(|r| {
                let r = Array::from(&r);
                KnownTable {
                    id: r.get(0).as_f64().unwrap_or(0.0) as i64,
                    name: r.get(1).as_string().unwrap_or_default(),
                    shape: r.get(2).as_string(),
                    mark: r.get(3).as_f64().unwrap_or(0.0) as i64,
                    gen: r.get(4).as_f64().unwrap_or(0.0) as u64,
                }
            })
            .collect())
    }

    /// The user tables as they now are.
    pub fn tables(&self) -> Result<Vec<TableShape>, JsValue> {
        let text = |v: JsValue| v.as_string().unwrap_or_default();
        let number = |v: JsValue| v.as_f64().unwrap_or(0.0);
        let mut shapes = Vec::new();
        for row in self.rows(sql_capture::LIST_TABLES, &[])?.iter() {
            let row = Array::from(&row);
            let name = text(row.get(0));
            let without_rowid = number(row.get(1)) != 0.0;
            let columns: Vec<ColumnInfo> = self
                .rows(sql_capture::TABLE_COLUMNS, &[name.clone().into()])?
                .iter()
                .map(|c| {
                    let c = Array::from(&c);
                    (text(c.get(0)), number(c.get(1)) as u32, text(c.get(2)), number(c.get(3)) as u32)
                })
                .collect();
            let unique: Vec<(String, String, i64, String, String)> = self
                .rows(sql_capture::UNIQUE_INDEX_COLUMNS, &[name.clone().into()])?
                .iter()
                .map(|c| {
                    let c = Array::from(&c);
                    (text(c.get(0)), text(c.get(1)), number(c.get(2)) as i64, text(c.get(3)), text(c.get(4)))
                })
                .collect();
            let mut shape = TableShape::from_columns(name, without_rowid, &columns).with_unique_indexes(&unique);
            shape.virtual_table = number(row.get(2)) != 0.0;
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// Makes durafetch's tables if they are missing: a new object, or `deleteAll`, which on a
    /// SQLite-backed object drops every table. A new head starts at `head` or above, so that the
    /// reported head never goes back. A log of the old layout is carried over first.
    pub fn ensure_schema(&self, head: u64) -> Result<(), JsValue> {
        if self.number(sql_capture::LEGACY_PRESENT, &[])? == 0 {
            return self.run(&sql_capture::schema(head), &[]).map(drop);
        }
        let old_head = self.number(sql_capture::LEGACY_HEAD, &[])?;
        let gone: Vec<JsValue> = self.rows(sql_capture::LEGACY_GONE, &[])?.iter().map(|r| Array::from(&r).get(0)).collect();
        self.run(sql_capture::LEGACY_DROP, &[])?;
        self.run(&sql_capture::schema(head.max(sql_capture::legacy_initial_head(old_head))), &[])?;
        // Readers whose cursor predates a table's going still learn of it.
        for name in gone {
            self.run(sql_capture::LEGACY_MARK_GONE, &[name])?;
        }
        Ok(())
    }

    /// Drops the conflict triggers, before a call that may drop a column one of them names
    /// (SQLite would refuse the user's statement). The sync after the call makes them again,
    /// and resends their tables whole, as for any trigger found missing.
    pub fn drop_conflict_triggers(&self) -> Result<(), JsValue> {
        for row in self.rows(sql_capture::OUR_TRIGGERS, &[])?.iter() {
            let name = Array::from(&row).get(0).as_string().unwrap_or_default();
            if TableShape::is_conflict_trigger(&name) {
                self.run(&format!("DROP TRIGGER IF EXISTS {}", sql_capture::ident(&name)), &[])?;
            }
        }
        Ok(())
    }

    /// Brings the triggers, the change sets and the table markers in step with the tables.
    pub fn sync(&self, class: &str, id: &str, head: u64) -> Result<(), JsValue> {
        self.ensure_schema(head)?;
        let pairs = |query: &str| -> Result<BTreeMap<String, String>, JsValue> {
            Ok(self
                .rows(query, &[])?
                .iter()
                .map(|r| {
                    let r = Array::from(&r);
                    (r.get(0).as_string().unwrap_or_default(), r.get(1).as_string().unwrap_or_default())
                })
                .collect())
        };
        let plan = sql_capture::plan_sync(&self.tables()?, &self.known()?, &pairs(sql_capture::OUR_TRIGGERS)?);
        for why in &plan.refused {
            worker::console_error!("{why} ({class} {id})");
        }
        for statement in &plan.statements {
            self.run(statement, &[])?;
        }
        Ok(())
    }
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

        // A Proxy's apply trap sees every argument, however many bindings the call passes.
        let log = Rc::downgrade(self);
        let trap = Closure::wrap(Box::new(move |target: Function, this: JsValue, args: Array| exec_hook(&log, &target, &this, &args))
            as Box<dyn Fn(Function, JsValue, Array) -> Result<JsValue, JsValue>>);
        let handler = Object::new();
        Reflect::set(&handler, &"apply".into(), &trap.into_js_value())?;
        let proxy = js_sys::Proxy::new(&exec, &handler);
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

fn exec_hook(log: &Weak<ObjectLog>, exec: &Function, this: &JsValue, args: &Array) -> Result<JsValue, JsValue> {
    // A query given as an object (`new String(..)`, anything with a `toString`) is made text
    // once, here: the text checked is the text run.
    let query = match args.get(0).as_string() {
        Some(query) => query,
        None => match args.get(0).dyn_ref::<Object>() {
            Some(object) => {
                let text: String = object.to_string().into();
                args.set(0, JsValue::from_str(&text));
                text
            }
            None => String::new(),
        },
    };
    let text = StatementText::read(&query);
    if text.names_reserved {
        return Err(js_error(&format!(
            "durafetch: this statement's text holds {} (any case), which names durafetch's change log (names starting with it are \
             durafetch's, and SQLite takes a string literal where a name goes); rename, or bind such text as a parameter",
            sql_capture::SQL_PREFIX
        )));
    }
    let log = log.upgrade();
    let sql = log.as_ref().and_then(|log| log.sql.get());
    if text.may_drop_column {
        sql.map_or(Ok(()), SqlStorage::drop_conflict_triggers)?;
    }
    let outcome = Reflect::apply(exec, this, args);
    let Some(log) = &log else { return outcome };
    // A statement that failed may follow others of the same call that ran: a table made before
    // the failure gets its triggers (and is resent whole), rows written before it are reported.
    if text.may_change_schema {
        // At once: the next statement may write to a table made by this one.
        if let Err(e) = sql.map_or(Ok(()), |sql| sql.sync(log.class, &log.id, log.sql_head.get())) {
            // The user's statement has run: failing it now would not undo it. The next sync (the
            // next schema statement, or the object's next start) catches up.
            worker::console_error!("durafetch: recording the SQL tables of {} {}: {e:?}", log.class, log.id);
        }
    }
    // Whether the call wrote is read from the change log's head at the end of the turn, not
    // from the cursor: a write's rows can come from the user's triggers, a later statement of
    // the same call or a `RETURNING` clause, and a read of the head costs one row read.
    log.note_sql_write();
    outcome
}

impl ObjectLog {
    /// Reads the SQL head once the statements of this turn have run (a loop of single-row
    /// statements costs one read, not one each), and reports it if it grew. The head grows at
    /// the first change after an export only: later changes leave it, and cost no report.
    fn note_sql_write(self: &Rc<Self>) {
        if self.sql_dirty.replace(true) {
            return;
        }
        let log = Rc::downgrade(self);
        let check = self.sql_check.get_or_init(|| {
            Closure::wrap(Box::new(move |_: JsValue| {
                let Some(log) = log.upgrade() else { return };
                log.sql_dirty.set(false);
                let Some(sql) = log.sql.get() else { return };
                match sql.head() {
                    Ok(head) if head > log.sql_head.get() => {
                        log.sql_head.set(head);
                        log.schedule_report();
                    }
                    // A transaction rolled back the generation's opening after it was reported:
                    // opened again, or readers at the even head would be behind for ever.
                    Ok(head) if head < log.sql_head.get() => {
                        if let Err(e) = sql.raise_head(log.sql_head.get()) {
                            worker::console_error!("durafetch: restoring the SQL head of {} {}: {e:?}", log.class, log.id);
                        }
                    }
                    Err(e) => worker::console_error!("durafetch: reading the SQL head of {} {}: {e:?}", log.class, log.id),
                    Ok(_) => {}
                }
            }) as Box<dyn FnMut(JsValue)>)
        });
        let _ = self.resolved.then(check);
    }
}

/// How many rows the change sets of the SQL half of the object's log hold: a debug view for tests.
pub fn sql_log_rows(state: &worker::State) -> worker::Result<u32> {
    let log = super::object_log::find(&state.id().to_string()).ok_or_else(|| worker::Error::RustError("not instrumented".into()))?;
    let Some(sql) = log.sql.get() else { return Ok(0) };
    let mut rows = 0;
    for set in sql.rows(sql_capture::CHANGE_SETS, &[])?.iter() {
        let set = Array::from(&set).get(0).as_string().unwrap_or_default();
        rows += sql.number(&format!("SELECT count(*) FROM {}", sql_capture::ident(&set)), &[])?;
    }
    Ok(rows as u32)
}

/// Closes the object's SQL generation as an export does first, so that the next changes are
/// marked anew: a debug view for benchmarks that measure what a change costs after an export.
pub fn sql_close_generation(state: &worker::State) -> worker::Result<u64> {
    let log = super::object_log::find(&state.id().to_string()).ok_or_else(|| worker::Error::RustError("not instrumented".into()))?;
    let Some(sql) = log.sql.get() else { return Ok(0) };
    let head = sql.close_generation()?;
    log.sql_head.set(head);
    Ok(head)
}
