//! What a pull writes, decided once for both databases: a download's state between `begin`
//! and `finish` (`ObjectWrite`, kept by `Writes`), a key's value as the `kv` columns hold it,
//! a row as the history holds it, which of a page's items land, and the rule by which an index
//! row replaces the one held. Each database only turns these into its own SQL.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{ChangeValue, ExportMode, SqlValue};

use crate::sink::interface::{SinkError, WriteId};

/// A download in progress, between `begin` and `finish`.
pub(crate) struct ObjectWrite {
    pub(crate) do_id: i64,
    pub(crate) worker: String,
    pub(crate) class: String,
    pub(crate) name: Option<String>,
    /// For a snapshot into a file that held rows of the object: the write stamp taken when it
    /// began. Finishing drops the object's rows stamped below it, which no write since the
    /// snapshot began has touched: keys the object no longer holds. A row written after the
    /// snapshot began, by it or by anything else, is never dropped. Into a file that held no row
    /// of the object there is nothing older to drop, and the sweep (a scan of its rows) is skipped.
    pub(crate) sweep_below: Option<i64>,
    /// A snapshot into a database that held no row of the object: its pages only add rows
    /// (PostgreSQL copies them in bulk).
    pub(crate) fresh: bool,
    pub(crate) read_at: Cursor,
    pub(crate) key_filter: String,
    pub(crate) history: bool,
    /// Count the rows that differ from the file's before writing them.
    pub(crate) compare: bool,
}

/// How a download reads its object, as `Sink::begin` is asked.
pub(crate) struct Reading<'a> {
    pub(crate) mode: ExportMode,
    pub(crate) read_at: Cursor,
    pub(crate) key_filter: &'a str,
    pub(crate) compare: bool,
}

impl ObjectWrite {
    /// A download of the object `do_id` (its worker, class and name as the index recorded them);
    /// `sweep_below` is the stamp a snapshot took because the database held rows of the object,
    /// and a snapshot without one is fresh.
    pub(crate) fn new(
        do_id: i64,
        (worker, class, name): (String, String, Option<String>),
        reading: Reading<'_>,
        sweep_below: Option<i64>,
        history: bool,
    ) -> Self {
        ObjectWrite {
            do_id,
            worker,
            class,
            name,
            sweep_below,
            fresh: reading.mode == ExportMode::Snapshot && sweep_below.is_none(),
            read_at: reading.read_at,
            key_filter: reading.key_filter.to_owned(),
            history,
            compare: reading.compare,
        }
    }
}

/// The downloads a sink is writing, by the id their handles name.
#[derive(Default)]
pub(crate) struct Writes {
    by_id: HashMap<WriteId, ObjectWrite>,
    next: u64,
}

impl Writes {
    /// Keeps `write` under a new id.
    pub(crate) fn start(&mut self, write: ObjectWrite) -> WriteId {
        self.next += 1;
        let id = WriteId(self.next);
        self.by_id.insert(id, write);
        id
    }

    pub(crate) fn get(&self, id: WriteId) -> Result<&ObjectWrite, SinkError> {
        self.by_id.get(&id).ok_or(SinkError::Abandoned)
    }

    /// Forgets the download `id`, answering its state.
    pub(crate) fn end(&mut self, id: WriteId) -> Result<ObjectWrite, SinkError> {
        self.by_id.remove(&id).ok_or(SinkError::Abandoned)
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A value as the `kv` table's `val`, `val_type`, `val_blob` and `val_error` columns hold it.
pub(crate) struct ValueColumns<'a> {
    pub(crate) val: Option<String>,
    pub(crate) kind: &'static str,
    pub(crate) blob: Option<&'a [u8]>,
    pub(crate) error: Option<&'a str>,
}

impl<'a> ValueColumns<'a> {
    /// `None` for a deletion.
    pub(crate) fn of(value: &'a ChangeValue) -> Option<Self> {
        let (val, kind, blob, error) = match value {
            ChangeValue::Deleted => return None,
            ChangeValue::Json(v) => (Some(json_text(v)), "json", None, None),
            ChangeValue::Bytes(b) => (None, "bytes", Some(b.as_slice()), None),
            ChangeValue::Tagged(t) => (Some(t.to_string()), "tagged", None, None),
            ChangeValue::Unsupported(e) => (None, "error", None, Some(e.as_str())),
        };
        Some(ValueColumns { val, kind, blob, error })
    }
}

/// The JSON text of a value, as serde_json writes it: the file's one spelling of every value.
/// A string value with nothing to escape, the common case and the large one, is copied between
/// quotes after one pass that the compiler vectorises; serde_json's writer checks each byte in
/// turn, which was 15% of a pull of 100 KiB strings.
fn json_text(value: &serde_json::Value) -> String {
    if let serde_json::Value::String(s) = value {
        let plain = s.bytes().fold(true, |plain, b| plain & (b >= 0x20 && b != b'"' && b != b'\\'));
        if plain {
            let mut text = String::with_capacity(s.len() + 2);
            text.push('"');
            text.push_str(s);
            text.push('"');
            return text;
        }
    }
    value.to_string()
}

/// A row as `sql_history.row` holds it: a JSON object of its columns, each value as
/// [`value_json`] writes it.
pub(crate) fn row_json(columns: &[String], values: &[SqlValue]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(values)
        .map(|(column, value)| format!("{}:{}", serde_json::Value::from(column.as_str()), value_json(value)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A value in the wire's exact form (see `docs/protocol.md`) as JSON text, a finite REAL spelled
/// with a point and no exponent (`1e16` as `10000000000000000.0`): PostgreSQL's `jsonb` keeps a
/// number's digits and its point but not its exponent, and would hand `1e16` back as an INTEGER.
pub(crate) fn value_json(value: &SqlValue) -> String {
    match value {
        SqlValue::Real(r) if r.is_finite() => {
            let text = r.to_string();
            if text.contains('.') {
                text
            } else {
                text + ".0"
            }
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Of items that may name one key several times, the last for each key, in the order of those
/// last ones: what a page means once each key's changes are applied in turn.
pub(crate) fn last_per_key<'a, T>(items: &'a [T], key: impl Fn(&'a T) -> &'a str) -> Vec<&'a T> {
    let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    items.iter().enumerate().filter(|(i, item)| last[key(item)] == *i).map(|(_, item)| item).collect()
}

/// How both databases record an index row for an object they may already hold: the registry's
/// head replaces the one held only if it is newer (or none was held), so a row left in another
/// registry shard after a reshard changes nothing. The same text in SQLite and PostgreSQL.
pub(crate) const INDEX_HEAD_NEWER: &str = "ON CONFLICT (id) DO UPDATE SET
    class_name = excluded.class_name, name = coalesce(excluded.name, durable_objects.name),
    log_id = excluded.log_id, write_id = excluded.write_id, update_ts = excluded.update_ts,
    server_url = excluded.server_url, registry_rev = excluded.registry_rev
 WHERE excluded.log_id > durable_objects.log_id
    OR (excluded.log_id = durable_objects.log_id AND excluded.write_id > durable_objects.write_id)
    OR durable_objects.log_id IS NULL";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_spells_values_as_serde_json_does() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = ['a', 'é', '"', '\\', '\n', '\u{1}', '\u{7f}', '\u{2028}', '😀', '/', ' '];
        for len in 0..200 {
            let s: String = (0..len).map(|_| alphabet[rng.usize(..alphabet.len())]).collect();
            let value = serde_json::Value::String(s);
            assert_eq!(json_text(&value), value.to_string(), "{value:?}");
        }
        let plain = serde_json::Value::String("x".repeat(100 * 1024));
        assert_eq!(json_text(&plain), plain.to_string());
        for other in [serde_json::json!(1.5), serde_json::json!({"b": [1, "\""], "a": null})] {
            assert_eq!(json_text(&other), other.to_string());
        }
    }

    /// Every value reads back as itself, and a REAL's text keeps a point and no exponent, which
    /// is what `jsonb` keeps (it prints `1e16` as the digits of an INTEGER).
    #[test]
    fn values_are_written_as_jsonb_reads_them_back() {
        let reals = [2.0, 0.1, 1e16, 9.3e18, 1e21, -1e300, 5e-324, 123456789.125, f64::MAX, f64::INFINITY, f64::NEG_INFINITY];
        for value in reals.map(SqlValue::Real).into_iter().chain([
            SqlValue::Integer(i64::MIN),
            SqlValue::Text("\"1e16\"".into()),
            SqlValue::Blob(vec![0, 255]),
            SqlValue::Null,
        ]) {
            let text = value_json(&value);
            if let SqlValue::Real(r) = value {
                assert!(!r.is_finite() || (text.contains('.') && !text.contains('e')), "{text}");
            }
            assert_eq!(serde_json::from_str::<SqlValue>(&text).unwrap(), value, "{text}");
        }
        let row = row_json(&["a \"b\"".into(), "r".into()], &[SqlValue::Text("x".into()), SqlValue::Real(1e16)]);
        assert_eq!(row, r#"{"a \"b\"":"x","r":10000000000000000.0}"#);
    }
}
