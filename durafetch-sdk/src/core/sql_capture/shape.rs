//! A user table as the capture sees it: its row key, columns and UNIQUE indexes, read from
//! SQLite's pragmas; whether it can be recorded; and how its rows' keys are named in SQL.

use super::own_tables::{ident, MAX_KEY_COLUMNS};

/// A column as [`super::TABLE_COLUMNS`] gives it: name, place in the primary key, declared type,
/// generated (non-zero).
pub type ColumnInfo = (String, u32, String, u32);

/// A row of [`super::UNIQUE_INDEX_COLUMNS`]: the index, where it comes from, the column's `cid`
/// (-1 the rowid, -2 an expression), its name and collation, and a partial index's text.
pub type IndexColumn = (String, String, i64, String, String, Option<String>);

/// A UNIQUE index through which `REPLACE` (or `ON CONFLICT REPLACE`) may remove a row other than
/// the one it writes: its columns, each with the collation the index compares it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueIndex {
    pub columns: Vec<(String, String)>,
    /// A partial index's condition, as written in its `CREATE INDEX`.
    pub condition: Option<String>,
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
    /// The columns the app writes, in table order.
    pub columns: Vec<String>,
    /// The generated columns, in table order: exported as values after [`Self::columns`], since
    /// `SELECT *` shows them, and never written by a restore, which SQLite computes them for.
    pub generated: Vec<String>,
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
    /// Whether a key column of a table without rowid has no type (BLOB affinity) or is `ANY` in a
    /// STRICT table: it keeps the INTEGER 1 and the REAL 1.0 apart in their type, while
    /// comparing them equal.
    pub untyped_key: bool,
}

/// Whether a key column of this declared type may hold an INTEGER and a REAL that compare
/// equal (1 and 1.0): BLOB affinity (SQLite's rules, in their order), or `ANY` in a STRICT table,
/// which keeps every value's type.
fn keeps_numeric_types(declared: &str) -> bool {
    let upper = declared.to_ascii_uppercase();
    let has = |word: &str| upper.contains(word);
    upper == "ANY" || !has("INT") && !has("CHAR") && !has("CLOB") && !has("TEXT") && (has("BLOB") || upper.is_empty())
}

/// The names SQLite gives the rowid, in the order durafetch prefers them.
const ROWID_NAMES: [&str; 3] = ["rowid", "_rowid_", "oid"];

/// Version of the capture's row keys and triggers: a table recorded by an older version is
/// resent whole once, its rows keyed anew.
const CAPTURE_VERSION: u32 = 3;

impl TableShape {
    /// Builds the shape from [`super::TABLE_COLUMNS`] rows.
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
        let untyped_key = without_rowid && key.iter().any(|(_, _, declared, _)| keeps_numeric_types(declared));
        TableShape {
            name,
            without_rowid,
            key: key.into_iter().map(|(c, _, _, _)| c.clone()).collect(),
            columns: columns.iter().filter(|(_, _, _, generated)| *generated == 0).map(|(c, _, _, _)| c.clone()).collect(),
            generated: columns.iter().filter(|(_, _, _, generated)| *generated != 0).map(|(c, _, _, _)| c.clone()).collect(),
            untyped_key,
            virtual_table: false,
            rowid,
            unique: Vec::new(),
            unique_on_expressions: Vec::new(),
        }
    }

    /// Adds the table's UNIQUE indexes from [`super::UNIQUE_INDEX_COLUMNS`] rows. A table without rowid's primary key is left
    /// out when it compares its columns exactly (BINARY): a row it replaces then has the written
    /// row's key, which its insert records.
    pub fn with_unique_indexes(mut self, rows: &[IndexColumn]) -> Self {
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
            let condition = part[0].5.as_deref().and_then(super::statement_text::partial_index_condition);
            self.unique.push(UniqueIndex { columns: part.iter().map(|r| (r.3.clone(), r.4.clone())).collect(), generated, condition });
        }
        self
    }

    /// What a change of which requires readers to replace the table's rows: its key and columns.
    /// Generated columns count only where there are some, so that a table without any keeps the
    /// fingerprint it had before they were exported.
    pub fn fingerprint(&self) -> String {
        let mut print = serde_json::json!({"v": CAPTURE_VERSION, "wr": self.without_rowid, "key": self.key, "columns": self.columns});
        if !self.generated.is_empty() {
            print["generated"] = serde_json::json!(self.generated);
        }
        print.to_string()
    }

    /// The columns an export sends, in the order its pages name them: the written ones, then the
    /// generated ones.
    pub fn exported_columns(&self) -> Vec<String> {
        self.columns.iter().chain(&self.generated).cloned().collect()
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

    /// The key expressions of a row of this table, as seen through `alias` (`NEW`, `OLD`, `t`).
    pub(super) fn key_exprs(&self, alias: &str) -> Vec<String> {
        match &self.rowid {
            Some(rowid) => vec![format!("{alias}.{rowid}")],
            None => self.key.iter().map(|c| format!("{alias}.{}", ident(c))).collect(),
        }
    }

    pub fn key_len(&self) -> usize {
        self.key_exprs("x").len()
    }

    /// The change set's key columns: `k` (the rowid), or `k1`.. (the primary key's values as
    /// they are stored, compared exactly), and for an untyped key `ty`, its values' types, which
    /// keep the INTEGER 1 and the REAL 1.0 apart where the values compare equal.
    pub(super) fn change_set_key(&self) -> Vec<String> {
        if self.rowid.is_some() {
            return vec!["k".to_owned()];
        }
        let mut slots: Vec<String> = (1..=self.key.len()).map(|i| format!("k{i}")).collect();
        if self.untyped_key {
            slots.push("ty".to_owned());
        }
        slots
    }

    /// The values [`Self::change_set_key`] records for the row `alias` names.
    pub(super) fn change_set_values(&self, alias: &str) -> Vec<String> {
        let mut values = self.key_exprs(alias);
        if self.untyped_key {
            let types: Vec<String> = values.iter().map(|v| format!("typeof({v})")).collect();
            values.push(types.join(" || ',' || "));
        }
        values
    }

    /// `a` and `b` are the same key value: for a table without rowid, in the same type and
    /// byte for byte, whatever the key's collation (`'a'` and `'A'`, `1` and `1.0` are two keys
    /// to a reader); a rowid is an integer, compared plainly.
    pub(super) fn same_key(&self, a: &str, b: &str) -> String {
        if self.without_rowid {
            format!("{a} IS {b} COLLATE BINARY AND typeof({a}) = typeof({b})")
        } else {
            format!("{a} IS {b}")
        }
    }
}
