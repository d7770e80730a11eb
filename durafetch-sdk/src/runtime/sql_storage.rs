//! The object's SQL storage as durafetch reads and writes it: the runtime's own `exec` (never
//! the wrapped one, so durafetch's statements are not checked or recorded), the head, the
//! tables as they are and as the log knows them, and the sync that keeps the change sets and
//! triggers in step with them (`core::sql_capture`).

use std::collections::BTreeMap;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::js_methods::js_error;
use crate::core::sql_capture::{self, ColumnInfo, IndexColumn, KnownTable, TableShape};
use crate::core::sql_restore::{AUTOINCREMENT_COUNTERS, HAS_AUTOINCREMENT_TABLE};

/// The runtime's own `exec` of the object's SQL storage, and that storage.
pub(crate) struct SqlStorage {
    pub(super) exec: Function,
    /// Weak, as the log holds the storage object: the SQL storage belongs to it.
    pub(super) sql: js_sys::WeakRef<Object>,
}

impl SqlStorage {
    /// Runs `query` with `bindings` through the runtime's own `exec` (unrecorded: durafetch's
    /// own statements never name user tables' rows) and answers its rows as arrays.
    pub fn rows(&self, query: &str, bindings: &[JsValue]) -> Result<Array, JsValue> {
        let cursor = self.run(query, bindings)?;
        let raw: Function = Reflect::get(&cursor, &"raw".into())?.dyn_into()?;
        Ok(Array::from(&raw.call0(&cursor)?))
    }

    /// Each AUTOINCREMENT table's counter, by its name as `sqlite_sequence` holds it. SQLite makes
    /// `sqlite_sequence` with the first AUTOINCREMENT table; before then there is none to read.
    pub fn autoincrement_counters(&self) -> Result<BTreeMap<String, i64>, JsValue> {
        let mut counters = BTreeMap::new();
        if self.rows(HAS_AUTOINCREMENT_TABLE, &[])?.length() == 0 {
            return Ok(counters);
        }
        for row in self.rows(AUTOINCREMENT_COUNTERS, &[])?.iter() {
            let row = Array::from(&row);
            if let (Some(table), Some(counter)) = (row.get(0).as_string(), row.get(1).as_string().and_then(|seq| seq.parse().ok())) {
                counters.insert(table, counter);
            }
        }
        Ok(counters)
    }

    pub(super) fn run(&self, query: &str, bindings: &[JsValue]) -> Result<JsValue, JsValue> {
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
    pub(crate) fn number(&self, query: &str, bindings: &[JsValue]) -> Result<u64, JsValue> {
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
            let unique: Vec<IndexColumn> = self
                .rows(sql_capture::UNIQUE_INDEX_COLUMNS, &[name.clone().into()])?
                .iter()
                .map(|c| {
                    let c = Array::from(&c);
                    (text(c.get(0)), text(c.get(1)), number(c.get(2)) as i64, text(c.get(3)), text(c.get(4)), c.get(5).as_string())
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
