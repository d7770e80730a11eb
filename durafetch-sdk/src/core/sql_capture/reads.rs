//! What an export reads: a table's rows in pages for a snapshot, and the rows its change set
//! marks since a reader's generation, each value in a form JSON carries exactly. Positions are
//! bound, never spliced: they are stored data.

use super::own_tables::{ident, CHANGE_SET_PREFIX};
use super::shape::TableShape;
use crate::core::protocol::SqlValue;

/// `col`'s type, then its value in a form JSON carries exactly (see [`decode_value`]).
fn typed_value(col: &str) -> [String; 2] {
    [
        format!("typeof({col})"),
        format!(
            "CASE typeof({col}) WHEN 'integer' THEN CAST({col} AS TEXT) WHEN 'blob' THEN hex({col}) \
             WHEN 'real' THEN CASE WHEN {col} = 9e999 THEN 'inf' WHEN {col} = -9e999 THEN '-inf' ELSE {col} END ELSE {col} END"
        ),
    ]
}

/// The SQL of `values` bound from parameter `?first` on. In a CASE, an INTEGER's cast keeps its
/// exact 64 bits and loses its INTEGER affinity, which would make an untyped key compare its
/// text as numbers.
fn bound(values: &[SqlValue], first: usize) -> Vec<String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            SqlValue::Integer(_) => format!("CASE WHEN 1 THEN CAST(?{} AS INTEGER) END", i + first),
            _ => format!("?{}", i + first),
        })
        .collect()
}

impl TableShape {
    /// The selected values of each column: its type, then its value in a form JSON carries
    /// exactly, so that a whole read crosses from JS as one JSON text.
    fn value_exprs(&self, alias: &str) -> Vec<String> {
        self.exported_columns().iter().flat_map(|c| typed_value(&format!("{alias}.{}", ident(c)))).collect()
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
    /// [`scan_binding`]). Only their types shape the text.
    pub fn scan_page(&self, after: Option<&[SqlValue]>) -> String {
        let keys: Vec<String> = self.key_exprs("t").iter().map(|e| format!("quote({e})")).collect();
        let values = self.value_exprs("t");
        let table = ident(&self.name);
        match &self.rowid {
            Some(rowid) => {
                let seek = after.map_or(String::new(), |after| format!("WHERE t.{rowid} > {}", bound(after, 2).join(", ")));
                format!(
                    "SELECT CAST(t.{rowid} AS TEXT), {}, {} FROM {table} AS t {seek} ORDER BY t.{rowid} LIMIT ?1",
                    keys.join(", "),
                    values.join(", ")
                )
            }
            None => {
                let order: Vec<String> = self.key.iter().map(|c| format!("t.{}", ident(c))).collect();
                let seek = after.map_or(String::new(), |after| format!("WHERE ({}) > ({})", order.join(", "), bound(after, 2).join(", ")));
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
        usize::from(self.rowid.is_some())
    }

    /// How many change-set key values lead a [`Self::changed_rows`] row, each as a type and a
    /// value (so twice as many selected values).
    pub fn change_set_key_len(&self) -> usize {
        self.change_set_key().len()
    }

    /// The rows `change_set` marks in a generation above `?1`, at most `?2`, in the change set's
    /// key order after the position `after` (bound from `?3` on): each row's position (its
    /// change-set key, typed), its key literals, whether the row exists, then each column's type
    /// and value. A row the set marks that no longer exists was deleted: its tombstone.
    pub fn changed_rows(&self, change_set: &str, after: Option<&[SqlValue]>) -> String {
        debug_assert!(change_set.starts_with(CHANGE_SET_PREFIX));
        let slots: Vec<String> = self.change_set_key().iter().map(|s| format!("c.{s}")).collect();
        let position: Vec<String> = slots.iter().flat_map(|s| typed_value(s)).collect();
        let key_values = &slots[..self.key_len()];
        let literals: Vec<String> = key_values.iter().map(|s| format!("quote({s})")).collect();
        // The key's own comparison finds the row through its index; BINARY and the type make it
        // exact, so that a mark of `'a'` does not find the row `'A'` of a NOCASE key.
        let join: Vec<String> = self
            .key_exprs("t")
            .iter()
            .zip(key_values)
            .map(|(expr, slot)| format!("{expr} IS {slot} AND {}", self.same_key(expr, slot)))
            .collect();
        let present = match (&self.rowid, self.key.first()) {
            (Some(rowid), _) => format!("t.{rowid} IS NOT NULL"),
            (None, Some(first)) => format!("t.{} IS NOT NULL", ident(first)),
            (None, None) => "0".to_owned(),
        };
        let seek = after.map_or(String::new(), |after| format!("AND ({}) > ({})", slots.join(", "), bound(after, 3).join(", ")));
        format!(
            "SELECT {}, {}, {present}, {} FROM {} AS c LEFT JOIN {} AS t ON {} WHERE c.gen > ?1 {seek} ORDER BY {} LIMIT ?2",
            position.join(", "),
            literals.join(", "),
            self.value_exprs("t").join(", "),
            ident(change_set),
            ident(&self.name),
            join.join(" AND "),
            slots.join(", "),
        )
    }
}

/// The SQL expression of element `i` of the JSON array bound at `param`, as the exact SQLite
/// value [`crate::core::sql_restore::rows_json`] wrote it: an integer, a real, a text, or a
/// blob as `{"b": hex}`.
pub fn json_cell(param: &str, i: usize) -> String {
    format!("CASE json_type({param}, '$[{i}]') WHEN 'object' THEN unhex(json_extract({param}, '$[{i}].b')) ELSE json_extract({param}, '$[{i}]') END")
}

/// How a position value of [`TableShape::scan_page`] or [`TableShape::changed_rows`] is bound:
/// an INTEGER as its decimal text (the query casts it back, all 64 bits), every other value as
/// itself.
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
