//! What a restore asks of a backup, whichever database holds it ([`BackupSource`]), and what the
//! answers mean: which keys are restored, which tables, which columns.

use durafetch_sdk::core::protocol::{Change, ChangeValue, SqlPage, SqlRow, SqlValue};
use rusqlite::Connection;

use crate::settings::filter::Filter;
use crate::sink::naming::source_column_name;

/// An object of the backup.
#[derive(Debug, Clone)]
pub struct BackupObject {
    pub do_id: i64,
    pub worker: String,
    pub class: String,
    pub name: Option<String>,
    pub id: String,
}

/// Why the backup cannot be read as asked.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read the backup file: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the PostgreSQL database: {0}")]
    PostgresOpen(#[from] crate::sink::interface::OpenError),
    #[error("cannot read the PostgreSQL database: {}", crate::sink::postgres_error::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("the PostgreSQL database holds no durafetch tables (no pull wrote into it, or its search_path names another schema)")]
    NotABackup,
    #[error("the connection to the PostgreSQL database ended")]
    Stopped,
    #[error("a pull made a table of the object's class while the restore started to read it")]
    TablesChanged,
    #[error(
        "the backup holds no history, so it cannot say how objects were at an earlier time; --at needs a backup that every pull since the first wrote with --history"
    )]
    NoHistory,
    #[error(
        "its history starts after its first pull (keys without history rows), so the backup cannot say how it was at that time; --at needs every pull since the first to have run with --history"
    )]
    PartialHistory,
    #[error(
        "no schema is recorded for its SQL table {0} (the file was pulled by an older durafetch-pull); run `durafetch-pull --verify=full` once to record it"
    )]
    NoSchema(String),
    #[error("a value in the file does not parse: {0}")]
    BadValue(String),
    #[error(
        "the backup holds objects of one name from several workers ({0}), which a restore would write into the same object: choose one with --worker"
    )]
    SeveralWorkers(String),
}

impl SourceError {
    /// Whether the database could not be reached or read, rather than read and found to be no
    /// backup of what was asked: another run may succeed.
    pub fn is_unreachable(&self) -> bool {
        match self {
            // A URL or TLS settings that cannot work are the operator's to fix, as for a pull.
            SourceError::PostgresOpen(e) => !e.is_config(),
            // A connection lost or refused, the server going down, a lock or a conflict waited
            // out; not a refusal (a grant missing, a table an older release lacks).
            SourceError::Postgres(e) => {
                e.is_closed()
                    || e.code().is_none_or(|code| {
                        let code = code.code();
                        code.starts_with("08") || code.starts_with("57P") || ["55P03", "40001", "40P01", "53300"].contains(&code)
                    })
            }
            SourceError::Stopped | SourceError::TablesChanged => true,
            _ => false,
        }
    }
}

/// One SQL table of a class in the backup: its local table (none if the backup never held its
/// rows) and the columns a restore sends, each as (its local column, source name). A column of
/// the table's schema that the local table lacks has no local column, and is sent as NULL:
/// PostgreSQL's tables gain a column only with its first value that is not NULL.
pub struct TableSource {
    pub(crate) table: String,
    pub(crate) local: Option<String>,
    pub(crate) columns: Vec<(Option<String>, String)>,
    /// The columns the table generates, whose values the history holds but a restore leaves out.
    generated: Vec<String>,
}

impl TableSource {
    /// `schema`'s table as the backup holds it in `local`, whose columns are `locals`, named by
    /// the sink as `local_name` names a source column.
    pub(crate) fn new(schema: &TableSchema, local: Option<String>, locals: Vec<String>, local_name: impl Fn(&str) -> String) -> Self {
        let made = schema.columns();
        let generated: Vec<String> = made.iter().filter(|(_, generated)| *generated).map(|(name, _)| name.clone()).collect();
        let is_generated = |source: &str| generated.iter().any(|name| name.eq_ignore_ascii_case(source));
        let mut columns: Vec<(Option<String>, String)> = locals
            .into_iter()
            .filter_map(|local| {
                let source = match made.iter().find(|(source, _)| local_name(source) == local) {
                    Some((source, _)) => source.clone(),
                    None => source_column_name(&local)?,
                };
                (!is_generated(&source)).then_some((Some(local), source))
            })
            .collect();
        if local.is_some() {
            let missing: Vec<String> = made
                .iter()
                .filter(|(name, generated)| !generated && !columns.iter().any(|(_, source)| source.eq_ignore_ascii_case(name)))
                .map(|(name, _)| name.clone())
                .collect();
            columns.extend(missing.into_iter().map(|name| (None, name)));
        }
        TableSource { table: schema.table.clone(), local, columns, generated }
    }
}

/// Which state of the backup a restore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// What the backup holds now: the objects as of their last pull.
    Latest,
    /// The history's last record of each key and row at or before this time (ms since the
    /// Unix epoch): the objects as the last pull before it left them.
    At(i64),
}

/// How the backup says one of an object's SQL tables is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub table: String,
    /// Its `CREATE TABLE`, then its indexes.
    pub statements: Vec<String>,
    /// Its AUTOINCREMENT counter, when it has one.
    pub autoincrement: Option<i64>,
}

impl TableSchema {
    /// The table made alone from its `CREATE TABLE`, in a database of its own in memory, so that
    /// SQLite itself says what the statement makes; `None` if SQLite cannot make it alone.
    pub(crate) fn made_alone(&self) -> Option<Connection> {
        let scratch = Connection::open_in_memory().ok()?;
        scratch.execute_batch(self.statements.first()?).ok()?;
        Some(scratch)
    }

    /// The columns its `CREATE TABLE` makes: (name, whether generated).
    pub(crate) fn columns(&self) -> Vec<(String, bool)> {
        let Some(scratch) = self.made_alone() else { return Vec::new() };
        let names = scratch
            .prepare("SELECT name, hidden IN (2, 3) FROM pragma_table_xinfo(?1)")
            .and_then(|mut stmt| stmt.query_map([&self.table], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
        names.unwrap_or_default()
    }

    /// Whether its `CREATE TABLE` makes an AUTOINCREMENT table: SQLite makes `sqlite_sequence`
    /// with the first one.
    pub(crate) fn is_autoincrement(&self) -> bool {
        let made = self.made_alone().map(|scratch| {
            scratch.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')", [], |r| r.get(0))
        });
        matches!(made, Some(Ok(true)))
    }
}

/// A backup: the questions a restore asks of it, whose SQL differs between the databases a
/// pull writes. Reads take `&self` and answer a page at a time.
pub trait BackupSource {
    /// Which state of the backup this reads.
    fn moment(&self) -> Moment;

    /// The objects that some pull finished, in class and name order, before filtering.
    fn finished_objects(&self) -> Result<Vec<BackupObject>, SourceError>;

    /// Whether the backup can say how `object` was at the restore's moment: always for the
    /// latest state; at a time, if its history has a record by then (an object first pulled
    /// later did not exist for the backup), and fails if its history is partial.
    fn knows(&self, object: &BackupObject) -> Result<bool, SourceError>;

    /// The next page of the object's keys after `after` (or from the smallest, the empty key
    /// included), each as it was at the moment, with the key of the page's last one.
    fn key_page(&self, object: &BackupObject, after: Option<&str>) -> Result<(Vec<KeyRecord>, Option<String>), SourceError>;

    /// Whether the backup has `key` for the object at the moment (a replace deletes the keys
    /// it lacks).
    fn has_key(&self, object: &BackupObject, key: &str) -> Result<bool, SourceError>;

    /// The object's tables at the moment: those of its class the backup lists, or at a time,
    /// those its history holds rows of then; in name order.
    fn table_names(&self, object: &BackupObject) -> Result<Vec<String>, SourceError>;

    /// The latest schema the backup has of the object's `table`.
    fn schema(&self, object: &BackupObject, table: &str) -> Result<Option<TableSchema>, SourceError>;

    /// Whether the backup holds rows of the object's `table` now.
    fn local_rows_exist(&self, object: &BackupObject, table: &str) -> Result<bool, SourceError>;

    /// Where the backup holds `schema`'s table's rows for the class of `object`, read once for
    /// all its pages.
    fn table_source(&self, object: &BackupObject, schema: &TableSchema) -> Result<TableSource, SourceError>;

    /// The next page of the latest rows of `source`'s table after the row key `after`.
    fn latest_rows(&self, object: &BackupObject, source: &TableSource, after: Option<&str>) -> Result<Vec<SqlRow>, SourceError>;

    /// The next page of the history's records of `table`'s rows after `after`, each the last at
    /// or before `at`: (row key, the row as JSON by column name, none if deleted).
    fn history_rows(&self, object: &BackupObject, table: &str, after: Option<&str>, at: i64) -> Result<HistoryPage, SourceError>;

    /// The objects the filter keeps that some pull finished, in class and name order.
    fn objects(&self, filter: &Filter) -> Result<Vec<BackupObject>, SourceError> {
        Ok(self.finished_objects()?.into_iter().filter(|o| filter.keeps_object(&o.class, o.name.as_deref())).collect())
    }

    /// The next page of the object's keys after `after`, with their values; keys the filter
    /// drops are left out, and values the backup holds as errors (none to restore) are counted
    /// in `errors` and sent without a value, which the object keeps as it has it.
    fn keys(
        &self,
        object: &BackupObject,
        after: Option<&str>,
        filter: &Filter,
        errors: &mut Vec<String>,
    ) -> Result<(Vec<Change>, Option<String>), SourceError> {
        let (records, last) = self.key_page(object, after)?;
        let mut changes = Vec::new();
        for record in records.into_iter().filter(|r| !r.deleted && filter.keeps_key(&r.key)) {
            let value = match record.kind.as_deref() {
                Some("json") => ChangeValue::Json(json(&record.key, record.text)?),
                Some("tagged") => ChangeValue::Tagged(json(&record.key, record.text)?),
                Some("bytes") => ChangeValue::Bytes(record.blob.unwrap_or_default()),
                _ => {
                    let why = record.error.unwrap_or_default();
                    errors.push(format!("{}: {why}", record.key));
                    // Sent all the same, so that a replace keeps the object's value of a key
                    // the backup holds but cannot restore.
                    ChangeValue::Unsupported(why)
                }
            };
            changes.push(Change { key: record.key, value });
        }
        Ok((changes, last))
    }

    /// The object's SQL tables the filter keeps, each with its schema. At a time, the tables
    /// the history holds rows of then; their schema is the latest the backup has (a table that
    /// no longer has one is reported in `errors`), and so is their AUTOINCREMENT counter, which
    /// the object only ever raises.
    fn tables(&self, object: &BackupObject, filter: &Filter, errors: &mut Vec<String>) -> Result<Vec<TableSchema>, SourceError> {
        let mut tables = Vec::new();
        for table in self.table_names(object)?.into_iter().filter(|t| filter.keeps_table(t)) {
            match (self.schema(object, &table)?, self.moment()) {
                (Some(schema), _) => {
                    if schema.autoincrement.is_none() && schema.is_autoincrement() && self.local_rows_exist(object, &table)? {
                        errors.push(format!(
                            "table {table}: its AUTOINCREMENT counter is not in the file (pulled by a release before counters were \
                             recorded), so the restored table hands out keys after its largest restored row's, which may reuse a \
                             deleted row's key; `durafetch-pull --verify=full` once records it"
                        ));
                    }
                    tables.push(schema)
                }
                // Another object of the class has the table, this one neither its rows nor its schema.
                (None, Moment::Latest) if !self.local_rows_exist(object, &table)? => {}
                (None, Moment::Latest) => return Err(SourceError::NoSchema(table)),
                (None, Moment::At(_)) => errors.push(format!("table {table}: dropped since, and its schema with it; not restored")),
            }
        }
        Ok(tables)
    }

    /// The next page of the table's rows after the row key `after`, as the object held them,
    /// in a page whose columns are those of the backup's table (every object's of the class),
    /// with the row key to read on from (none: the table is read).
    fn rows(&self, object: &BackupObject, source: &TableSource, after: Option<&str>) -> Result<(SqlPage, Option<String>), SourceError> {
        let columns: Vec<String> = source.columns.iter().map(|(_, s)| s.clone()).collect();
        let mut page = SqlPage { table: source.table.clone(), columns, rows: Vec::new() };
        let last = match self.moment() {
            Moment::Latest => {
                page.rows = self.latest_rows(object, source, after)?;
                page.rows.last().map(|row| row.k.clone())
            }
            Moment::At(at) => {
                let records = self.history_rows(object, &source.table, after, at)?;
                let last = records.last().map(|(k, _)| k.clone());
                for (k, text) in records {
                    let Some(text) = text else { continue };
                    let values = history_values(source, &k, &page.columns, &text)?;
                    page.rows.push(SqlRow { k, v: Some(values) });
                }
                last
            }
        };
        Ok((page, last))
    }
}

/// The objects of `worker` (all if none), refused if two of them, from different workers,
/// would be restored into the same object (one class and name): pulls of several workers may
/// share a backup, and each worker names its objects alone.
pub fn of_one_worker(objects: Vec<BackupObject>, worker: Option<&str>) -> Result<Vec<BackupObject>, SourceError> {
    let objects: Vec<BackupObject> = objects.into_iter().filter(|o| worker.is_none_or(|w| o.worker == w)).collect();
    let mut seen: std::collections::HashMap<(&str, &str), &str> = std::collections::HashMap::new();
    for object in &objects {
        let Some(name) = object.name.as_deref() else { continue };
        match seen.insert((object.class.as_str(), name), object.worker.as_str()) {
            Some(other) if other != object.worker => {
                return Err(SourceError::SeveralWorkers(format!("{} {name:?}: workers {other} and {}", object.class, object.worker)))
            }
            _ => {}
        }
    }
    Ok(objects)
}

/// A page of the history's records of a table's rows: each row's key, and the row as JSON by
/// column name (none: deleted).
pub type HistoryPage = Vec<(String, Option<String>)>;

/// One key as the backup holds it: its value's kind (`json`, `tagged`, `bytes`, or an error's),
/// its JSON text, its bytes, or why it holds none.
pub struct KeyRecord {
    pub key: String,
    pub deleted: bool,
    pub kind: Option<String>,
    pub text: Option<String>,
    pub blob: Option<Vec<u8>>,
    pub error: Option<String>,
}

/// Keys or rows read per page.
pub(crate) const PAGE_ROWS: i64 = 1000;

/// How a page after `after` starts: the first page at the smallest text (the empty key
/// included), the others after the last key read. One comparison, so that the index seeks.
pub(crate) fn page_start(after: Option<&str>) -> (&'static str, &str) {
    match after {
        None => (">=", ""),
        Some(after) => (">", after),
    }
}

fn json(key: &str, text: Option<String>) -> Result<serde_json::Value, SourceError> {
    serde_json::from_str(text.as_deref().unwrap_or("null")).map_err(|e| SourceError::BadValue(format!("key {key:?}: {e}")))
}

/// A row the history holds as JSON by column name, as values in the order of `columns`; a
/// column the row lacks is NULL, and a generated column's value is left out.
fn history_values(source: &TableSource, k: &str, columns: &[String], text: &str) -> Result<Vec<SqlValue>, SourceError> {
    let table = &source.table;
    let mut named: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| SourceError::BadValue(format!("{table} row {k}: {e}")))?;
    // A column the object had then but the backup's table no longer names.
    let generated = |name: &String| source.generated.iter().any(|g| g.eq_ignore_ascii_case(name));
    // (A column whose every value was NULL: PostgreSQL's table never had it, and a NULL is what
    // the restore sends for a column the page lacks.)
    if let Some((name, _)) = named.iter().find(|(name, value)| !value.is_null() && !columns.contains(name) && !generated(name)) {
        return Err(SourceError::BadValue(format!("{table} row {k}: column {name} is not in the file's table")));
    }
    columns
        .iter()
        .map(|c| named.remove(c).map_or(Ok(SqlValue::Null), serde_json::from_value))
        .collect::<Result<Vec<SqlValue>, _>>()
        .map_err(|e| SourceError::BadValue(format!("{table} row {k}: {e}")))
}
