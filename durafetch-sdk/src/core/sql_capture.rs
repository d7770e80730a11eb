//! The SQL half of the change log, as the SQL text the runtime runs inside a SQLite-backed object.
//!
//! Every user table gets three AFTER triggers (insert, update, delete) that record which row
//! changed in `_durafetch_changes`: the table, the row's key, and a sequence number (the change
//! row's own rowid, so it only grows). A row keeps one record: each trigger inserts the new record
//! and deletes the row's older ones, so the log stays O(distinct changed rows) and a deletion is a
//! record whose row no longer exists (its tombstone). Values are never copied: an export reads the
//! current row through its key.
//!
//! A table's key is its declared primary key, or its rowid when it declares none. Which tables
//! exist, and with which key and columns, is kept in `_durafetch_tables`; when a table appears,
//! changes its columns or loses its triggers (dropped and recreated), a marker record asks readers
//! to replace all their rows of it, and when it disappears, to drop them.

use std::collections::BTreeMap;

use crate::core::protocol::SqlValue;

/// Every name durafetch creates in the object's database starts with this (any case). A user
/// statement naming it is refused before it runs.
pub const SQL_PREFIX: &str = "_durafetch_";
pub const CHANGES_TABLE: &str = "_durafetch_changes";
pub const TABLES_TABLE: &str = "_durafetch_tables";
/// Primary keys of more columns than this are not recorded (the table is named in a logged error).
pub const MAX_KEY_COLUMNS: usize = 8;

/// `_durafetch_changes.mark` of a record: a row changed (its key in `k1`..), every row of the
/// table must be dropped, or every row must be replaced by the table's current rows.
pub const MARK_ROW: i64 = 0;
pub const MARK_GONE: i64 = 1;
pub const MARK_REPLACE: i64 = 2;

pub fn schema() -> String {
    let keys: Vec<String> = (1..=MAX_KEY_COLUMNS).map(|i| format!("k{i}")).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {CHANGES_TABLE} (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, mark INTEGER NOT NULL DEFAULT 0, {keys});
         CREATE INDEX IF NOT EXISTS {CHANGES_TABLE}_by_row ON {CHANGES_TABLE} (tbl, k1, k2);
         CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name TEXT PRIMARY KEY, shape TEXT NOT NULL);",
        keys = keys.join(", ")
    )
}

/// The user tables: plain tables outside SQLite's, Cloudflare's (`_cf_`, any case), local
/// development's (`__miniflare_`, which names the object) and durafetch's names. Virtual tables
/// (fts5, rtree) take no triggers and their shadow tables are internal: neither is recorded.
pub const LIST_TABLES: &str = r"SELECT name, wr FROM pragma_table_list
    WHERE schema = 'main' AND type = 'table'
      AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\' AND name NOT LIKE '\_durafetch\_%' ESCAPE '\'
      AND name NOT LIKE '\_\_miniflare\_%' ESCAPE '\'
    ORDER BY name";
/// A table's columns in order, with their place in the primary key (0: not in it).
pub const TABLE_COLUMNS: &str = "SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid";
pub const KNOWN_TABLES: &str = "SELECT name, shape FROM _durafetch_tables";
pub const OUR_TRIGGERS: &str = r"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\_durafetch\_%' ESCAPE '\'";
pub const HEAD: &str = "SELECT coalesce(max(seq), 0) FROM _durafetch_changes";

/// A user table as the capture sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub without_rowid: bool,
    /// Primary key columns in key order; empty: the rowid is the key.
    pub key: Vec<String>,
    pub columns: Vec<String>,
    /// The name that reaches the rowid of a rowid table: the first of `rowid`, `_rowid_` and
    /// `oid` that no column takes (a column of that name hides the rowid behind it). `None`
    /// for a table without rowid, or one whose columns take all three.
    pub rowid: Option<&'static str>,
}

/// The names SQLite gives the rowid, in the order durafetch prefers them.
const ROWID_NAMES: [&str; 3] = ["rowid", "_rowid_", "oid"];

impl TableShape {
    /// Builds the shape from `pragma_table_info` rows `(name, pk)`.
    pub fn from_columns(name: String, without_rowid: bool, columns: &[(String, u32)]) -> Self {
        let mut key: Vec<&(String, u32)> = columns.iter().filter(|(_, pk)| *pk > 0).collect();
        key.sort_by_key(|(_, pk)| *pk);
        let rowid = if without_rowid {
            None
        } else {
            ROWID_NAMES.into_iter().find(|name| !columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(name)))
        };
        TableShape {
            name,
            without_rowid,
            key: key.into_iter().map(|(c, _)| c.clone()).collect(),
            columns: columns.iter().map(|(c, _)| c.clone()).collect(),
            rowid,
        }
    }

    /// What a change of which requires readers to replace the table's rows: its key and columns.
    pub fn fingerprint(&self) -> String {
        serde_json::json!({"wr": self.without_rowid, "key": self.key, "columns": self.columns}).to_string()
    }

    /// The key expressions of a row of this table, as seen through `alias` (`NEW`, `OLD`, `t`).
    fn key_exprs(&self, alias: &str) -> Vec<String> {
        if self.key.is_empty() {
            vec![format!("{alias}.{}", self.rowid.unwrap_or("rowid"))]
        } else {
            self.key.iter().map(|c| format!("{alias}.{}", ident(c))).collect()
        }
    }

    fn key_slots(&self) -> Vec<String> {
        (1..=self.key_exprs("x").len()).map(|i| format!("k{i}")).collect()
    }

    pub fn recordable(&self) -> Result<(), String> {
        if self.key.is_empty() && self.rowid.is_none() {
            return Err(format!(
                "durafetch: table {} declares no primary key and has columns named rowid, _rowid_ and oid, which hide its rowid; \
                 its rows cannot be told apart, so its changes are not recorded: rename a column or declare a key",
                self.name
            ));
        }
        if self.key.len() > MAX_KEY_COLUMNS {
            return Err(format!(
                "durafetch: table {} has a primary key of {} columns; at most {MAX_KEY_COLUMNS} are recorded, so its changes are not",
                self.name,
                self.key.len()
            ));
        }
        Ok(())
    }

    fn trigger_name(&self, kind: &str) -> String {
        format!("{SQL_PREFIX}{kind}_{}", self.name)
    }

    /// The record of the row `alias` names, then the removal of that row's older records.
    fn record(&self, alias: &str, only_if: Option<&str>) -> String {
        let table = literal(&self.name);
        let slots = self.key_slots();
        let exprs = self.key_exprs(alias);
        let insert = match only_if {
            Some(condition) => {
                format!("INSERT INTO {CHANGES_TABLE} (tbl, {}) SELECT {table}, {} WHERE {condition};", slots.join(", "), exprs.join(", "))
            }
            None => format!("INSERT INTO {CHANGES_TABLE} (tbl, {}) VALUES ({table}, {});", slots.join(", "), exprs.join(", ")),
        };
        // `+` strips the column's affinity: compared with a value of TEXT or INTEGER affinity, `k1`
        // (declared without a type) would be converted first, and the index on it go unused (a
        // 10,000-row insert took 4.6 s instead of 22 ms). The record holds the row's exact value,
        // so comparing without conversion is exact.
        let same_row: Vec<String> = slots.iter().zip(&exprs).map(|(slot, expr)| format!("{slot} IS +{expr}")).collect();
        let prune = format!(
            "DELETE FROM {CHANGES_TABLE} WHERE tbl = {table} AND {} AND seq < (SELECT max(seq) FROM {CHANGES_TABLE});",
            same_row.join(" AND ")
        );
        format!("{insert} {prune}")
    }

    /// The three triggers, by name. Their text is compared with `sqlite_master`'s to find
    /// triggers that are missing or stale (a renamed table's).
    pub fn triggers(&self) -> Vec<(String, String)> {
        let on = ident(&self.name);
        let key_moved: Vec<String> =
            self.key_exprs("OLD").iter().zip(self.key_exprs("NEW")).map(|(old, new)| format!("{old} IS {new}")).collect();
        let key_moved = format!("NOT ({})", key_moved.join(" AND "));
        [
            ("i", "INSERT", self.record("NEW", None)),
            // A key changed by UPDATE: the old key's row is gone, the new one's is written.
            ("u", "UPDATE", format!("{} {}", self.record("OLD", Some(&key_moved)), self.record("NEW", None))),
            ("d", "DELETE", self.record("OLD", None)),
        ]
        .into_iter()
        .map(|(kind, event, body)| {
            let name = self.trigger_name(kind);
            let sql = format!("CREATE TRIGGER {} AFTER {event} ON {on} BEGIN {body} END", ident(&name));
            (name, sql)
        })
        .collect()
    }

    /// The selected values of each column: its type, then its value in a form JSON carries
    /// exactly (see [`decode_value`]), so that a whole read crosses from JS as one JSON text.
    fn value_exprs(&self, alias: &str) -> Vec<String> {
        self.columns
            .iter()
            .flat_map(|c| {
                let col = format!("{alias}.{}", ident(c));
                [
                    format!("typeof({col})"),
                    format!(
                        "CASE typeof({col}) WHEN 'integer' THEN CAST({col} AS TEXT) WHEN 'blob' THEN hex({col}) \
                         WHEN 'real' THEN CASE WHEN {col} = 9e999 THEN 'inf' WHEN {col} = -9e999 THEN '-inf' ELSE {col} END ELSE {col} END"
                    ),
                ]
            })
            .collect()
    }

    /// Whether a snapshot pages through the table by its rowid (bound as text, `?2`), or by its
    /// key's values (bound as one JSON array, `?2`, see [`key_json`]).
    fn pages_by_rowid(&self) -> bool {
        self.rowid.is_some()
    }

    /// A page of the table's rows in key order for a snapshot, after the row whose position
    /// `?2` gives (`after`: whether there is one). Selects the position to continue from (the
    /// rowid as text, for a table paged by rowid), the key's literals, then each column's type
    /// and value. `?1` is the page size. The position is always bound, never spliced: it is
    /// stored data.
    pub fn scan_page(&self, after: bool) -> String {
        let keys: Vec<String> = self.key_exprs("t").iter().map(|e| format!("quote({e})")).collect();
        let values = self.value_exprs("t");
        let table = ident(&self.name);
        match self.rowid {
            Some(rowid) => {
                let seek = if after { format!("WHERE t.{rowid} > CAST(?2 AS INTEGER)") } else { String::new() };
                format!(
                    "SELECT CAST(t.{rowid} AS TEXT), {}, {} FROM {table} AS t {seek} ORDER BY t.{rowid} LIMIT ?1",
                    keys.join(", "),
                    values.join(", ")
                )
            }
            None => {
                let order: Vec<String> = self.key.iter().map(|c| format!("t.{}", ident(c))).collect();
                let seek = if after {
                    let bound: Vec<String> = (0..self.key.len()).map(|i| json_cell("?2", i)).collect();
                    format!("WHERE ({}) > ({})", order.join(", "), bound.join(", "))
                } else {
                    String::new()
                };
                format!("SELECT {}, {} FROM {table} AS t {seek} ORDER BY {} LIMIT ?1", keys.join(", "), values.join(", "), order.join(", "))
            }
        }
    }

    /// Where each key column stands among the columns, for [`key_json`].
    pub fn key_positions(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.columns.iter().position(|c| c == k)).collect()
    }

    /// How many leading values of a [`Self::scan_page`] row are not key literals or columns.
    pub fn scan_position_values(&self) -> usize {
        usize::from(self.pages_by_rowid())
    }

    pub fn key_len(&self) -> usize {
        self.key_exprs("x").len()
    }

    /// The rows named by this table's records with sequence in `(?1, ?2]`, at most `?3`, in
    /// sequence order: each record's sequence and key literals, whether the row exists, then each
    /// column's type and value.
    pub fn changed_rows(&self) -> String {
        let slots = self.key_slots();
        let keys: Vec<String> = slots.iter().map(|s| format!("quote(c.{s})")).collect();
        let join: Vec<String> = self.key_exprs("t").iter().zip(&slots).map(|(expr, slot)| format!("{expr} IS c.{slot}")).collect();
        let present = match (self.rowid, self.key.first()) {
            (Some(rowid), _) => format!("t.{rowid} IS NOT NULL"),
            (None, Some(first)) => format!("t.{} IS NOT NULL", ident(first)),
            (None, None) => "0".to_owned(),
        };
        format!(
            "SELECT c.seq, {}, {present}, {} FROM {CHANGES_TABLE} AS c LEFT JOIN {} AS t ON {} \
             WHERE c.tbl = {} AND c.mark = {MARK_ROW} AND c.seq > ?1 AND c.seq <= ?2 ORDER BY c.seq LIMIT ?3",
            keys.join(", "),
            self.value_exprs("t").join(", "),
            ident(&self.name),
            join.join(" AND "),
            literal(&self.name),
        )
    }
}

/// Change records after `?1`, at most `?2`: the sequence, the table and the mark.
pub const CHANGES_SINCE: &str = "SELECT seq, tbl, mark FROM _durafetch_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2";

/// What a sync must do so that every user table is recorded as it now is.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Statements, run in order in one exec.
    pub statements: Vec<String>,
    /// Tables that cannot be recorded, and why.
    pub refused: Vec<String>,
}

/// Compares the tables as they are (`tables`) with what the log knows (`known`: name to
/// fingerprint) and with durafetch's triggers (`triggers`: name to SQL text).
pub fn plan_sync(tables: &[TableShape], known: &BTreeMap<String, String>, triggers: &BTreeMap<String, String>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let mut wanted = BTreeMap::new();
    for table in tables {
        if let Err(why) = table.recordable() {
            plan.refused.push(why);
            continue;
        }
        let mut rewrite = known.get(&table.name) != Some(&table.fingerprint());
        for (name, sql) in table.triggers() {
            // A missing trigger means writes may have gone unrecorded (a table dropped and
            // recreated in one exec): readers replace the table's rows, as for a new table.
            if triggers.get(&name) != Some(&sql) {
                rewrite = true;
                plan.statements.push(format!("DROP TRIGGER IF EXISTS {}", ident(&name)));
                plan.statements.push(sql.clone());
            }
            wanted.insert(name, ());
        }
        if rewrite {
            plan.statements.extend(mark(&table.name, MARK_REPLACE));
            plan.statements.push(format!(
                "INSERT INTO {TABLES_TABLE} (name, shape) VALUES ({}, {}) ON CONFLICT (name) DO UPDATE SET shape = excluded.shape",
                literal(&table.name),
                literal(&table.fingerprint())
            ));
        }
    }
    for name in triggers.keys().filter(|name| !wanted.contains_key(*name)) {
        plan.statements.push(format!("DROP TRIGGER IF EXISTS {}", ident(name)));
    }
    let present: BTreeMap<&str, ()> = tables.iter().filter(|t| t.recordable().is_ok()).map(|t| (t.name.as_str(), ())).collect();
    for name in known.keys().filter(|name| !present.contains_key(name.as_str())) {
        plan.statements.extend(mark(name, MARK_GONE));
        plan.statements.push(format!("DELETE FROM {TABLES_TABLE} WHERE name = {}", literal(name)));
    }
    plan
}

/// A table-wide marker, replacing every older record of the table. Inserted before the older
/// records go, as the triggers' records are: a sequence number is the change table's next rowid
/// (one past the largest), so the largest record must never be deleted before a newer one exists,
/// or its number would be handed out again to a reader that has already read past it.
fn mark(table: &str, mark: i64) -> [String; 2] {
    [
        format!("INSERT INTO {CHANGES_TABLE} (tbl, mark) VALUES ({}, {mark})", literal(table)),
        format!("DELETE FROM {CHANGES_TABLE} WHERE tbl = {} AND seq < (SELECT max(seq) FROM {CHANGES_TABLE})", literal(table)),
    ]
}

/// The SQL expression of element `i` of the JSON array bound at `param`, as the exact SQLite
/// value [`crate::core::sql_restore::rows_json`] wrote it: an integer, a real, a text, or a
/// blob as `{"b": hex}`.
pub fn json_cell(param: &str, i: usize) -> String {
    format!("CASE json_type({param}, '$[{i}]') WHEN 'object' THEN unhex(json_extract({param}, '$[{i}].b')) ELSE json_extract({param}, '$[{i}]') END")
}

/// A row's key values as the JSON array a [`TableShape::scan_page`] by key binds.
pub fn key_json(values: &[SqlValue], positions: &[usize]) -> String {
    let cells: Vec<String> = positions.iter().map(|&i| crate::core::sql_restore::cell(values.get(i).unwrap_or(&SqlValue::Null))).collect();
    format!("[{}]", cells.join(","))
}

/// An identifier, quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether a user statement names durafetch's tables or triggers: refused, before it runs. Looks
/// at the text only, so a string literal holding the prefix is refused too, with a message that
/// names the prefix.
pub fn names_reserved(query: &str) -> bool {
    contains_ignoring_case(query, SQL_PREFIX)
}

/// Whether `query` may change the schema: one of its statements starts with CREATE, ALTER or
/// DROP. Statements are found by splitting at every `;`, so a `;` inside a string literal can
/// only add a false start (a sync that finds nothing to do), never hide a real one; a column
/// named `created_at` is not a statement start.
pub fn may_change_schema(query: &str) -> bool {
    query.split(';').any(|statement| {
        let start = skip_space_and_comments(statement);
        ["create", "alter", "drop"].iter().any(|word| {
            start.len() >= word.len()
                && start.as_bytes()[..word.len()].eq_ignore_ascii_case(word.as_bytes())
                && !start[word.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// `text` from its first character that is neither white space nor inside a comment.
fn skip_space_and_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return text;
        }
    }
}

fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// A column's value from its `typeof` and the JSON form [`TableShape`]'s reads select: an
/// INTEGER as its decimal text (all 64 bits), a REAL as a JSON number (a double, exactly) or
/// `inf` / `-inf`, TEXT as a string, a BLOB as hex, NULL as null.
pub fn decode_value(kind: &str, value: &serde_json::Value) -> Result<SqlValue, String> {
    let bad = || format!("a {kind} read as {value}");
    match (kind, value) {
        ("null", _) => Ok(SqlValue::Null),
        ("integer", serde_json::Value::String(text)) => text.parse().map(SqlValue::Integer).map_err(|_| bad()),
        ("real", serde_json::Value::Number(n)) => n.as_f64().map(SqlValue::Real).ok_or_else(bad),
        ("real", serde_json::Value::String(text)) if text == "inf" => Ok(SqlValue::Real(f64::INFINITY)),
        ("real", serde_json::Value::String(text)) if text == "-inf" => Ok(SqlValue::Real(f64::NEG_INFINITY)),
        ("text", serde_json::Value::String(text)) => Ok(SqlValue::Text(text.clone())),
        ("blob", serde_json::Value::String(hex)) if hex.len() % 2 == 0 => (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(SqlValue::Blob)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// The row key of a record or scanned row: its key literals joined by commas. `quote()` escapes
/// every quote inside a text literal, so the joined form is unambiguous.
pub fn row_key(literals: &[String]) -> String {
    literals.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str, without_rowid: bool, columns: &[(&str, u32)]) -> TableShape {
        let columns: Vec<(String, u32)> = columns.iter().map(|(c, pk)| (c.to_string(), *pk)).collect();
        TableShape::from_columns(name.into(), without_rowid, &columns)
    }

    #[test]
    fn keys_follow_the_declared_primary_key_or_the_rowid() {
        let composite = shape("t", true, &[("b", 2), ("x", 0), ("a", 1)]);
        assert_eq!(composite.key, ["a", "b"]);
        assert_eq!(composite.key_exprs("NEW"), [r#"NEW."a""#, r#"NEW."b""#]);
        let plain = shape("p", false, &[("x", 0)]);
        assert_eq!(plain.key_exprs("OLD"), ["OLD.rowid"]);
        let triggers = composite.triggers();
        assert_eq!(triggers.len(), 3);
        assert!(triggers[1].1.contains(r#"NOT (OLD."a" IS NEW."a" AND OLD."b" IS NEW."b")"#), "{}", triggers[1].1);
    }

    #[test]
    fn values_decode_exactly_from_their_json_form() {
        use serde_json::json;
        assert_eq!(decode_value("integer", &json!("-9223372036854775808")), Ok(SqlValue::Integer(i64::MIN)));
        assert_eq!(decode_value("integer", &json!("9007199254740993")), Ok(SqlValue::Integer(9_007_199_254_740_993)));
        assert_eq!(decode_value("real", &json!(3)), Ok(SqlValue::Real(3.0)), "JS writes 3.0 as 3; typeof keeps it REAL");
        assert_eq!(decode_value("real", &json!(0.1)), Ok(SqlValue::Real(0.1)));
        assert_eq!(decode_value("real", &json!("-inf")), Ok(SqlValue::Real(f64::NEG_INFINITY)));
        assert_eq!(decode_value("text", &json!("a\u{0}é")), Ok(SqlValue::Text("a\u{0}é".into())));
        assert_eq!(decode_value("blob", &json!("00FF10")), Ok(SqlValue::Blob(vec![0, 255, 16])));
        assert_eq!(decode_value("blob", &json!("")), Ok(SqlValue::Blob(vec![])));
        assert_eq!(decode_value("null", &json!(null)), Ok(SqlValue::Null));
        for (kind, bad) in [
            ("integer", json!(1.5)),
            ("integer", json!("x")),
            ("blob", json!("0")),
            ("blob", json!("zz")),
            ("real", json!("nan")),
            ("date", json!(1)),
        ] {
            assert!(decode_value(kind, &bad).is_err(), "{kind} {bad}");
        }
    }

    #[test]
    fn names_are_quoted_and_reserved_names_found_in_any_case() {
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(literal("it's"), "'it''s'");
        assert!(names_reserved("select * from _DuraFetch_changes"));
        assert!(!names_reserved("select * from durafetch"));
        assert!(may_change_schema("ALTER TABLE t ADD c"));
        assert!(may_change_schema("insert into t values (1); -- then\n /* a table */ drop table t"));
        assert!(may_change_schema("\n  Create Index i ON t (a)"));
        assert!(!may_change_schema("INSERT INTO t VALUES (1)"));
        assert!(!may_change_schema("INSERT INTO t (created_at, dropped) VALUES ('alter', 'drop')"));
        assert!(!may_change_schema("UPDATE t SET alternative = 1"));
    }

    #[test]
    fn a_sync_adds_triggers_marks_new_changed_and_gone_tables_and_is_then_idle() {
        let t = shape("t", false, &[("id", 1), ("v", 0)]);
        let plan = plan_sync(std::slice::from_ref(&t), &BTreeMap::new(), &BTreeMap::new());
        assert!(plan.statements.iter().filter(|s| s.starts_with("CREATE TRIGGER")).count() == 3);
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_REPLACE})"))));
        // Once applied, nothing to do.
        let known = BTreeMap::from([("t".to_owned(), t.fingerprint())]);
        let triggers: BTreeMap<String, String> = t.triggers().into_iter().collect();
        assert_eq!(plan_sync(std::slice::from_ref(&t), &known, &triggers), SyncPlan::default());
        // A column added: replaced, triggers kept.
        let wider = shape("t", false, &[("id", 1), ("v", 0), ("w", 0)]);
        let plan = plan_sync(std::slice::from_ref(&wider), &known, &triggers);
        assert!(!plan.statements.iter().any(|s| s.starts_with("CREATE TRIGGER")));
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_REPLACE})"))));
        // Gone: its triggers dropped with it, its rows dropped by readers.
        let plan = plan_sync(&[], &known, &BTreeMap::new());
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_GONE})"))));
        // Too wide a key: refused, not recorded.
        let wide: Vec<(String, u32)> = (1..=9).map(|i| (format!("c{i}"), i)).collect();
        let plan = plan_sync(&[TableShape::from_columns("w".into(), true, &wide)], &BTreeMap::new(), &BTreeMap::new());
        assert!(plan.statements.is_empty() && plan.refused.len() == 1);
    }

    /// A snapshot's position is bound, never spliced: a column named `rowid` whose text is a
    /// statement pages like any other, and a table without rowid pages by its key's exact values.
    #[test]
    fn snapshots_page_by_bound_positions() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE victims (v); INSERT INTO victims VALUES (1);
             CREATE TABLE rt (rowid TEXT, v);
             INSERT INTO rt VALUES ('0 LIMIT 0; DELETE FROM victims; SELECT 1 FROM rt AS t WHERE 0', 1), ('1; DROP TABLE victims', 2), ('x', 3);
             CREATE TABLE hidden (rowid, _rowid_, oid);
             CREATE TABLE k (a TEXT, b BLOB, c INTEGER, PRIMARY KEY (a, b, c)) WITHOUT ROWID;
             INSERT INTO k VALUES ('it''s', X'00', 9007199254740993), ('it''s', X'00', 9007199254740994), ('it''s', X'01', 1), ('z', X'', -1);",
        )
        .unwrap();
        let columns = |table: &str| -> Vec<(String, u32)> {
            let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
            stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
        };
        let rt = TableShape::from_columns("rt".into(), false, &columns("rt"));
        assert_eq!(rt.rowid, Some("_rowid_"));
        assert!(rt.recordable().is_ok());
        let hidden = TableShape::from_columns("hidden".into(), false, &columns("hidden"));
        assert!(hidden.recordable().unwrap_err().contains("rowid, _rowid_ and oid"));

        // Pages of one row: the position of each is the rowid as text, bound as `?2`.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let query = rt.scan_page(after.is_some());
            let mut stmt = db.prepare(&query).unwrap();
            let params: Vec<rusqlite::types::Value> =
                std::iter::once(rusqlite::types::Value::Integer(1)).chain(after.clone().map(rusqlite::types::Value::Text)).collect();
            let rows: Vec<(String, String)> =
                stmt.query_map(rusqlite::params_from_iter(params), |r| Ok((r.get(0)?, r.get(5)?))).unwrap().map(Result::unwrap).collect();
            let Some((position, v)) = rows.into_iter().next() else { break };
            seen.push(v);
            after = Some(position);
        }
        assert_eq!(seen, ["1", "2", "3"]);
        let victims: i64 = db.query_row("SELECT count(*) FROM victims", [], |r| r.get(0)).unwrap();
        assert_eq!(victims, 1);

        // Without rowid: the last row's key values, as JSON, exactly (a 54-bit integer, a blob).
        let k = TableShape::from_columns("k".into(), true, &columns("k"));
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut stmt = db.prepare(&k.scan_page(after.is_some())).unwrap();
            let params: Vec<rusqlite::types::Value> =
                std::iter::once(rusqlite::types::Value::Integer(1)).chain(after.clone().map(rusqlite::types::Value::Text)).collect();
            let rows: Vec<Vec<rusqlite::types::Value>> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| (0..9).map(|i| r.get(i)).collect())
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let Some(row) = rows.into_iter().next() else { break };
            let as_text = |v: &rusqlite::types::Value| match v {
                rusqlite::types::Value::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            };
            keys.push(row_key(&row[..3].iter().map(as_text).collect::<Vec<_>>()));
            let values: Vec<SqlValue> = (0..3)
                .map(|c| decode_value(&as_text(&row[3 + 2 * c]), &serde_json::Value::String(as_text(&row[4 + 2 * c]))).unwrap())
                .collect();
            after = Some(key_json(&values, &k.key_positions()));
        }
        assert_eq!(keys, ["'it''s',X'00',9007199254740993", "'it''s',X'00',9007199254740994", "'it''s',X'01',1", "'z',X'',-1"]);
    }
}
