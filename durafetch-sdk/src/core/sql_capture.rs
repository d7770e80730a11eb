//! The SQL half of the change log, as the SQL text the runtime runs inside a SQLite-backed object.
//!
//! Every user table gets three AFTER triggers (insert, update, delete) that record which row
//! changed in `_durafetch_changes`: the table, the row's key, and a sequence number (the change
//! row's own rowid, so it only grows). A row keeps one record: each trigger inserts the new record
//! and deletes the row's older ones, so the log stays O(distinct changed rows) and a deletion is a
//! record whose row no longer exists (its tombstone). Values are never copied: an export reads the
//! current row through its key.
//!
//! A row's key is its rowid in a rowid table (a declared key there may hold NULL, or repeat in
//! another collation), and its primary key in a table without rowid. Which tables
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
         CREATE TABLE IF NOT EXISTS {TABLES_TABLE} (name TEXT PRIMARY KEY, shape TEXT NOT NULL);
         CREATE VIEW IF NOT EXISTS {SYNC_VIEW} (tbl, mark, shape) AS SELECT NULL, NULL, NULL WHERE 0;
         CREATE TRIGGER IF NOT EXISTS {SYNC_VIEW}_write INSTEAD OF INSERT ON {SYNC_VIEW} BEGIN
             INSERT INTO {CHANGES_TABLE} (tbl, mark) SELECT NEW.tbl, NEW.mark WHERE NEW.mark IS NOT NULL;
             DELETE FROM {CHANGES_TABLE} WHERE NEW.mark IS NOT NULL AND tbl = NEW.tbl AND seq < (SELECT max(seq) FROM {CHANGES_TABLE});
             INSERT INTO {TABLES_TABLE} (name, shape) SELECT NEW.tbl, NEW.shape WHERE NEW.shape IS NOT NULL
                 ON CONFLICT (name) DO UPDATE SET shape = excluded.shape;
             DELETE FROM {TABLES_TABLE} WHERE NEW.shape IS NULL AND name = NEW.tbl;
         END;",
        keys = keys.join(", ")
    )
}

/// What a sync writes goes through this view's INSTEAD OF trigger: writes inside a trigger
/// leave `last_insert_rowid()` as the app's last statement left it.
pub const SYNC_VIEW: &str = "_durafetch_sync";

/// The user tables: plain tables outside SQLite's, Cloudflare's (`_cf_`, any case), local
/// development's (`__miniflare_`, which names the object) and durafetch's names. Virtual tables
/// (fts5, rtree) take no triggers and their shadow tables are internal: neither is recorded.
pub const LIST_TABLES: &str = r"SELECT name, wr, type = 'virtual' FROM pragma_table_list
    WHERE schema = 'main' AND type IN ('table', 'virtual')
      AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE '\_cf\_%' ESCAPE '\' AND name NOT LIKE '\_durafetch\_%' ESCAPE '\'
      AND name NOT LIKE '\_\_miniflare\_%' ESCAPE '\'
    ORDER BY name";
pub const KNOWN_TABLES: &str = "SELECT name, shape FROM _durafetch_tables";
/// durafetch's triggers on the user's tables (not the one on [`SYNC_VIEW`]).
pub const OUR_TRIGGERS: &str = r"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\_durafetch\_%' ESCAPE '\' AND tbl_name <> '_durafetch_sync'";
pub const HEAD: &str = "SELECT coalesce(max(seq), 0) FROM _durafetch_changes";

/// A table's columns in order: name, place in the primary key (0: not in it), declared type,
/// and whether it is generated (non-zero).
/// `pragma_table_xinfo`, unlike `pragma_table_info`, lists generated columns (`hidden` 2 or 3),
/// which a snapshot does not read but whose names hide the rowid as much as any column's.
pub const TABLE_COLUMNS: &str = "SELECT name, pk, type, hidden FROM pragma_table_xinfo(?1) ORDER BY cid";
/// A table's UNIQUE indexes, the primary key's included, one row per key column: the index,
/// where it comes from (`pk`, `u`, `c`), the column (`cid` -2: an expression) and its collation.
pub const UNIQUE_INDEX_COLUMNS: &str = r#"SELECT il.name, il.origin, ix.cid, ix.name, ix.coll
    FROM pragma_index_list(?1) AS il JOIN pragma_index_xinfo(il.name) AS ix
    WHERE il."unique" AND ix.key ORDER BY il.seq, ix.seqno"#;

/// A column as [`TABLE_COLUMNS`] gives it: name, place in the primary key, declared type,
/// generated (non-zero).
pub type ColumnInfo = (String, u32, String, u32);

/// A UNIQUE index through which `REPLACE` (or `ON CONFLICT REPLACE`) may remove a row other than
/// the one it writes: its columns, each with the collation the index compares it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    pub columns: Vec<(String, String)>,
    /// Whether a column of the index is generated: `UPDATE OF` never names one, so the update
    /// trigger must fire on every update.
    pub generated: bool,
}

/// A user table as the capture sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    pub without_rowid: bool,
    /// The declared primary key's columns in key order: a table without rowid's row key. A
    /// rowid table's row key is its rowid, which no NULL, duplicate or REPLACE can blur.
    pub key: Vec<String>,
    pub columns: Vec<String>,
    /// The name that reaches the rowid of a rowid table: the first of `rowid`, `_rowid_` and
    /// `oid` that no column takes (a column of that name hides the rowid behind it), or else its
    /// INTEGER PRIMARY KEY column. `None` for a table without rowid, or one with no such name.
    pub rowid: Option<String>,
    /// The UNIQUE indexes a `REPLACE` may remove other rows through.
    pub unique: Vec<UniqueIndex>,
    /// UNIQUE indexes on expressions, by name: rows a `REPLACE` removes through one of them are
    /// not recorded (see [`TableShape::warnings`]).
    pub unique_on_expressions: Vec<String>,
    /// A virtual table (fts5, rtree): it takes no triggers, so it is refused, loudly.
    pub virtual_table: bool,
    /// Whether a key column of a table without rowid has no type (BLOB affinity): it keeps the
    /// INTEGER 1 and the REAL 1.0 apart in their type, while comparing them equal.
    pub untyped_key: bool,
}

/// Whether a declared type gives a column BLOB affinity (SQLite's rules, in their order).
fn blob_affinity(declared: &str) -> bool {
    let upper = declared.to_ascii_uppercase();
    let has = |word: &str| upper.contains(word);
    !has("INT") && !has("CHAR") && !has("CLOB") && !has("TEXT") && (has("BLOB") || upper.is_empty())
}

/// The names SQLite gives the rowid, in the order durafetch prefers them.
const ROWID_NAMES: [&str; 3] = ["rowid", "_rowid_", "oid"];

/// Version of the capture's row keys and triggers: a table recorded by an older version is
/// resent whole once, its rows keyed anew.
const CAPTURE_VERSION: u32 = 2;

impl TableShape {
    /// Builds the shape from `pragma_table_info` rows.
    pub fn from_columns(name: String, without_rowid: bool, columns: &[ColumnInfo]) -> Self {
        let mut key: Vec<&ColumnInfo> = columns.iter().filter(|(_, pk, _, _)| *pk > 0).collect();
        key.sort_by_key(|(_, pk, _, _)| *pk);
        let rowid = if without_rowid {
            None
        } else {
            let free = ROWID_NAMES.into_iter().find(|name| !columns.iter().any(|(c, _, _, _)| c.eq_ignore_ascii_case(name)));
            let integer_key = match key.as_slice() {
                [(column, _, declared, _)] if declared.eq_ignore_ascii_case("INTEGER") => Some(ident(column)),
                _ => None,
            };
            free.map(str::to_owned).or(integer_key)
        };
        let untyped_key = without_rowid && key.iter().any(|(_, _, declared, _)| blob_affinity(declared));
        TableShape {
            name,
            without_rowid,
            key: key.into_iter().map(|(c, _, _, _)| c.clone()).collect(),
            columns: columns.iter().filter(|(_, _, _, generated)| *generated == 0).map(|(c, _, _, _)| c.clone()).collect(),
            untyped_key,
            virtual_table: false,
            rowid,
            unique: Vec::new(),
            unique_on_expressions: Vec::new(),
        }
    }

    /// Adds the table's UNIQUE indexes from [`UNIQUE_INDEX_COLUMNS`] rows
    /// `(index, origin, cid, column, collation)`. A table without rowid's primary key is left
    /// out when it compares its columns exactly (BINARY): a row it replaces then has the written
    /// row's key, which its insert records.
    pub fn with_unique_indexes(mut self, rows: &[(String, String, i64, String, String)]) -> Self {
        let mut at = 0;
        while at < rows.len() {
            let index = &rows[at].0;
            let end = rows[at..].iter().position(|r| &r.0 != index).map_or(rows.len(), |n| at + n);
            let part = &rows[at..end];
            at = end;
            if self.without_rowid && part[0].1 == "pk" && !self.untyped_key && part.iter().all(|r| r.4.eq_ignore_ascii_case("BINARY")) {
                continue;
            }
            // cid -1 is the rowid, which no REPLACE can share with another row.
            if part.iter().any(|r| r.2 == -1) {
                continue;
            }
            if part.iter().any(|r| r.2 < 0) {
                self.unique_on_expressions.push(index.clone());
                continue;
            }
            let generated = part.iter().any(|r| !self.columns.contains(&r.3));
            self.unique.push(UniqueIndex { columns: part.iter().map(|r| (r.3.clone(), r.4.clone())).collect(), generated });
        }
        self
    }

    /// What a change of which requires readers to replace the table's rows: its key and columns.
    pub fn fingerprint(&self) -> String {
        serde_json::json!({"v": CAPTURE_VERSION, "wr": self.without_rowid, "key": self.key, "columns": self.columns}).to_string()
    }

    /// The key expressions of a row of this table, as seen through `alias` (`NEW`, `OLD`, `t`).
    fn key_exprs(&self, alias: &str) -> Vec<String> {
        match &self.rowid {
            Some(rowid) => vec![format!("{alias}.{rowid}")],
            None => self.key.iter().map(|c| format!("{alias}.{}", ident(c))).collect(),
        }
    }

    fn key_slots(&self) -> Vec<String> {
        (1..=self.key_exprs("x").len()).map(|i| format!("k{i}")).collect()
    }

    pub fn recordable(&self) -> Result<(), String> {
        if self.virtual_table {
            return Err(format!(
                "durafetch: table {} is a virtual table (fts5, rtree), which takes no triggers, so its changes are not recorded; \
                 keep its source rows in a plain table, which is",
                self.name
            ));
        }
        if !self.without_rowid && self.rowid.is_none() {
            return Err(format!(
                "durafetch: table {} has columns named rowid, _rowid_ and oid, which hide its rowid, and no INTEGER PRIMARY KEY; \
                 its rows cannot be told apart safely, so its changes are not recorded: rename one of those columns",
                self.name
            ));
        }
        if self.key.len() > MAX_KEY_COLUMNS && self.without_rowid {
            return Err(format!(
                "durafetch: table {} has a primary key of {} columns without rowid; at most {MAX_KEY_COLUMNS} are recorded, so its changes are not",
                self.name,
                self.key.len()
            ));
        }
        Ok(())
    }

    /// What the capture of a recordable table cannot see, for the object's log.
    pub fn warnings(&self) -> Vec<String> {
        self.unique_on_expressions
            .iter()
            .map(|index| {
                format!(
                    "durafetch: table {}: a row that INSERT OR REPLACE removes through the UNIQUE index {index}, which is on an expression, \
                     is not recorded until its key is written again",
                    self.name
                )
            })
            .collect()
    }

    /// Whether `trigger` (one of [`OUR_TRIGGERS`]) is a conflict trigger, which names the
    /// columns of a UNIQUE index rather than only the table's key.
    pub fn is_conflict_trigger(trigger: &str) -> bool {
        let kind = trigger.get(SQL_PREFIX.len()..).unwrap_or_default().as_bytes();
        matches!(kind, [b'r' | b's', digit, ..] if digit.is_ascii_digit())
    }

    /// `a` and `b` are the same key value: for a table without rowid, in the same type and
    /// byte for byte, whatever the key's collation (`'a'` and `'A'`, `1` and `1.0` are two keys
    /// to a reader); a rowid is an integer, compared plainly.
    fn same_key(&self, a: &str, b: &str) -> String {
        if self.without_rowid {
            format!("{a} IS {b} COLLATE BINARY AND typeof({a}) = typeof({b})")
        } else {
            format!("{a} IS {b}")
        }
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
        let same_row: Vec<String> = slots.iter().zip(&exprs).map(|(slot, expr)| self.same_key(slot, &format!("+{expr}"))).collect();
        let prune = format!(
            "DELETE FROM {CHANGES_TABLE} WHERE tbl = {table} AND {} AND seq < (SELECT max(seq) FROM {CHANGES_TABLE});",
            same_row.join(" AND ")
        );
        format!("{insert} {prune}")
    }

    /// The triggers, by name: after each insert, update and delete, and before each insert or
    /// update that a UNIQUE index may make `REPLACE` remove other rows through, the record of those
    /// rows (SQLite fires no delete trigger for them unless the user turns `recursive_triggers`
    /// on, and durafetch changes no setting of the user's). Their text is compared with
    /// `sqlite_master`'s to find triggers that are missing or stale (a renamed table's).
    pub fn triggers(&self) -> Vec<(String, String)> {
        let on = ident(&self.name);
        // Exactly, whatever the key's collation: `'a'` updated to `'A'` is another key.
        let key_moved: Vec<String> =
            self.key_exprs("OLD").iter().zip(self.key_exprs("NEW")).map(|(old, new)| self.same_key(old, &new)).collect();
        let key_moved = format!("NOT ({})", key_moved.join(" AND "));
        let mut triggers = vec![
            ("i".to_owned(), format!("AFTER INSERT ON {on}"), self.record("NEW", None)),
            // A key changed by UPDATE: the old key's row is gone, the new one's is written.
            (
                "u".to_owned(),
                format!("AFTER UPDATE ON {on}"),
                format!("{} {}", self.record("OLD", Some(&key_moved)), self.record("NEW", None)),
            ),
            ("d".to_owned(), format!("AFTER DELETE ON {on}"), self.record("OLD", None)),
        ];
        let slots = self.key_slots().join(", ");
        let keys_of_t = self.key_exprs("t").join(", ");
        for (n, index) in self.unique.iter().enumerate() {
            let same: Vec<String> =
                index.columns.iter().map(|(c, coll)| format!("t.{col} = NEW.{col} COLLATE {}", ident(coll), col = ident(c))).collect();
            let conflicting = format!(
                "INSERT INTO {CHANGES_TABLE} (tbl, {slots}) SELECT {}, {keys_of_t} FROM {on} AS t WHERE {}",
                literal(&self.name),
                same.join(" AND ")
            );
            let not_self: Vec<String> =
                self.key_exprs("t").iter().zip(self.key_exprs("OLD")).map(|(t, old)| self.same_key(t, &old)).collect();
            let not_self = format!("NOT ({})", not_self.join(" AND "));
            // Each conflicting row keeps its newest record only, as [`Self::record`]'s do. A partial
            // index's condition is not applied, so rows outside it may be recorded too (resent,
            // never lost): hence each row's own newest, not the table's. Keys here are never NULL.
            let bare_keys: Vec<String> = self.key_exprs("t").iter().map(|k| format!("+{k}")).collect();
            let prune = |extra: &str| {
                let named = format!("({slots}) IN (SELECT {} FROM {on} AS t WHERE {}{extra})", bare_keys.join(", "), same.join(" AND "));
                format!(
                    "DELETE FROM {CHANGES_TABLE} WHERE tbl = {table} AND mark = {MARK_ROW} AND {named} \
                     AND seq NOT IN (SELECT max(seq) FROM {CHANGES_TABLE} WHERE tbl = {table} AND mark = {MARK_ROW} AND {named} GROUP BY {slots}, {typed});",
                    table = literal(&self.name),
                    // `1` and `1.0` group together by value; each keeps its newest by type too.
                    typed = self.key_slots().iter().map(|s| format!("typeof({s})")).collect::<Vec<_>>().join(", "),
                )
            };
            let columns: Vec<String> = index.columns.iter().map(|(c, _)| ident(c)).collect();
            triggers.push((format!("r{}", n + 1), format!("BEFORE INSERT ON {on}"), format!("{conflicting}; {}", prune(""))));
            triggers.push((
                format!("s{}", n + 1),
                if index.generated { format!("BEFORE UPDATE ON {on}") } else { format!("BEFORE UPDATE OF {} ON {on}", columns.join(", ")) },
                format!("{conflicting} AND {not_self}; {}", prune(&format!(" AND {not_self}"))),
            ));
        }
        triggers
            .into_iter()
            .map(|(kind, when, body)| {
                let name = self.trigger_name(&kind);
                let sql = format!("CREATE TRIGGER {} {when} BEGIN {body} END", ident(&name));
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

    /// Whether a snapshot pages through the table by its rowid, or by its key's values.
    fn pages_by_rowid(&self) -> bool {
        self.rowid.is_some()
    }

    /// The key values a [`Self::scan_page`] row ends a page at: its rowid (the position it
    /// selects first), or its key columns among `values`.
    pub fn page_end(&self, position: Option<&str>, values: &[SqlValue]) -> Option<Vec<SqlValue>> {
        match &self.rowid {
            Some(_) => position?.parse().ok().map(|rowid| vec![SqlValue::Integer(rowid)]),
            None => self.key_positions().into_iter().map(|i| values.get(i).cloned()).collect(),
        }
    }

    /// A page of the table's rows in key order for a snapshot, after the row whose key values
    /// `after` gives (`None`: from the start). Selects the position to continue from (the rowid
    /// as text, for a table paged by rowid), the key's literals, then each column's type and
    /// value. `?1` is the page size; the key values are bound from `?2` on (see
    /// [`scan_binding`]), never spliced: they are stored data. Only their types shape the text.
    pub fn scan_page(&self, after: Option<&[SqlValue]>) -> String {
        let keys: Vec<String> = self.key_exprs("t").iter().map(|e| format!("quote({e})")).collect();
        let values = self.value_exprs("t");
        let table = ident(&self.name);
        let bound = |values: &[SqlValue]| -> Vec<String> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    // In a CASE, the cast keeps its exact 64 bits and loses its INTEGER affinity,
                    // which would make an untyped key compare its text as numbers.
                    SqlValue::Integer(_) => format!("CASE WHEN 1 THEN CAST(?{} AS INTEGER) END", i + 2),
                    _ => format!("?{}", i + 2),
                })
                .collect()
        };
        match &self.rowid {
            Some(rowid) => {
                let seek = after.map_or(String::new(), |after| format!("WHERE t.{rowid} > {}", bound(after).join(", ")));
                format!(
                    "SELECT CAST(t.{rowid} AS TEXT), {}, {} FROM {table} AS t {seek} ORDER BY t.{rowid} LIMIT ?1",
                    keys.join(", "),
                    values.join(", ")
                )
            }
            None => {
                let order: Vec<String> = self.key.iter().map(|c| format!("t.{}", ident(c))).collect();
                let seek = after.map_or(String::new(), |after| format!("WHERE ({}) > ({})", order.join(", "), bound(after).join(", ")));
                format!("SELECT {}, {} FROM {table} AS t {seek} ORDER BY {} LIMIT ?1", keys.join(", "), values.join(", "), order.join(", "))
            }
        }
    }

    /// Where each key column stands among the columns.
    fn key_positions(&self) -> Vec<usize> {
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
        // The key's own comparison finds the row through its index; BINARY makes it exact, so
        // that a record of `'a'` does not find the row `'A'` of a NOCASE key.
        let join: Vec<String> = self
            .key_exprs("t")
            .iter()
            .zip(&slots)
            .map(|(expr, slot)| format!("{expr} IS c.{slot} AND {}", self.same_key(expr, &format!("c.{slot}"))))
            .collect();
        let present = match (&self.rowid, self.key.first()) {
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
    /// Tables that cannot be recorded, and why; then what the capture of recorded tables cannot
    /// see. Logged by the object at each sync that changes something.
    pub refused: Vec<String>,
}

/// Compares the tables as they are (`tables`) with what the log knows (`known`: name to
/// fingerprint) and with durafetch's triggers (`triggers`: name to SQL text). SQLite compares
/// the names of tables and triggers without regard to ASCII case, and so does the plan: a table
/// renamed `t` to `T` keeps no trigger of the old name.
pub fn plan_sync(tables: &[TableShape], known: &BTreeMap<String, String>, triggers: &BTreeMap<String, String>) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let existing: BTreeMap<String, &String> = triggers.iter().map(|(name, sql)| (name.to_ascii_lowercase(), sql)).collect();
    // Gone tables first: a reader drops their rows before it takes a table of the same name in
    // another case (`c2` renamed `C2`), which a file that folds case keeps in the same place.
    let present: BTreeMap<&str, ()> = tables.iter().map(|t| (t.name.as_str(), ())).collect();
    for name in known.keys().filter(|name| !present.contains_key(name.as_str())) {
        plan.statements.push(mark(name, MARK_GONE, None));
    }
    let mut wanted = BTreeMap::new();
    for table in tables {
        if let Err(why) = table.recordable() {
            // Known once as refused, with a marker: the object's head moves, so the registry
            // lists it and the next pull visits it and says so in its summary, even when this
            // table is all the object holds.
            let refused = serde_json::json!({"refused": why}).to_string();
            if known.get(&table.name) != Some(&refused) {
                plan.statements.push(mark(&table.name, MARK_GONE, Some(&refused)));
            }
            plan.refused.push(why);
            continue;
        }
        let mut rewrite = known.get(&table.name) != Some(&table.fingerprint());
        for (name, sql) in table.triggers() {
            // A missing trigger means writes may have gone unrecorded (a table dropped and
            // recreated in one exec): readers replace the table's rows, as for a new table.
            if existing.get(&name.to_ascii_lowercase()).copied() != Some(&sql) {
                rewrite = true;
                plan.statements.push(format!("DROP TRIGGER IF EXISTS {}", ident(&name)));
                plan.statements.push(sql.clone());
            }
            wanted.insert(name.to_ascii_lowercase(), ());
        }
        if rewrite {
            plan.refused.extend(table.warnings());
            plan.statements.push(mark(&table.name, MARK_REPLACE, Some(&table.fingerprint())));
        }
    }
    for name in triggers.keys().filter(|name| !wanted.contains_key(&name.to_ascii_lowercase())) {
        plan.statements.push(format!("DROP TRIGGER IF EXISTS {}", ident(name)));
    }
    plan
}

/// A table-wide marker, replacing every older record of the table, and what the log now knows
/// of the table (`shape`; none: forgotten), through [`SYNC_VIEW`]. The marker is inserted before
/// the older records go, as the triggers' records are: a sequence number is the change table's
/// next rowid (one past the largest), so the largest record must never be deleted before a newer
/// one exists, or its number would be handed out again to a reader that has already read past it.
fn mark(table: &str, mark: i64, shape: Option<&str>) -> String {
    format!("INSERT INTO {SYNC_VIEW} (tbl, mark, shape) VALUES ({}, {mark}, {})", literal(table), shape.map_or("NULL".to_owned(), literal))
}

/// The SQL expression of element `i` of the JSON array bound at `param`, as the exact SQLite
/// value [`crate::core::sql_restore::rows_json`] wrote it: an integer, a real, a text, or a
/// blob as `{"b": hex}`.
pub fn json_cell(param: &str, i: usize) -> String {
    format!("CASE json_type({param}, '$[{i}]') WHEN 'object' THEN unhex(json_extract({param}, '$[{i}].b')) ELSE json_extract({param}, '$[{i}]') END")
}

/// How a key value of [`TableShape::scan_page`] is bound: an INTEGER as its decimal text (the
/// query casts it back, all 64 bits), every other value as itself.
pub enum ScanBinding<'a> {
    Text(String),
    Real(f64),
    Blob(&'a [u8]),
    Null,
}

pub fn scan_binding(value: &SqlValue) -> ScanBinding<'_> {
    match value {
        SqlValue::Integer(i) => ScanBinding::Text(i.to_string()),
        SqlValue::Real(r) => ScanBinding::Real(*r),
        SqlValue::Text(t) => ScanBinding::Text(t.clone()),
        SqlValue::Blob(b) => ScanBinding::Blob(b),
        SqlValue::Null => ScanBinding::Null,
    }
}

/// An identifier, quoted.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// What the exec hook needs to know of a call's SQL text, read in one pass over it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatementText {
    /// The text names durafetch's tables or triggers: refused, before it runs. Everything but
    /// comments counts: SQLite takes a string literal where a name is expected
    /// (`DELETE FROM '_durafetch_changes'`), so a literal holding the prefix is refused too.
    /// Values bound as parameters are never looked at.
    pub names_reserved: bool,
    /// The text may change the schema: the word CREATE, ALTER or DROP stands in it outside
    /// string literals, quoted names and comments. Every statement that changes the schema holds
    /// one of them (a trigger's body cannot), so none is missed; a false start costs one sync
    /// that finds nothing to do. workerd refuses `PRAGMA schema_version`, which would have
    /// answered without reading the text.
    pub may_change_schema: bool,
    /// The text may drop an index and then a column it named (ALTER, DROP and INDEX all stand in
    /// it as words): SQLite refuses to drop a column that an index or a trigger names, so
    /// durafetch's triggers that name columns go first. (Without the DROP INDEX, SQLite refuses
    /// the column for its index, as it would without durafetch.)
    pub may_drop_column: bool,
}

impl StatementText {
    pub fn read(query: &str) -> Self {
        let (mut text, mut alter, mut drop, mut index) = (StatementText::default(), false, false, false);
        for (part, kind) in sql_parts(query) {
            text.names_reserved |= contains_ignoring_case(part, SQL_PREFIX);
            if kind != Part::Code {
                continue;
            }
            for word in part.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')) {
                let is = |w: &str| word.eq_ignore_ascii_case(w);
                alter |= is("alter");
                drop |= is("drop");
                index |= is("index");
                text.may_change_schema |= is("create") || is("alter") || is("drop");
            }
        }
        text.may_drop_column = alter && drop && index;
        text
    }
}

/// [`StatementText::names_reserved`] of `query`.
pub fn names_reserved(query: &str) -> bool {
    StatementText::read(query).names_reserved
}

/// [`StatementText::may_change_schema`] of `query`.
pub fn may_change_schema(query: &str) -> bool {
    StatementText::read(query).may_change_schema
}

/// [`StatementText::may_drop_column`] of `query`.
pub fn may_drop_column(query: &str) -> bool {
    StatementText::read(query).may_drop_column
}

/// Where a `$name(...)` parameter that starts at `at` ends, if one does.
fn tcl_parameter_end(bytes: &[u8], at: usize) -> Option<usize> {
    let name = bytes[at + 1..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$' || **b == b':').count();
    let open = at + 1 + name;
    (name > 0 && bytes.get(open) == Some(&b'('))
        .then(|| bytes[open..].iter().position(|b| *b == b')').map_or(bytes.len(), |n| open + n + 1))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Keywords, bare names and operators.
    Code,
    /// A string literal or a quoted name (`"..."`, `[...]`, `` `...` ``), quotes included.
    Quoted,
}

/// `query` cut into its code and its quoted parts, in order, without its comments (`-- ...` to
/// the end of the line, `/* ... */`). Inside a quoted part nothing starts a comment or another
/// quote; a doubled closing quote (`'it''s'`) reads as two parts side by side, which is as good
/// as one here.
fn sql_parts(query: &str) -> Vec<(&str, Part)> {
    let bytes = query.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut at) = (0, 0);
    let past = |from: usize, end: &[u8]| -> usize {
        bytes[from.min(bytes.len())..].windows(end.len()).position(|w| w == end).map_or(bytes.len(), |n| from + n + end.len())
    };
    while at < bytes.len() {
        let (end, kind) = match bytes[at] {
            b'\'' => (past(at + 1, b"'"), Some(Part::Quoted)),
            b'"' => (past(at + 1, b"\""), Some(Part::Quoted)),
            b'`' => (past(at + 1, b"`"), Some(Part::Quoted)),
            b'[' => (past(at + 1, b"]"), Some(Part::Quoted)),
            // A Tcl-style parameter (`$a(--)`, `:a(/*)`) is one token, whatever its parentheses
            // hold: nothing in them starts a comment.
            b'$' | b':' | b'@' | b'#' if tcl_parameter_end(bytes, at).is_some() => {
                at = tcl_parameter_end(bytes, at).unwrap_or(at + 1);
                continue;
            }
            b'-' if bytes.get(at + 1) == Some(&b'-') => (past(at + 2, b"\n"), None),
            b'/' if bytes.get(at + 1) == Some(&b'*') => (past(at + 2, b"*/"), None),
            _ => {
                at += 1;
                continue;
            }
        };
        // The cut points are ASCII bytes, so every part starts and ends on a character boundary.
        parts.push((&query[start..at], Part::Code));
        match kind {
            Some(kind) => parts.push((&query[at..end], kind)),
            // A comment separates words: `CREATE/**/TABLE` is two.
            None => parts.push((" ", Part::Code)),
        }
        start = end;
        at = end;
    }
    parts.push((&query[start..], Part::Code));
    parts
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
        let columns: Vec<ColumnInfo> = columns.iter().map(|(c, pk)| (c.to_string(), *pk, String::new(), 0)).collect();
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
        assert!(
            triggers[1]
                .1
                .contains(r#"NOT (OLD."a" IS NEW."a" COLLATE BINARY AND typeof(OLD."a") = typeof(NEW."a") AND OLD."b" IS NEW."b""#),
            "{}",
            triggers[1].1
        );
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
        assert!(names_reserved(r#"drop trigger "_durafetch_i_t""#));
        assert!(names_reserved("select 'it''s'; drop table [_durafetch_tables]"));
        assert!(names_reserved("select 'a' from x; -- c\n delete from _durafetch_changes"));
        assert!(!names_reserved("select * from durafetch"));
        assert!(names_reserved("DELETE FROM '_durafetch_changes'"), "a literal where a name goes");
        assert!(!may_change_schema(r#"SELECT 1 AS "create""#));
        assert!(may_change_schema(r#"SELECT 1 AS "'"; CREATE TABLE t2 (a)"#), "a quote inside a quoted name starts nothing");
        assert!(may_change_schema("SELECT [--]; DROP TABLE t"));
        assert!(may_drop_column("DROP INDEX i; ALTER TABLE t DROP c") && !may_drop_column("ALTER TABLE t DROP c"));
        assert!(names_reserved("WITH x AS (SELECT $a(--)) DELETE FROM _durafetch_changes"), "a Tcl parameter hides no comment");
        assert!(!names_reserved("select 1 -- _durafetch_changes\n; /* _durafetch_ */ select 2"));
        assert!(may_change_schema("ALTER TABLE t ADD c"));
        assert!(may_change_schema("insert into t values (1); -- then\n /* a table */ drop table t"));
        assert!(may_change_schema("/* v2; add */ CREATE TABLE t (a)"));
        assert!(may_change_schema("/**/Create/**/Index i ON t (a)"));
        assert!(may_change_schema("INSERT INTO t VALUES ('a;b'); ALTER TABLE t RENAME TO T"));
        assert!(!may_change_schema("INSERT INTO t VALUES (1)"));
        assert!(!may_change_schema("INSERT INTO t (created_at, dropped) VALUES ('alter', 'drop') -- drop\n"));
        assert!(!may_change_schema("UPDATE t SET alternative = 1 /* create */"));
    }

    #[test]
    fn a_sync_adds_triggers_marks_new_changed_and_gone_tables_and_is_then_idle() {
        let t = shape("t", false, &[("id", 1), ("v", 0)]);
        let plan = plan_sync(std::slice::from_ref(&t), &BTreeMap::new(), &BTreeMap::new());
        assert!(plan.statements.iter().filter(|s| s.starts_with("CREATE TRIGGER")).count() == 3);
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_REPLACE},"))));
        // Once applied, nothing to do.
        let known = BTreeMap::from([("t".to_owned(), t.fingerprint())]);
        let triggers: BTreeMap<String, String> = t.triggers().into_iter().collect();
        assert_eq!(plan_sync(std::slice::from_ref(&t), &known, &triggers), SyncPlan::default());
        // A column added: replaced, triggers kept.
        let wider = shape("t", false, &[("id", 1), ("v", 0), ("w", 0)]);
        let plan = plan_sync(std::slice::from_ref(&wider), &known, &triggers);
        assert!(!plan.statements.iter().any(|s| s.starts_with("CREATE TRIGGER")));
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_REPLACE},"))));
        // Gone: its triggers dropped with it, its rows dropped by readers.
        let plan = plan_sync(&[], &known, &BTreeMap::new());
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('t', {MARK_GONE},"))));
        // Too wide a key: refused, not recorded.
        let wide: Vec<ColumnInfo> = (1..=9).map(|i| (format!("c{i}"), i, String::new(), 0)).collect();
        let w = TableShape::from_columns("w".into(), true, &wide);
        let plan = plan_sync(std::slice::from_ref(&w), &BTreeMap::new(), &BTreeMap::new());
        assert!(plan.statements.iter().any(|s| s.contains(&format!("VALUES ('w', {MARK_GONE},"))), "a marker, once");
        assert_eq!(plan.refused.len(), 1);
        let known = BTreeMap::from([("w".to_owned(), serde_json::json!({"refused": w.recordable().unwrap_err()}).to_string())]);
        let plan = plan_sync(std::slice::from_ref(&w), &known, &BTreeMap::new());
        assert!(plan.statements.is_empty() && plan.refused.len() == 1, "{plan:?}");
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
        let columns = |table: &str| -> Vec<ColumnInfo> {
            let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
            stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
        };
        let rt = TableShape::from_columns("rt".into(), false, &columns("rt"));
        assert_eq!(rt.rowid.as_deref(), Some("_rowid_"));
        assert!(rt.recordable().is_ok());
        let hidden = TableShape::from_columns("hidden".into(), false, &columns("hidden"));
        assert!(hidden.recordable().unwrap_err().contains("rowid, _rowid_ and oid"));
        db.execute_batch("CREATE TABLE hidden_but_keyed (rowid, _rowid_, oid, id INTEGER PRIMARY KEY)").unwrap();
        let keyed = TableShape::from_columns("hidden_but_keyed".into(), false, &columns("hidden_but_keyed"));
        assert_eq!(keyed.rowid.as_deref(), Some(r#""id""#), "an INTEGER PRIMARY KEY is the rowid");

        let bind = |after: &Option<Vec<SqlValue>>| -> Vec<rusqlite::types::Value> {
            let mut params = vec![rusqlite::types::Value::Integer(1)];
            for value in after.iter().flatten() {
                params.push(match scan_binding(value) {
                    ScanBinding::Text(t) => rusqlite::types::Value::Text(t),
                    ScanBinding::Real(r) => rusqlite::types::Value::Real(r),
                    ScanBinding::Blob(b) => rusqlite::types::Value::Blob(b.to_vec()),
                    ScanBinding::Null => rusqlite::types::Value::Null,
                });
            }
            params
        };
        // Pages of one row: the position of each is the rowid, bound.
        let mut seen = Vec::new();
        let mut after: Option<Vec<SqlValue>> = None;
        loop {
            let query = rt.scan_page(after.as_deref());
            let mut stmt = db.prepare(&query).unwrap();
            let rows: Vec<(String, String)> = stmt
                .query_map(rusqlite::params_from_iter(bind(&after)), |r| Ok((r.get(0)?, r.get(5)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let Some((position, v)) = rows.into_iter().next() else { break };
            seen.push(v);
            after = rt.page_end(Some(&position), &[]);
        }
        assert_eq!(seen, ["1", "2", "3"]);
        let victims: i64 = db.query_row("SELECT count(*) FROM victims", [], |r| r.get(0)).unwrap();
        assert_eq!(victims, 1);

        // Without rowid: the last row's key values, bound exactly (a 54-bit integer, a blob).
        let k = TableShape::from_columns("k".into(), true, &columns("k"));
        let mut keys = Vec::new();
        let mut after: Option<Vec<SqlValue>> = None;
        loop {
            let mut stmt = db.prepare(&k.scan_page(after.as_deref())).unwrap();
            let rows: Vec<Vec<rusqlite::types::Value>> = stmt
                .query_map(rusqlite::params_from_iter(bind(&after)), |r| (0..9).map(|i| r.get(i)).collect())
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
            after = k.page_end(None, &values);
        }
        assert_eq!(keys, ["'it''s',X'00',9007199254740993", "'it''s',X'00',9007199254740994", "'it''s',X'01',1", "'z',X'',-1"]);
    }

    /// The tables of `db` as the runtime reads them, and a sync applied.
    fn sync_native(db: &rusqlite::Connection) -> SyncPlan {
        db.execute_batch(&schema()).unwrap();
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
                let unique: Vec<(String, String, i64, String, String)> = stmt
                    .query_map([&name], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, Option<String>>(3)?.unwrap_or_default(), r.get(4)?))
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
        let plan = plan_sync(&tables, &pairs(KNOWN_TABLES), &pairs(OUR_TRIGGERS));
        for statement in &plan.statements {
            db.execute_batch(statement).unwrap();
        }
        plan
    }

    /// Row records of `table` after `after`, as their first key slot.
    fn recorded(db: &rusqlite::Connection, table: &str, after: i64) -> Vec<i64> {
        let mut stmt = db.prepare("SELECT k1 FROM _durafetch_changes WHERE tbl = ?1 AND mark = 0 AND seq > ?2 ORDER BY k1").unwrap();
        stmt.query_map(rusqlite::params![table, after], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn head(db: &rusqlite::Connection) -> i64 {
        db.query_row(HEAD, [], |r| r.get(0)).unwrap()
    }

    /// The capture changes nothing the user's statements do (a self-updating trigger, REPLACE
    /// without delete triggers), yet records every row a REPLACE removes through any UNIQUE
    /// index (a collation's, two columns', a rowid table's declared key), and keeps rows whose
    /// declared key is NULL apart.
    #[test]
    fn replaced_rows_are_recorded_and_user_statements_behave_as_without_durafetch() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE COLLATE NOCASE, a, b, touched INTEGER DEFAULT 0, UNIQUE (a, b));
             CREATE TRIGGER touch AFTER UPDATE OF name ON items BEGIN UPDATE items SET touched = touched + 1 WHERE id = NEW.id; END;
             CREATE TABLE np (k TEXT PRIMARY KEY, v);
             CREATE TABLE removed (what);
             CREATE TRIGGER np_gone AFTER DELETE ON np BEGIN INSERT INTO removed VALUES (OLD.v); END;
             CREATE TABLE wr (k PRIMARY KEY, u UNIQUE, v) WITHOUT ROWID;
             CREATE UNIQUE INDEX by_lower ON np (lower(v));",
        )
        .unwrap();
        let plan = sync_native(&db);
        assert!(plan.refused.iter().any(|w| w.contains("by_lower")), "{:?}", plan.refused);
        let recursive: i64 = db.query_row("PRAGMA recursive_triggers", [], |r| r.get(0)).unwrap();
        assert_eq!(recursive, 0, "no setting of the user's changes");

        db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (1, 'apple', 1, 1), (2, 'pear', 2, 2), (3, 'fig', 3, 3)").unwrap();
        db.execute_batch("UPDATE items SET name = 'Apple' WHERE id = 1")
            .expect("the user's self-updating trigger runs as without durafetch");
        let touched: i64 = db.query_row("SELECT touched FROM items WHERE id = 1", [], |r| r.get(0)).unwrap();
        assert_eq!(touched, 1);

        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO items (id, name, a, b) VALUES (10, 'APPLE', 9, 9)").unwrap();
        assert_eq!(recorded(&db, "items", before), [1, 10], "the row the NOCASE name replaced, and the new one");
        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO items (id, name, a, b) VALUES (11, 'kiwi', 2, 2)").unwrap();
        assert_eq!(recorded(&db, "items", before), [2, 11], "a two-column UNIQUE");
        let before = head(&db);
        db.execute_batch("UPDATE OR REPLACE items SET name = 'fig' WHERE id = 11").unwrap();
        assert_eq!(recorded(&db, "items", before), [3, 11], "UPDATE OR REPLACE");
        let before = head(&db);
        db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (20, 'new', 20, NULL), (21, 'other', 20, NULL)").unwrap();
        assert_eq!(recorded(&db, "items", before), [20, 21], "NULLs conflict with nothing");

        // NULL in a rowid table's declared key: each row is its own, by rowid.
        db.execute_batch("INSERT INTO np VALUES (NULL, 'one'), (NULL, 'two'), ('x', 'three')").unwrap();
        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO np VALUES ('x', 'four')").unwrap();
        assert_eq!(recorded(&db, "np", before), [3, 4], "the declared key's REPLACE removes rowid 3");
        let removed: i64 = db.query_row("SELECT count(*) FROM removed", [], |r| r.get(0)).unwrap();
        assert_eq!(removed, 0, "the user's delete trigger does not fire for REPLACE, as without durafetch");
        assert_eq!(recorded(&db, "np", 0), [1, 2, 3, 4]);
        let markers: i64 = db.query_row("SELECT count(*) FROM _durafetch_changes WHERE mark <> 0", [], |r| r.get(0)).unwrap();
        assert_eq!(markers, 4, "no row record prunes a table's marker");

        // Without rowid: a REPLACE through the primary key is the written row's own key.
        db.execute_batch("INSERT INTO wr VALUES ('a', 1, 0), ('b', 2, 0)").unwrap();
        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO wr VALUES ('c', 1, 0)").unwrap();
        let mut stmt = db.prepare("SELECT k1 FROM _durafetch_changes WHERE tbl = 'wr' AND seq > ?1 ORDER BY k1").unwrap();
        let keys: Vec<String> = stmt.query_map([before], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(keys, ["a", "c"]);

        // A rename that changes only case keeps its triggers.
        db.execute_batch("ALTER TABLE np RENAME TO tmp; ALTER TABLE tmp RENAME TO NP").unwrap();
        sync_native(&db);
        let before = head(&db);
        db.execute_batch("INSERT INTO NP VALUES ('y', 'five')").unwrap();
        assert_eq!(recorded(&db, "NP", before), [5]);
        assert_eq!(sync_native(&db).statements, Vec::<String>::new(), "a second sync finds nothing to do");

        // A sync after the app's schema statement writes markers, and leaves the app's
        // last_insert_rowid() as its own statements left it.
        db.execute_batch("INSERT INTO items (id, name, a, b) VALUES (99, 'last', 99, 99); CREATE TABLE later (x)").unwrap();
        assert!(sync_native(&db).statements.iter().any(|s| s.contains("'later', 2")));
        let last: i64 = db.query_row("SELECT last_insert_rowid()", [], |r| r.get(0)).unwrap();
        assert_eq!(last, 99);
    }

    /// What a hostile review found: a partial UNIQUE index matching several rows, a NOCASE key
    /// without rowid, a generated column named `rowid`, a UNIQUE generated column, and an untyped
    /// key whose text looks like a number.
    #[test]
    fn partial_indexes_collations_generated_columns_and_untyped_keys() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, u, live, note);
             CREATE UNIQUE INDEX p_live ON p (u) WHERE live;
             CREATE TABLE w (k TEXT COLLATE NOCASE PRIMARY KEY, v) WITHOUT ROWID;
             CREATE TABLE g (a, rowid AS (a % 2));
             CREATE TABLE gu (id INTEGER PRIMARY KEY, a, b AS (a + 0) UNIQUE);
             CREATE TABLE untyped (k PRIMARY KEY, v) WITHOUT ROWID;",
        )
        .unwrap();
        sync_native(&db);
        // A partial index: each matching row keeps its own newest record.
        db.execute_batch("INSERT INTO p VALUES (1, 'x', 0, 'a'), (2, 'x', 0, 'b')").unwrap();
        let before = head(&db);
        db.execute_batch("UPDATE p SET note = 'changed' WHERE id = 1; INSERT INTO p VALUES (3, 'x', 0, 'c')").unwrap();
        assert!(recorded(&db, "p", before).contains(&1), "row 1's change survives the conflict check: {:?}", recorded(&db, "p", before));
        // NOCASE key without rowid: REPLACE of 'A' removes 'a', recorded; an update to another case moves the key.
        db.execute_batch("INSERT INTO w VALUES ('a', 1), ('b', 1)").unwrap();
        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO w VALUES ('A', 2); UPDATE w SET k = 'B' WHERE k = 'b'").unwrap();
        let mut stmt = db.prepare("SELECT k1 FROM _durafetch_changes WHERE tbl = 'w' AND seq > ?1 ORDER BY k1").unwrap();
        let keys: Vec<String> = stmt.query_map([before], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(keys, ["A", "B", "a", "b"]);
        // An untyped key: the REAL 1.0 replacing the INTEGER 1 leaves a record of each.
        db.execute_batch("CREATE TABLE nt (k PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO nt VALUES (1, 'a')").unwrap();
        sync_native(&db);
        let before = head(&db);
        db.execute_batch("INSERT OR REPLACE INTO nt VALUES (1.0, 'b')").unwrap();
        let mut stmt = db.prepare("SELECT quote(k1) FROM _durafetch_changes WHERE tbl = 'nt' AND seq > ?1 ORDER BY 1").unwrap();
        let keys: Vec<String> = stmt.query_map([before], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(keys, ["1", "1.0"]);
        // A generated column named rowid hides the rowid like any column.
        let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
        let columns: Vec<ColumnInfo> =
            stmt.query_map(["g"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
        let g = TableShape::from_columns("g".into(), false, &columns);
        assert_eq!((g.rowid.as_deref(), g.columns.as_slice()), (Some("_rowid_"), ["a".to_owned()].as_slice()));
        // UPDATE OR REPLACE through a UNIQUE generated column.
        db.execute_batch("INSERT INTO gu (id, a) VALUES (1, 1), (2, 2)").unwrap();
        let before = head(&db);
        db.execute_batch("UPDATE OR REPLACE gu SET a = 1 WHERE id = 2").unwrap();
        assert_eq!(recorded(&db, "gu", before), [1, 2]);
        // An untyped key: '3' (text) sorts after 5 (integer), and a page ending at 5 must not
        // compare '3' as a number.
        db.execute_batch("INSERT INTO untyped VALUES (5, 'i'), ('3', 't')").unwrap();
        let mut stmt = db.prepare(TABLE_COLUMNS).unwrap();
        let columns: Vec<ColumnInfo> =
            stmt.query_map(["untyped"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
        let untyped = TableShape::from_columns("untyped".into(), true, &columns);
        let after = [SqlValue::Integer(5)];
        let mut stmt = db.prepare(&untyped.scan_page(Some(&after))).unwrap();
        let next: Vec<String> = stmt.query_map(rusqlite::params![10, "5"], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(next, ["'3'"]);
    }
}
