//! The capture against a real SQLite: the triggers, the sync, the reads and what they cost. The
//! helpers here read and write the database as the runtime does.

mod capture;
mod reads;

use std::collections::BTreeMap;

use super::*;
use crate::core::protocol::SqlValue;

/// A position value bound as the runtime binds it.
pub(super) fn binding(value: &SqlValue) -> rusqlite::types::Value {
    match scan_binding(value) {
        ScanBinding::Text(t) => rusqlite::types::Value::Text(t),
        ScanBinding::Real(r) => rusqlite::types::Value::Real(r),
        ScanBinding::Blob(b) => rusqlite::types::Value::Blob(b.to_vec()),
        ScanBinding::Null => rusqlite::types::Value::Null,
    }
}

/// The first row `query` answers with `params`, every column.
pub(super) fn first_row(
    db: &rusqlite::Connection,
    query: &str,
    params: Vec<rusqlite::types::Value>,
) -> Option<Vec<rusqlite::types::Value>> {
    let mut stmt = db.prepare(query).unwrap();
    let width = stmt.column_count();
    let mut rows = stmt.query_map(rusqlite::params_from_iter(params), |r| (0..width).map(|i| r.get(i)).collect()).unwrap();
    rows.next().map(Result::unwrap)
}

pub(super) fn shape(name: &str, without_rowid: bool, columns: &[(&str, u32)]) -> TableShape {
    let columns: Vec<ColumnInfo> = columns.iter().map(|(c, pk)| (c.to_string(), *pk, String::new(), 0)).collect();
    TableShape::from_columns(name.into(), without_rowid, &columns)
}

/// Whether `plan` writes a marker of `kind` for `table`.
pub(super) fn marks(plan: &SyncPlan, table: &str, kind: i64) -> bool {
    plan.statements.iter().any(|s| {
        s.starts_with(&format!("INSERT INTO {MARK_VIEW}")) && s.contains(&format!(", '{table}', ")) && s.ends_with(&format!(", {kind})"))
    })
}

/// The tables of `db` as the runtime reads them, and a sync applied.
pub(super) fn sync_native(db: &rusqlite::Connection) -> SyncPlan {
    db.execute_batch(&schema(0)).unwrap();
    let names: Vec<(String, bool)> = {
        let mut stmt = db.prepare(LIST_TABLES).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))).unwrap().map(Result::unwrap).collect()
    };
    let tables: Vec<TableShape> = names
        .into_iter()
        .map(|(name, wr)| {
            let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
            let columns: Vec<ColumnInfo> =
                stmt.query_map([&name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
            let mut stmt = db.prepare(UNIQUE_INDEX_COLUMNS).unwrap();
            let unique: Vec<IndexColumn> = stmt
                .query_map([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<String>>(3)?.unwrap_or_default(), r.get(4)?, r.get(5)?))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            TableShape::from_columns(name, wr, &columns).with_unique_indexes(&unique)
        })
        .collect();
    let pairs = |query: &str| -> BTreeMap<String, String> {
        let mut stmt = db.prepare(query).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let known: Vec<KnownTable> = {
        let mut stmt = db.prepare(KNOWN_TABLES).unwrap();
        stmt.query_map([], |r| Ok(KnownTable { id: r.get(0)?, name: r.get(1)?, shape: r.get(2)?, mark: r.get(3)?, gen: r.get(4)? }))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let plan = plan_sync(&tables, &known, &pairs(OUR_TRIGGERS));
    for statement in &plan.statements {
        db.execute_batch(statement).unwrap();
    }
    plan
}

/// The change set of `table`.
pub(super) fn set_of(db: &rusqlite::Connection, table: &str) -> String {
    change_set(db.query_row("SELECT id FROM _durafetch_known WHERE name = ?1", [table], |r| r.get(0)).unwrap())
}

/// The keys of `table`'s rows marked in a generation above `after`, as SQL literals in order.
pub(super) fn recorded_literals(db: &rusqlite::Connection, table: &str, after: i64) -> Vec<String> {
    let set = ident(&set_of(db, table));
    let key = if db.prepare(&format!("SELECT k FROM {set}")).is_ok() { "quote(k)" } else { "quote(k1)" };
    let mut stmt = db.prepare(&format!("SELECT {key} FROM {set} WHERE gen > ?1 ORDER BY 1")).unwrap();
    stmt.query_map([after], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The rowids of `table`'s rows marked in a generation above `after`, in order.
pub(super) fn recorded(db: &rusqlite::Connection, table: &str, after: i64) -> Vec<i64> {
    let mut rowids: Vec<i64> = recorded_literals(db, table, after).iter().map(|k| k.parse().unwrap()).collect();
    rowids.sort();
    rowids
}

/// What an export does first: closes the generation; answers the head a reader's cursor becomes.
pub(super) fn close(db: &rusqlite::Connection) -> i64 {
    let (update, select) = CLOSE_GENERATION.split_once(';').unwrap();
    db.execute(update, []).unwrap();
    db.query_row(select, [], |r| r.get(0)).unwrap()
}

pub(super) fn head(db: &rusqlite::Connection) -> i64 {
    db.query_row(HEAD, [], |r| r.get(0)).unwrap()
}

/// Rows written by `statements`, triggers included, as SQLite counts them.
pub(super) fn written(db: &rusqlite::Connection, statements: &str) -> u64 {
    let before = db.total_changes();
    db.execute_batch(statements).unwrap();
    db.total_changes() - before
}
