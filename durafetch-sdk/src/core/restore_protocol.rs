//! The restore wire protocol: `durafetch-pull restore` (the client) writes one object's state
//! into the object (the server) in an import session. `docs/protocol.md` describes the exchange;
//! these types are its single definition.
//!
//! Every message is one JSON text frame. The client opens with [`ImportRequest::Hello`]; the
//! object answers every request with exactly one [`ImportReply`], in order. The client never
//! has more than its hello's `window` requests unanswered, so the object never holds more than
//! a window of requests, each at most [`MAX_IMPORT_REQUEST_BYTES`].
//!
//! The object keeps what the requests carry aside, out of the application's sight, and applies
//! it all at [`ImportRequest::End`] in one transaction of its storage: the mode's decision, the
//! deletions, the writes. A session that ends any other way changes nothing.

use serde::{Deserialize, Serialize};

use crate::core::protocol::{Change, SqlPage};

/// The version of this protocol, which a hello names. Version 4 applies at `end` what version 3
/// (the export protocol's number, which restores shared until then) wrote request by request;
/// version 5 puts back a table's AUTOINCREMENT counter (`create_table`'s `autoincrement`).
pub const IMPORT_VERSION: u32 = 5;

/// Upper bound on the window a restore client may ask for.
pub const MAX_IMPORT_WINDOW: u32 = 16;
/// Largest request the object reads. A page the client builds stays near
/// [`IMPORT_PAGE_TARGET_BYTES`]; one value may make it larger (a SQLite-backed object stores
/// values up to 2 MB, which their JSON or base64 form makes at most about 2.7 MB).
pub const MAX_IMPORT_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// The client closes a page of keys or rows once its JSON text reaches this size.
pub const IMPORT_PAGE_TARGET_BYTES: usize = 1024 * 1024;
/// Keys or rows a client puts in one page: the object writes them in calls of at most 128 keys.
pub const MAX_IMPORT_PAGE_ITEMS: usize = 4096;
/// Keys a [`ImportReply::Keys`] answer holds at most.
pub const LIST_KEYS_LIMIT: usize = 1000;

/// What a restore may do to an object that already holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportMode {
    /// Refuse an object that holds any key or SQL table; write nothing.
    Empty,
    /// Make the object equal to the backup: keys the backup lacks are deleted, tables it has
    /// are dropped and made again from its schema, tables it lacks are dropped.
    Replace,
    /// Write the backup over what the object holds; delete nothing, keep existing tables.
    Merge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImportRequest {
    /// First message of every import session. `keys`: the keys a replace may delete.
    Hello {
        version: u32,
        mode: ImportMode,
        window: u32,
        #[serde(default, skip_serializing_if = "KeyScope::is_everything")]
        keys: KeyScope,
    },
    /// The object's keys after `after` (from the first without), in key order, at most
    /// [`LIST_KEYS_LIMIT`]: what a dry run compares with the backup.
    ListKeys {
        #[serde(default)]
        after: Option<String>,
    },
    /// Each key's value to write, or its deletion (`d`), in key order after every key of the
    /// pages before. A key with no export form (`e`: the backup holds it without a value) is
    /// left as the object has it. A replace deletes the keys of its scope that no page names.
    Put { changes: Vec<Change> },
    /// The SQL table `table` as `statements` make it (its `CREATE TABLE`, then its indexes), as
    /// the mode says: replace drops the table the object has first, merge keeps a table that
    /// exists. `autoincrement` is the table's AUTOINCREMENT counter in the backup, which the
    /// object's counter is raised to (never lowered).
    CreateTable {
        table: String,
        statements: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        autoincrement: Option<i64>,
    },
    /// The SQL table `table` dropped if it exists (a replace, for a table the backup lacks).
    DropTable { table: String },
    /// Rows for a table of an earlier `create_table`, written over any row with the same key
    /// (an upsert: never a delete, so no foreign key cascades): `k` is the row's key as the export
    /// wrote it, which gives a table without a declared key its rowid.
    Rows(SqlPage),
    /// Last message: the object applies everything at once, answers, then closes the session.
    /// (Braces, so that unknown fields are refused here too.)
    End {},
}

/// The keys a replace deletes when the backup lacks them: those that start with one of
/// `prefixes` (any key when there is none) and with none of `exclude_prefixes`, as the puller's
/// key filter keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyScope {
    #[serde(default)]
    pub prefixes: Vec<String>,
    #[serde(default)]
    pub exclude_prefixes: Vec<String>,
}

impl KeyScope {
    pub fn keeps(&self, key: &str) -> bool {
        (self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p.as_str())))
            && !self.exclude_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn is_everything(&self) -> bool {
        self.prefixes.is_empty() && self.exclude_prefixes.is_empty()
    }
}

/// Why a request is refused before anything is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportRequestError {
    #[error("message too large: at most {MAX_IMPORT_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported restore protocol version {0}; this object speaks version {IMPORT_VERSION}: use a durafetch-pull of the same release as the worker's durafetch-sdk")]
    Version(u32),
    #[error("window must be between 1 and {MAX_IMPORT_WINDOW}")]
    Window,
    #[error("a page holds at most {MAX_IMPORT_PAGE_ITEMS} keys or rows")]
    PageTooLong,
}

impl ImportRequest {
    /// Parses and validates one client frame.
    pub fn parse(text: &str) -> Result<Self, ImportRequestError> {
        if text.len() > MAX_IMPORT_REQUEST_BYTES {
            return Err(ImportRequestError::TooLarge);
        }
        let request: ImportRequest = serde_json::from_str(text).map_err(|e| ImportRequestError::Malformed(e.to_string()))?;
        match &request {
            ImportRequest::Hello { version, .. } if *version != IMPORT_VERSION => Err(ImportRequestError::Version(*version)),
            ImportRequest::Hello { window, .. } if *window == 0 || *window > MAX_IMPORT_WINDOW => Err(ImportRequestError::Window),
            ImportRequest::Put { changes } if changes.len() > MAX_IMPORT_PAGE_ITEMS => Err(ImportRequestError::PageTooLong),
            ImportRequest::Rows(page) if page.rows.len() > MAX_IMPORT_PAGE_ITEMS => Err(ImportRequestError::PageTooLong),
            _ => Ok(request),
        }
    }
}

/// What a restore's `end` changed: keys written and deleted, rows written (inserted or written
/// over) and deleted (with the tables a replace dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub keys_written: u64,
    pub keys_deleted: u64,
    pub rows_written: u64,
    pub rows_deleted: u64,
}

/// A user SQL table of the object and how many rows it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImportReply {
    /// The answer to the hello: the worker's name and what the object holds now.
    Ready { worker: String, holds_keys: bool, tables: Vec<TableRows> },
    /// The answer to `list_keys`; `done` when no key follows the last.
    Keys { keys: Vec<String>, done: bool },
    /// The answer to `put`, `create_table`, `drop_table` and `rows`: kept, to be applied at `end`.
    Staged {},
    /// The answer to `end`: everything applied in one transaction.
    Applied(Applied),
    /// The mode forbids writing into this object (`empty`, and it holds data), at the hello or
    /// at `end`. Nothing was written; the object closes the session.
    Refused { message: String },
    /// The session failed; the object closes it.
    Error { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::protocol::{ChangeValue, SqlRow, SqlValue};

    #[test]
    fn requests_have_a_compact_wire_form_and_are_validated() {
        let hello = ImportRequest::Hello { version: IMPORT_VERSION, mode: ImportMode::Replace, window: 4, keys: KeyScope::default() };
        let text = serde_json::to_string(&hello).unwrap();
        assert_eq!(text, format!(r#"{{"type":"hello","version":{IMPORT_VERSION},"mode":"replace","window":4}}"#));
        assert_eq!(ImportRequest::parse(&text), Ok(hello));
        let scoped = ImportRequest::Hello {
            version: IMPORT_VERSION,
            mode: ImportMode::Replace,
            window: 4,
            keys: KeyScope { prefixes: vec!["user:".into()], exclude_prefixes: vec!["user:tmp".into()] },
        };
        assert_eq!(ImportRequest::parse(&serde_json::to_string(&scoped).unwrap()), Ok(scoped));
        let put = ImportRequest::Put {
            changes: vec![
                Change { key: "a".into(), value: ChangeValue::Json(serde_json::json!([1])) },
                Change { key: "b".into(), value: ChangeValue::Deleted },
            ],
        };
        assert_eq!(serde_json::to_string(&put).unwrap(), r#"{"type":"put","changes":[{"k":"a","v":[1]},{"k":"b","d":true}]}"#);
        let rows = ImportRequest::Rows(SqlPage {
            table: "t".into(),
            columns: vec!["x".into()],
            rows: vec![SqlRow { k: "1".into(), v: Some(vec![SqlValue::Blob(vec![0])]) }],
        });
        assert_eq!(ImportRequest::parse(&serde_json::to_string(&rows).unwrap()), Ok(rows));
        assert_eq!(ImportRequest::parse(r#"{"type":"list_keys"}"#), Ok(ImportRequest::ListKeys { after: None }));

        let refused = |text: &str| ImportRequest::parse(text).unwrap_err();
        assert_eq!(refused(r#"{"type":"hello","version":4,"mode":"merge","window":1}"#), ImportRequestError::Version(4));
        assert_eq!(
            refused(&format!(r#"{{"type":"hello","version":{IMPORT_VERSION},"mode":"merge","window":17}}"#)),
            ImportRequestError::Window
        );
        assert!(matches!(refused(r#"{"type":"hello","version":3,"mode":"overwrite","window":1}"#), ImportRequestError::Malformed(_)));
        assert!(matches!(refused(r#"{"type":"end","x":1}"#), ImportRequestError::Malformed(_)));
        assert!(matches!(
            refused(r#"{"type":"hello","version":4,"mode":"merge","window":1,"keys":{"prefix":["a"]}}"#),
            ImportRequestError::Malformed(_)
        ));
        let long = ImportRequest::Put {
            changes: (0..=MAX_IMPORT_PAGE_ITEMS).map(|i| Change { key: i.to_string(), value: ChangeValue::Deleted }).collect(),
        };
        assert_eq!(refused(&serde_json::to_string(&long).unwrap()), ImportRequestError::PageTooLong);
        assert_eq!(refused(&" ".repeat(MAX_IMPORT_REQUEST_BYTES + 1)), ImportRequestError::TooLarge);
    }

    #[test]
    fn a_key_scope_keeps_what_the_filter_keeps() {
        let everything = KeyScope::default();
        assert!(everything.keeps("") && everything.keeps("anything"));
        let scope = KeyScope { prefixes: vec!["a".into(), "b".into()], exclude_prefixes: vec!["ab".into()] };
        assert_eq!(["a", "ba", "ab", "abc", "c", ""].map(|k| scope.keeps(k)), [true, true, false, false, false, false]);
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            ImportReply::Ready { worker: "w".into(), holds_keys: true, tables: vec![TableRows { table: "t".into(), rows: 3 }] },
            ImportReply::Keys { keys: vec!["a".into()], done: false },
            ImportReply::Staged {},
            ImportReply::Applied(Applied { keys_written: 2, keys_deleted: 1, rows_written: 4, rows_deleted: 3 }),
            ImportReply::Refused { message: "holds data".into() },
        ] {
            assert_eq!(serde_json::from_str::<ImportReply>(&serde_json::to_string(&reply).unwrap()).unwrap(), reply);
        }
    }
}
