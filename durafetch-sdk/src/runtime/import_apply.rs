//! A restore's `end`: everything its session staged applied in one transaction of the object's
//! storage, through the object's own hooked `put` and `delete` and wrapped `exec`, so that the
//! writes are recorded as any write of the user's is. The mode's decision is taken inside the
//! same transaction, and nothing the application runs can come between it and the writes: the
//! transaction waits only on storage, which holds the object's other events back. A failure at
//! any step rolls the whole transaction back: the object is as it was.
//!
//! SQL tables are dropped children first and filled parents first (`core::sql_restore`), with
//! foreign key checks deferred to the end and made there, so that neither a cascade nor the
//! order of rows can leave a table short; the application's own setting is put back.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::flow::SessionError;
use super::import_stage::Stage;
use super::js_methods::js_error;
use super::object_log::ObjectLog;
use super::sql_storage::SqlStorage;
use super::storage::{holds_user_keys, RangeScan};
use super::value_decode::decode;
use crate::core::keys::{RESERVED_END, RESERVED_PREFIX};
use crate::core::protocol::{Change, ChangeValue, SqlPage, SqlValue};
use crate::core::restore_protocol::{Applied, ImportMode, ImportRequest, KeyScope};
use crate::core::sql_capture::{ident, TableShape};
use crate::core::sql_restore::{
    count_rows, insert_rows, parents_first, rows_json, FOREIGN_KEY_CHECK, FOREIGN_KEY_PARENTS, HAS_AUTOINCREMENT_TABLE,
    RAISE_AUTOINCREMENT, START_AUTOINCREMENT,
};
use crate::core::storage_api::MAX_KEYS_PER_CALL;

/// What a session staged, and how to apply it.
pub(crate) struct Plan {
    pub mode: ImportMode,
    /// The keys a replace deletes when no page writes them.
    pub keys: KeyScope,
    pub stage: Stage,
    /// The staged `put` requests, in key order.
    pub key_pages: Vec<u32>,
    /// The tables to make, in the order they came, each with its staged `rows` requests.
    pub tables: Vec<StagedTable>,
    /// The tables a replace drops because the backup lacks them.
    pub drops: Vec<String>,
}

pub(crate) struct StagedTable {
    pub name: String,
    pub statements: Vec<String>,
    /// The backup's AUTOINCREMENT counter of the table.
    pub autoincrement: Option<i64>,
    pub pages: Vec<u32>,
}

/// Why an apply failed, and whose it is to fix.
enum Failure {
    /// What the backup asks for cannot be done here (a schema that does not fit, a row that breaks
    /// a constraint): the client is told SQLite's or durafetch's reason.
    Backup(String),
    /// The storage or the runtime failed.
    Storage(JsValue),
}

impl From<JsValue> for Failure {
    fn from(e: JsValue) -> Self {
        Failure::Storage(e)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure::Storage(e.to_string().into())
    }
}

/// How an apply ended, when it did not fail.
pub(crate) enum Ending {
    Applied(Applied),
    /// `--mode empty`, and the object holds data: nothing was written.
    Refused(String),
}

/// Applies `plan` to the object in one transaction of `storage` (the hooked storage object).
pub(crate) async fn apply(log: Rc<ObjectLog>, storage: &Object, plan: Plan) -> Result<Ending, SessionError> {
    let outcome: Rc<RefCell<Option<Result<Ending, Failure>>>> = Rc::default();
    let (out, plan) = (outcome.clone(), Rc::new(plan));
    let body = Closure::once_into_js(move |txn: JsValue| -> JsValue {
        wasm_bindgen_futures::future_to_promise(async move {
            let result = match txn.dyn_into::<Object>() {
                Ok(txn) => run(&log, &txn, &plan).await,
                Err(_) => Err(Failure::Backup("the runtime gave no transaction object".into())),
            };
            // A failure rejects the body, which rolls the whole transaction back.
            let failed = result.is_err();
            *out.borrow_mut() = Some(result);
            if failed {
                Err(js_error("durafetch: the restore failed; rolled back"))
            } else {
                Ok(JsValue::UNDEFINED)
            }
        })
        .into()
    });
    // The hooked `transaction`, which gives the body a transaction object carrying the hooks.
    let transaction: js_sys::Function = Reflect::get(storage, &"transaction".into())?.dyn_into()?;
    let promise: js_sys::Promise = transaction.call1(storage, &body)?.dyn_into()?;
    let committed = JsFuture::from(promise).await;
    let result = outcome.borrow_mut().take();
    match (result, committed) {
        (Some(Ok(ending)), Ok(_)) => Ok(ending),
        (Some(Err(Failure::Backup(message))), _) => Err(SessionError::BadRequest(message)),
        (Some(Err(Failure::Storage(e))), _) | (_, Err(e)) => Err(SessionError::Server(worker::Error::from(e).to_string())),
        (None, Ok(_)) => Err(SessionError::Server("the restore's transaction ended without applying".into())),
    }
}

async fn run(log: &ObjectLog, txn: &Object, plan: &Plan) -> Result<Ending, Failure> {
    let sql = log.sql.get();
    if plan.mode == ImportMode::Empty {
        let has_tables = match sql {
            Some(sql) => !sql.tables()?.is_empty(),
            None => false,
        };
        if has_tables || holds_user_keys(txn).await? {
            let holds = if has_tables { "SQL tables" } else { "keys" };
            let message = format!(
                "{} {} holds data ({holds}); --mode empty writes only into objects that hold none: use --mode replace or --mode merge",
                log.class, log.id
            );
            return Ok(Ending::Refused(message));
        }
    }
    let mut applied = Applied::default();
    write_keys(txn, plan, &mut applied).await?;
    if let Some(sql) = sql {
        write_tables(sql, txn, plan, &mut applied).await?;
    }
    plan.stage.remove(txn).await?;
    Ok(Ending::Applied(applied))
}

/// Writes the staged key pages in order; a replace first deletes, before each page's last key,
/// the keys of its scope that no page writes, and after the last page every such key left.
async fn write_keys(txn: &Object, plan: &Plan, applied: &mut Applied) -> Result<(), Failure> {
    let replace = plan.mode == ImportMode::Replace;
    let mut after: Option<String> = None;
    for &index in &plan.key_pages {
        let text = plan.stage.read(txn, index).await?;
        let ImportRequest::Put { changes } = ImportRequest::parse(&text).map_err(|e| Failure::Backup(e.to_string()))? else {
            return Err(Failure::Backup("a staged key page is not a put".into()));
        };
        let Some(last) = changes.last().map(|c| c.key.clone()) else { continue };
        if replace {
            let written: HashSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
            applied.keys_deleted += delete_unwritten(txn, &plan.keys, after.as_deref(), Some(&last), &written).await?;
        }
        let (deleted, written) = put(txn, &changes).await?;
        applied.keys_deleted += deleted;
        applied.keys_written += written;
        after = Some(last);
    }
    if replace {
        applied.keys_deleted += delete_unwritten(txn, &plan.keys, after.as_deref(), None, &HashSet::new()).await?;
    }
    Ok(())
}

/// Deletes the user keys after `after` and up to `through` (inclusive; to the end without it)
/// that `scope` keeps and `written` lacks; answers how many.
async fn delete_unwritten(
    txn: &Object,
    scope: &KeyScope,
    after: Option<&str>,
    through: Option<&str>,
    written: &HashSet<&str>,
) -> Result<u64, JsValue> {
    // The smallest key above `through`, as a range's exclusive end.
    let end_above = through.map(|t| format!("{t}\u{0}"));
    let mut deleted = 0;
    for (start, end) in [(None, Some(RESERVED_PREFIX)), (Some(RESERVED_END), None)] {
        let end = match (end, end_above.as_deref()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let (Some(after), Some(end)) = (after, end) {
            if after >= end {
                continue;
            }
        }
        if let (Some(start), Some(end)) = (start, end) {
            if start >= end {
                continue;
            }
        }
        let mut scan = RangeScan::new(start, end);
        if let Some(after) = after.filter(|a| start.is_none_or(|s| *a >= s)) {
            scan.resume_after(after);
        }
        while let Some(page) = scan.next_page(txn, MAX_KEYS_PER_CALL).await? {
            let doomed: Array = page
                .keys()
                .into_iter()
                .filter_map(|k| k.ok())
                .filter(|k| k.as_string().is_some_and(|k| scope.keeps(&k) && !written.contains(k.as_str())))
                .collect();
            if doomed.length() > 0 {
                deleted += call_hooked(txn, "delete", &doomed).await?.as_f64().unwrap_or(0.0) as u64;
            }
        }
    }
    Ok(deleted)
}

/// Writes a page's values and deletes its deletions through the hooked methods, at most 128
/// keys a call; a key the backup holds without a value is left as it is. Answers (deleted,
/// written).
async fn put(txn: &Object, changes: &[Change]) -> Result<(u64, u64), Failure> {
    let changes = changes.iter().filter(|c| !matches!(c.value, ChangeValue::Unsupported(_)));
    let (deletions, writes): (Vec<&Change>, Vec<&Change>) = changes.partition(|c| c.value == ChangeValue::Deleted);
    let mut deleted = 0;
    for chunk in deletions.chunks(MAX_KEYS_PER_CALL) {
        let keys: Array = chunk.iter().map(|c| JsValue::from_str(&c.key)).collect();
        deleted += call_hooked(txn, "delete", &keys).await?.as_f64().unwrap_or(0.0) as u64;
    }
    let mut calls = Vec::new();
    for chunk in writes.chunks(MAX_KEYS_PER_CALL) {
        let entries = Array::new();
        for change in chunk {
            let value = decode(&change.value).map_err(|why| Failure::Backup(format!("key {:?}: {why}", change.key)))?;
            entries.push(&Array::of2(&JsValue::from_str(&change.key), &value));
        }
        // Defined property by property, so a key such as `__proto__` is a key.
        calls.push(start_hooked(txn, "put", &Object::from_entries(&entries)?.into())?);
    }
    // The calls go out together and are awaited together: storage takes them in order.
    JsFuture::from(js_sys::Promise::all(&calls.into_iter().collect::<Array>())).await?;
    Ok((deleted, writes.len() as u64))
}

/// Drops what the mode drops, makes the backup's tables and writes their rows, all with foreign
/// key checks deferred to one check at the end.
async fn write_tables(sql: &SqlStorage, txn: &Object, plan: &Plan, applied: &mut Applied) -> Result<(), Failure> {
    if plan.tables.is_empty() && plan.drops.is_empty() {
        return Ok(());
    }
    let deferred = sql.rows("PRAGMA defer_foreign_keys", &[])?;
    let was_deferred = Array::from(&deferred.get(0)).get(0).as_f64().unwrap_or(0.0) != 0.0;
    sql.rows("PRAGMA defer_foreign_keys = ON", &[])?;
    let outcome = write_tables_deferred(sql, txn, plan, applied).await;
    if !was_deferred {
        sql.rows("PRAGMA defer_foreign_keys = OFF", &[])?;
    }
    outcome
}

async fn write_tables_deferred(sql: &SqlStorage, txn: &Object, plan: &Plan, applied: &mut Applied) -> Result<(), Failure> {
    let named = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    let backup: Vec<String> = plan.tables.iter().map(|t| t.name.clone()).collect();
    let held = sql.tables()?;
    let going: Vec<String> = held
        .iter()
        .map(|t| t.name.clone())
        .filter(|name| named(&plan.drops, name) || (plan.mode == ImportMode::Replace && named(&backup, name)))
        .collect();
    // Dropping a table deletes its rows first, and the user's `ON DELETE` actions would reach a
    // child the restore does not make again: refused, before anything is dropped.
    for (child, parents) in with_parents(sql, &held.iter().map(|t| t.name.clone()).filter(|n| !named(&going, n)).collect::<Vec<_>>())? {
        if let Some(parent) = parents.iter().find(|p| named(&going, p)) {
            return Err(Failure::Backup(format!(
                "table {child}, which this restore does not write, refers to table {parent}, which it drops and makes again: restore \
                 the two together (add --table {child}), or use --mode merge; nothing was restored"
            )));
        }
    }
    // A dropped table's counter goes with it, and the keys it handed out after the backup may
    // be held by the app's clients: the table made again counts on from the larger counter.
    let dropped_counters: BTreeMap<String, i64> = sql
        .autoincrement_counters()?
        .into_iter()
        .filter(|(name, _)| named(&going, name))
        .map(|(name, counter)| (name.to_ascii_lowercase(), counter))
        .collect();
    for table in parents_first(&with_parents(sql, &going)?).into_iter().rev() {
        applied.rows_deleted += count(sql, &table)?;
        sql.run_recorded(&format!("DROP TABLE {}", ident(&table)), &[]).map_err(|e| statement_error(&table, e))?;
    }
    let mut shapes = by_name(sql.tables()?);
    let mut made = Vec::new();
    for table in &plan.tables {
        if shapes.contains_key(&table.name.to_ascii_lowercase()) {
            continue; // merge keeps a table the object has
        }
        made.push(table.name.to_ascii_lowercase());
        for statement in &table.statements {
            sql.run_recorded(statement, &[]).map_err(|e| statement_error(&table.name, e))?;
        }
        shapes = by_name(sql.tables()?);
        if !shapes.contains_key(&table.name.to_ascii_lowercase()) {
            return Err(Failure::Backup(format!("the schema sent for table {} made no table of that name", table.name)));
        }
    }
    for name in parents_first(&with_parents(sql, &backup)?) {
        let Some(table) = plan.tables.iter().find(|t| t.name == name) else { continue };
        let shape = &shapes[&name.to_ascii_lowercase()];
        for &index in &table.pages {
            let text = plan.stage.read(txn, index).await?;
            let ImportRequest::Rows(page) = ImportRequest::parse(&text).map_err(|e| Failure::Backup(e.to_string()))? else {
                return Err(Failure::Backup("a staged row page is not rows".into()));
            };
            applied.rows_written += write_rows(sql, shape, &page)?;
        }
        let lower = name.to_ascii_lowercase();
        if let Some(counter) = table.autoincrement.max(dropped_counters.get(&lower).copied()) {
            // A backup's counter says its table is AUTOINCREMENT, and so is the one made from it.
            let start = table.autoincrement.is_some() && made.contains(&lower);
            raise_autoincrement(sql, &shape.name, counter, start)?;
        }
    }
    // The restored tables only: a violation elsewhere is the app's, and the checks above keep
    // the restore from making one there.
    for table in &backup {
        let broken = sql.rows(FOREIGN_KEY_CHECK, &[table.into()])?;
        if broken.length() > 0 {
            let first = Array::from(&broken.get(0));
            let text = |v: JsValue| v.as_string().or_else(|| v.as_f64().map(|n| n.to_string())).unwrap_or_else(|| "?".into());
            return Err(Failure::Backup(format!(
                "the restored rows break {} foreign key reference(s) of table {table}: the first, row {} names a row table {} lacks; \
                 nothing was restored",
                broken.length(),
                text(first.get(1)),
                text(first.get(2))
            )));
        }
    }
    Ok(())
}

/// Raises the table's AUTOINCREMENT counter to `counter`: the rows written have raised it to
/// their largest key already, but the backup's may be larger (its largest rows were deleted), and
/// a key once handed out must not be handed out again. `start`: the table is AUTOINCREMENT and
/// gets the counter even if its rows made none. An object without `sqlite_sequence` has no
/// AUTOINCREMENT table (a merge kept its own table, made without it): nothing to raise.
fn raise_autoincrement(sql: &SqlStorage, table: &str, counter: i64, start: bool) -> Result<(), Failure> {
    if sql.rows(HAS_AUTOINCREMENT_TABLE, &[])?.length() == 0 {
        return Ok(());
    }
    let bindings = [table.into(), counter.to_string().into()];
    sql.run_recorded(RAISE_AUTOINCREMENT, &bindings).map_err(|e| statement_error(table, e))?;
    if start {
        sql.run_recorded(START_AUTOINCREMENT, &bindings).map_err(|e| statement_error(table, e))?;
    }
    Ok(())
}

/// Each of `tables` with the tables its foreign keys name.
fn with_parents(sql: &SqlStorage, tables: &[String]) -> Result<Vec<(String, Vec<String>)>, JsValue> {
    tables
        .iter()
        .map(|table| {
            let parents = sql.rows(FOREIGN_KEY_PARENTS, &[table.into()])?;
            Ok((table.clone(), parents.iter().filter_map(|row| Array::from(&row).get(0).as_string()).collect()))
        })
        .collect()
}

/// Tables by their name in lower case: SQLite tells names apart without regard to ASCII case.
fn by_name(shapes: Vec<TableShape>) -> BTreeMap<String, TableShape> {
    shapes.into_iter().map(|s| (s.name.to_ascii_lowercase(), s)).collect()
}

pub(crate) fn count(sql: &SqlStorage, table: &str) -> Result<u64, JsValue> {
    let rows = sql.rows(&count_rows(table), &[])?;
    Ok(Array::from(&rows.get(0)).get(0).as_f64().unwrap_or(0.0) as u64)
}

/// Writes a page of rows into a table of the object, in one statement. The page names the
/// columns of every object of the class (the file's table is their union): a column this table
/// lacks is left out if the page holds only NULL in it, and refused otherwise. A column the table
/// generates is left out: SQLite computes it from the others.
fn write_rows(sql: &SqlStorage, shape: &TableShape, page: &SqlPage) -> Result<u64, Failure> {
    let mut picked = Vec::new();
    for (i, column) in page.columns.iter().enumerate() {
        match shape.columns.iter().find(|c| c.eq_ignore_ascii_case(column)) {
            Some(name) => picked.push((i, name.clone())),
            None if shape.generated.iter().any(|c| c.eq_ignore_ascii_case(column)) => {}
            None if page.rows.iter().all(|r| r.v.as_ref().is_none_or(|v| v.get(i).is_none_or(|x| *x == SqlValue::Null))) => {}
            None => {
                return Err(Failure::Backup(format!(
                    "table {} of the object has no column {column}, which the backup's rows have values in",
                    page.table
                )))
            }
        }
    }
    let with_rowid = shape.rowid.as_deref().filter(|_| shape.key.is_empty());
    let indexes: Vec<usize> = picked.iter().map(|(i, _)| *i).collect();
    let names: Vec<String> = picked.into_iter().map(|(_, name)| name).collect();
    let json = rows_json(&page.rows, &indexes, with_rowid.is_some()).map_err(Failure::Backup)?;
    sql.run_recorded(&insert_rows(&shape.name, &names, with_rowid, &shape.key), &[json.into()])
        .map_err(|e| statement_error(&page.table, e))?;
    Ok(page.rows.iter().filter(|r| r.v.is_some()).count() as u64)
}

/// A statement of the restore that SQLite refused (a schema that does not fit, a constraint the
/// rows break), with SQLite's reason.
fn statement_error(table: &str, e: JsValue) -> Failure {
    Failure::Backup(format!("table {table}: {}", worker::Error::from(e)))
}

/// Calls the method `name` of `target` (the transaction object) as the user's code would:
/// through durafetch's hook, which records the keys in the same commit.
async fn call_hooked(target: &Object, name: &str, argument: &JsValue) -> Result<JsValue, JsValue> {
    JsFuture::from(start_hooked(target, name, argument)?).await
}

/// [`call_hooked`], not awaited: the call's promise.
fn start_hooked(target: &Object, name: &str, argument: &JsValue) -> Result<js_sys::Promise, JsValue> {
    let method: js_sys::Function = Reflect::get(target, &name.into())?.dyn_into()?;
    method.call1(target, argument)?.dyn_into()
}
