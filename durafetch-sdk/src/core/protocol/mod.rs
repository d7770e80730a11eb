//! The export wire protocol, shared by the object (server) and the puller (client).
//! `docs/protocol.md` describes the exchange; these types are its single definition.
//!
//! Every message is one JSON text frame. The client opens with [`ClientMessage::Hello`], naming the
//! protocol version and how many pages it will buffer (`window`); the server sends at most that
//! many pages ahead of the client's [`ClientMessage::Credit`] messages, so neither end ever holds
//! more than a window of pages.
//!
//! An export may also be asked for in one HTTP request: a POST of the hello, answered with the
//! same server messages, one per line, when they fit in [`ONE_RESPONSE_MAX_BYTES`], or with 426
//! (Upgrade Required) when the export needs a session. Most objects are small, and a request
//! on a kept-alive connection costs both ends less than opening a WebSocket.

use crate::core::cursor::Cursor;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Version 2 added the SQL tables of SQLite-backed objects (`sql_page`, `sql_table_gone`, the
/// SQL half of the cursor) and the worker's name in `objects` pages; version 3 the tables'
/// schema (`sql_schema`), which a restore recreates them from; version 4 the generated columns'
/// values in `sql_page` and a table's AUTOINCREMENT counter in `sql_schema`. An older client is
/// refused with an error naming both versions.
pub const PROTOCOL_VERSION: u32 = 4;
/// Range reads of an export, and the pages it sends, hold at most this many keys: `list` has no
/// per-call key limit, and each read and page has a fixed cost on both ends (a 100,000-key export
/// took 140 ms of the object's time with reads of 1,000 keys, and 105 ms with reads of 4,000).
pub const MAX_PAGE_CHANGES: usize = 4000;
/// A page is sent once its JSON text reaches this size, well under WebSocket message limits.
pub const PAGE_TARGET_BYTES: usize = 256 * 1024;
/// The most an export answered in one response holds, its messages and their line ends together.
pub const ONE_RESPONSE_MAX_BYTES: usize = PAGE_TARGET_BYTES;
/// Upper bound on the window a client may ask for.
pub const MAX_WINDOW: u32 = 64;
/// How long the server waits for a message the client owes it: its hello, or a credit once the
/// window is used up. A live client sends either within milliseconds; one silent this long has
/// gone without closing, and its session ends rather than holding the object's memory.
pub const CLIENT_SILENCE_LIMIT_SECS: u64 = 60;
/// Largest client message the server reads; anything longer is a protocol error.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of every session.
    Hello {
        version: u32,
        /// For an object export: the cursor the client holds (`None`: send everything).
        #[serde(default)]
        since: Option<Cursor>,
        /// For an object export, with `since`: the SQL change sequence the client holds.
        #[serde(default)]
        since_sql: u64,
        /// For the index: the registry revision the client holds (0: everything).
        #[serde(default)]
        since_rev: u64,
        /// Pages the client accepts before its first credit.
        window: u32,
        /// For the index: after the changes so far, keep the session open and push each new
        /// change as it is recorded (an `objects` page, then `index_end`).
        #[serde(default)]
        watch: bool,
    },
    /// The client has consumed `pages` more pages.
    Credit { pages: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message too large: at most {MAX_CLIENT_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {0}; this server speaks version {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("window must be between 1 and {MAX_WINDOW}")]
    Window,
    #[error("credit beyond the window: the client granted more pages than its hello's window")]
    CreditBeyondWindow,
    #[error("expected a hello message first")]
    NoHello,
    #[error("the client sent nothing for {CLIENT_SILENCE_LIMIT_SECS} s while the server waited for its hello or a credit")]
    Silent,
}

impl ClientMessage {
    /// Parses and validates one client frame.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        if text.len() > MAX_CLIENT_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge);
        }
        let msg: ClientMessage = serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        match msg {
            ClientMessage::Hello { version, .. } if version != PROTOCOL_VERSION => Err(ProtocolError::Version(version)),
            ClientMessage::Hello { window, .. } if window == 0 || window > MAX_WINDOW => Err(ProtocolError::Window),
            ClientMessage::Credit { pages } if pages == 0 || pages > MAX_WINDOW => Err(ProtocolError::Window),
            msg => Ok(msg),
        }
    }
}

/// Whether a session starts from nothing or continues from the client's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportMode {
    /// The client must drop every key it holds for the object that this session does not send.
    Snapshot,
    /// The client applies the changes on top of what it holds.
    Changes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message of an export session.
    Begin { mode: ExportMode, epoch: u32 },
    /// A page of changes of an export session.
    Page { changes: Vec<Change> },
    /// The current rows (or deletions) of one SQL table of a SQLite-backed object. In a
    /// snapshot, together with the key pages, they are the object's whole state.
    SqlPage(SqlPage),
    /// An SQL table the object dropped (or renamed away) since the client's cursor: the client
    /// drops every row it holds of it for this object.
    SqlTableGone { table: String },
    /// How an SQL table is made, as the object's `sqlite_master` holds it: its `CREATE TABLE`
    /// statement, then those of its indexes. Sent before a table's rows whenever the session
    /// sends the table whole or any of its rows; the client keeps the latest.
    /// With `refused`, the table is one durafetch cannot record, and why: its rows are not sent,
    /// and the client says so in its summary (sent once a session, without statements).
    SqlSchema {
        table: String,
        statements: Vec<String>,
        /// The table's AUTOINCREMENT counter (its `sqlite_sequence` row) when it has one: the
        /// largest key the table ever handed out, which a restore puts back so that no deleted
        /// key is handed out again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        autoincrement: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// Last message of an export session: the client now holds the object as of `cursor` (its
    /// key log) and `sql` (its SQL change sequence, 0 for an object without SQL tables).
    End {
        cursor: Cursor,
        #[serde(default)]
        sql: u64,
    },
    /// A page of the registry index, in revision order.
    /// `worker` is the worker's name (`[vars.DURAFETCH] worker`): the client files the objects
    /// under it, whatever host or path prefix it reached the worker by.
    Objects { worker: String, objects: Vec<IndexEntry> },
    /// Last message of an index session (or of a batch, in a watch): the client has seen every
    /// change of this shard up to `rev`. `shards` is how many registry shards the worker has.
    IndexEnd {
        rev: u64,
        #[serde(default = "one_shard")]
        shards: u32,
    },
    /// The session failed; the server closes the socket after this.
    Error { message: String },
}

/// How a `page` message's text starts, as [`PageWriter`](crate::core::page_writer::PageWriter) writes it.
pub(crate) const PAGE_HEAD: &str = r#"{"type":"page","changes":["#;

fn one_shard() -> u32 {
    1
}

impl ServerMessage {
    /// Parses one server frame. Pages, the bulk of every export, are read straight into their
    /// changes when they have [`PageWriter`](crate::core::page_writer::PageWriter)'s form: the derived parser of a tagged enum would
    /// first buffer the whole page as an untyped tree.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        // PAGE_HEAD ends with the array's opening bracket, which the array parse needs.
        let array_start = PAGE_HEAD.len() - 1;
        if text.starts_with(PAGE_HEAD) && text.ends_with('}') {
            if let Ok(changes) = serde_json::from_str::<Vec<Change>>(&text[array_start..text.len() - 1]) {
                return Ok(ServerMessage::Page { changes });
            }
        }
        serde_json::from_str(text)
    }
}

/// Rows of one SQL table. `columns` names the values of each row, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlPage {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<SqlRow>,
}

/// One row of an SQL table, named by its key within the object: `k` is the SQL literals of its
/// primary key columns joined by commas (`quote()` of each), or of its rowid for a table without
/// a declared key. `v` holds the values in the page's column order; absent, the row is deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRow {
    pub k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<Vec<SqlValue>>,
}

/// An SQLite value, exactly. On the wire: `null`; an INTEGER as a JSON integer (all 64 bits:
/// both ends parse it as an integer, never through a double); a REAL as a JSON number with a
/// fraction or exponent (3.0 stays `3.0`), or `{"real":"inf"}` / `{"real":"-inf"}` (SQLite stores
/// NaN as NULL); TEXT as a string; a BLOB as `{"blob":"<base64>"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    /// About how many bytes the value takes on the wire, for cutting pages to size.
    pub fn wire_size(&self) -> usize {
        match self {
            SqlValue::Null | SqlValue::Integer(_) | SqlValue::Real(_) => 24,
            SqlValue::Text(t) => t.len() + 2,
            SqlValue::Blob(b) => b.len() * 4 / 3 + 12,
        }
    }
}

impl Serialize for SqlValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let tagged = |s: S, tag: &str, value: &str| {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(tag, value)?;
            map.end()
        };
        match self {
            SqlValue::Null => s.serialize_unit(),
            SqlValue::Integer(i) => s.serialize_i64(*i),
            SqlValue::Real(r) if r.is_finite() => s.serialize_f64(*r),
            SqlValue::Real(r) => tagged(s, "real", if *r > 0.0 { "inf" } else { "-inf" }),
            SqlValue::Text(t) => s.serialize_str(t),
            SqlValue::Blob(b) => tagged(s, "blob", &base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }
}

impl<'de> Deserialize<'de> for SqlValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(SqlValue::Null),
            serde_json::Value::String(t) => Ok(SqlValue::Text(t)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => Ok(SqlValue::Integer(i)),
                _ if n.is_f64() => Ok(SqlValue::Real(n.as_f64().unwrap_or_default())),
                _ => Err(D::Error::custom(format!("integer {n} is outside SQLite's 64 bits"))),
            },
            serde_json::Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((tag, serde_json::Value::String(v))) if tag == "real" && v == "inf" => Ok(SqlValue::Real(f64::INFINITY)),
                Some((tag, serde_json::Value::String(v))) if tag == "real" && v == "-inf" => Ok(SqlValue::Real(f64::NEG_INFINITY)),
                Some((tag, serde_json::Value::String(v))) if tag == "blob" => base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(SqlValue::Blob)
                    .map_err(|e| D::Error::custom(format!("bad base64 in a blob: {e}"))),
                _ => Err(D::Error::custom("expected {\"real\": \"inf\" or \"-inf\"} or {\"blob\": base64}")),
            },
            other => Err(D::Error::custom(format!("not an SQL value: {other}"))),
        }
    }
}

/// One registry row: an instrumented object and the newest log position it reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub class: String,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub head: Cursor,
    /// The registry revision at which this row last changed.
    pub rev: u64,
    /// Milliseconds since the Unix epoch when the registry recorded the change.
    pub changed_at: i64,
}

/// What an instrumented object tells its registry after writes (an internal call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectReport {
    pub class: String,
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub head: Cursor,
}

/// The key that marks a tagged node inside a [`ChangeValue::Tagged`] value:
/// `{"$type": "map", "value": [[k, v], ...]}`. `docs/protocol.md` lists every tag.
pub const TYPE_TAG: &str = "$type";

/// A key's new state. On the wire: `{"k": key}` plus exactly one of `"v"` (a JSON value), `"b"`
/// (base64 bytes), `"t"` (JSON with type tags, for values JSON cannot hold), `"d": true`
/// (deleted) or `"e"` (the value exists but cannot be exported; the message says why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawChange", into = "RawChange")]
pub struct Change {
    pub key: String,
    pub value: ChangeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChangeValue {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
    /// A Map, Set, Date, BigInt, undefined, ... (at any depth) in the tagged JSON form.
    Tagged(serde_json::Value),
    Deleted,
    Unsupported(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_value")]
    v: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
}

/// Keeps `"v": null` apart from an absent `v`: null is a value a user can store.
fn some_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl TryFrom<RawChange> for Change {
    type Error = String;
    fn try_from(raw: RawChange) -> Result<Self, String> {
        let value = match (raw.v, raw.b, raw.t, raw.d, raw.e) {
            (Some(v), None, None, None, None) => ChangeValue::Json(v),
            (None, Some(b), None, None, None) => ChangeValue::Bytes(
                base64::engine::general_purpose::STANDARD.decode(b).map_err(|e| format!("key {:?}: bad base64: {e}", raw.k))?,
            ),
            (None, None, Some(t), None, None) => ChangeValue::Tagged(t),
            (None, None, None, Some(true), None) => ChangeValue::Deleted,
            (None, None, None, None, Some(e)) => ChangeValue::Unsupported(e),
            _ => return Err(format!("key {:?}: expected exactly one of v, b, t, d:true, e", raw.k)),
        };
        Ok(Change { key: raw.k, value })
    }
}

impl From<Change> for RawChange {
    fn from(c: Change) -> Self {
        let mut raw = RawChange { k: c.key, v: None, b: None, t: None, d: None, e: None };
        match c.value {
            ChangeValue::Json(v) => raw.v = Some(v),
            ChangeValue::Bytes(b) => raw.b = Some(base64::engine::general_purpose::STANDARD.encode(b)),
            ChangeValue::Tagged(t) => raw.t = Some(t),
            ChangeValue::Deleted => raw.d = Some(true),
            ChangeValue::Unsupported(e) => raw.e = Some(e),
        }
        raw
    }
}

#[cfg(test)]
mod tests;
