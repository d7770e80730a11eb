//! The sync: what durafetch must do so that every user table is recorded as it now is, from the
//! tables, what the log knows of them, and durafetch's triggers.

use std::collections::BTreeMap;

use super::own_tables::{change_set, ident, literal, MARK_GONE, MARK_REPLACE, MARK_VIEW};
use super::shape::TableShape;

/// A table as `_durafetch_known` holds it ([`super::KNOWN_TABLES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTable {
    /// Names its change set ([`change_set`]); kept while the name is known.
    pub id: i64,
    pub name: String,
    /// Its fingerprint while recorded, the reason as `{"refused": ..}` while refused, `None`
    /// once gone.
    pub shape: Option<String>,
    /// Its last marker, [`MARK_GONE`] or [`MARK_REPLACE`].
    pub mark: i64,
    /// The generation of its last marker.
    pub gen: u64,
}

/// What a sync must do so that every user table is recorded as it now is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Statements, run in order.
    pub statements: Vec<String>,
    /// Tables that cannot be recorded, and why; then what the capture of recorded tables cannot
    /// see. Logged by the object at each sync that changes something.
    pub refused: Vec<String>,
}

/// Compares the tables as they are (`tables`) with what the log knows (`known`) and with
/// durafetch's triggers (`triggers`: name to SQL text). SQLite compares the names of tables and
/// triggers without regard to ASCII case, and so does the plan: a table renamed `t` to `T` keeps
/// no trigger of the old name.
pub fn plan_sync(tables: &[TableShape], known: &[KnownTable], triggers: &BTreeMap<String, String>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let existing: BTreeMap<String, &String> = triggers.iter().map(|(name, sql)| (name.to_ascii_lowercase(), sql)).collect();
    let by_name: BTreeMap<&str, &KnownTable> = known.iter().map(|k| (k.name.as_str(), k)).collect();
    let mut next_id = known.iter().map(|k| k.id).max().unwrap_or(0) + 1;
    // Gone tables first: a reader drops their rows before it takes a table of the same name in
    // another case (`c2` renamed `C2`), which a file that folds case keeps in the same place.
    let present: BTreeMap<&str, ()> = tables.iter().map(|t| (t.name.as_str(), ())).collect();
    for gone in known.iter().filter(|k| k.shape.is_some() && !present.contains_key(k.name.as_str())) {
        plan.statements.push(format!("DROP TABLE IF EXISTS {}", ident(&change_set(gone.id))));
        plan.statements.push(mark(gone.id, &gone.name, MARK_GONE, None));
    }
    let mut wanted = BTreeMap::new();
    for table in tables {
        let known = by_name.get(table.name.as_str());
        let id = known.map_or_else(
            || {
                next_id += 1;
                next_id - 1
            },
            |k| k.id,
        );
        let known_shape = known.and_then(|k| k.shape.as_deref());
        let set = change_set(id);
        if let Err(why) = table.recordable() {
            // Known once as refused, with a marker: the object's head moves, so the registry
            // lists it and the next pull visits it and says so in its summary, even when this
            // table is all the object holds.
            let refused = serde_json::json!({"refused": why}).to_string();
            if known_shape != Some(refused.as_str()) {
                plan.statements.push(format!("DROP TABLE IF EXISTS {}", ident(&set)));
                plan.statements.push(mark(id, &table.name, MARK_GONE, Some(&refused)));
            }
            plan.refused.push(why);
            continue;
        }
        let fingerprint = table.fingerprint();
        let mut rewrite = known_shape != Some(fingerprint.as_str());
        let mut stale = Vec::new();
        for (name, sql) in table.triggers(&set) {
            // A missing trigger means writes may have gone unrecorded (a table dropped and
            // recreated in one exec): readers replace the table's rows, as for a new table.
            if existing.get(&name.to_ascii_lowercase()).copied() != Some(&sql) {
                rewrite = true;
                stale.push(format!("DROP TRIGGER IF EXISTS {}", ident(&name)));
                stale.push(sql);
            }
            wanted.insert(name.to_ascii_lowercase(), ());
        }
        if rewrite {
            // The marker first: should a statement after it fail, readers still replace the
            // table whole, and the next sync finds the rest to do. Readers replace every row,
            // so the marks so far are of no use; the new set has the key's shape as it now is.
            plan.statements.push(mark(id, &table.name, MARK_REPLACE, Some(&fingerprint)));
            plan.statements.push(format!("DROP TABLE IF EXISTS {}", ident(&set)));
            plan.statements.push(table.change_set_table(&set));
            plan.statements.extend(stale);
            plan.refused.extend(table.warnings());
        }
    }
    for name in triggers.keys().filter(|name| !wanted.contains_key(&name.to_ascii_lowercase())) {
        plan.statements.push(format!("DROP TRIGGER IF EXISTS {}", ident(name)));
    }
    plan
}

/// A table-wide marker in the current generation, and what the log now knows of the table
/// (`shape`; none: gone), through [`MARK_VIEW`].
fn mark(id: i64, table: &str, mark: i64, shape: Option<&str>) -> String {
    format!(
        "INSERT INTO {MARK_VIEW} (id, name, shape, mark) VALUES ({id}, {}, {}, {mark})",
        literal(table),
        shape.map_or("NULL".to_owned(), literal)
    )
}
