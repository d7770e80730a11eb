//! What a pull needs of its database, whichever it is: the `Sink` trait that the database
//! thread drives, what its calls answer, and what can go wrong opening or writing it. Both
//! databases write the same tables, and both save an object's cursor only once every page it
//! covers is written (with a snapshot's sweep, in the one transaction that ends it).

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, IndexEntry, SqlPage};

use crate::retry::Retryable;
use crate::sink::database::Part;
use crate::sink::postgres_error::{describe, TlsSettingsError};

/// Why the database could not be opened for writing.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "another durafetch-pull is writing to this file; one puller writes a file at a time (let it finish, or give this run its own --db)"
    )]
    Locked,
    #[error(
        "another durafetch-pull is writing into this PostgreSQL database{}; one puller writes a database, or a --shard part of it, at a time (let it finish, or give each puller its own --shard I/N, every puller of the database with the same N)",
        if *.0 == Part::WHOLE { String::new() } else { format!(" as part {}, or as a whole without --shard", .0) }
    )]
    PostgresLocked(Part),
    #[error(
        "this PostgreSQL database is split into {recorded} parts, and this puller is part {asked}: run every puller with --shard I/{recorded}, or, once every puller of the database has stopped, change the split with: durafetch-pull reshard --db <the same URL> --parts {}",
        .asked.count
    )]
    PostgresSplit { recorded: u32, asked: Part },
    /// A matter for the operator, as a flag is: no retry helps.
    #[error("the PostgreSQL URL cannot be used: {}", describe(.0))]
    PostgresUrl(postgres::Error),
    /// `sslmode` or `sslrootcert` (URL or `PG*` variables) that cannot be used.
    #[error("the PostgreSQL TLS settings cannot be used: {0}")]
    PostgresTls(#[from] TlsSettingsError),
    #[error(
        "the certificate of the PostgreSQL server {host} is refused: {reason}; {}",
        if reason.starts_with("it is not valid for the name") {
            "connect by a name it holds, or, for a server whose CA is your own, check the chain only with sslmode=verify-ca and sslrootcert=<that CA's file>"
        } else {
            "give its CA's certificate (PEM) with sslrootcert=<file> in the URL or PGSSLROOTCERT"
        }
    )]
    PostgresCertificate { host: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", describe(.0))]
    Postgres(#[from] postgres::Error),
}

impl OpenError {
    /// A database in use by another puller, or settings that cannot work: a matter for the
    /// operator, which retrying at once will not help.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            OpenError::Locked
                | OpenError::PostgresLocked(_)
                | OpenError::PostgresSplit { .. }
                | OpenError::PostgresUrl(_)
                | OpenError::PostgresTls(_)
        )
    }
}

/// What can go wrong with the file once it is open.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {}", describe(.0))]
    Postgres(#[from] postgres::Error),
    #[error("database: the database thread stopped")]
    Stopped,
    #[error("database: a page for a download that had already ended")]
    Abandoned,
}

impl Retryable for SinkError {
    /// A database error is the machine's (a full disk, a damaged file): another attempt of the
    /// same download would meet it again.
    fn is_retryable(&self) -> bool {
        false
    }
}

/// An object that needs a download: its local cursor is behind what the registry reported, or
/// its rows were pulled under another key filter.
#[derive(Debug, Clone)]
pub struct PullTarget {
    pub do_id: i64,
    pub class: String,
    pub id: String,
    pub name: Option<String>,
    /// `None`: download a snapshot.
    pub local: Option<Cursor>,
    /// The SQL change sequence the database holds the object at (with `local`).
    pub local_sql: u64,
    /// Compare each row the download sends with the database's (`--verify=full`), counting
    /// those that differ.
    pub compare: bool,
}

impl PullTarget {
    /// The object as a user finds it again: its class, its name when it has one (quoted, so that
    /// spaces and odd characters show), and its id.
    pub fn described(&self) -> String {
        match &self.name {
            Some(name) => format!("{} name {name:?} (id {})", self.class, self.id),
            None => format!("{} id {}", self.class, self.id),
        }
    }
}

/// Names a download's write state on the database thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteId(pub(crate) u64);

#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyStats {
    pub written: u64,
    pub deleted: u64,
    /// With `compare`: rows written that the database lacked or held with another value.
    pub differed: u64,
}

/// What a snapshot's sweep deleted because the object no longer has it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub keys: u64,
    pub rows: u64,
}

/// What a pull needs of its database. Every call that writes is one transaction.
pub trait Sink: Send {
    /// How far the index of `server_url`'s registry shard `shard` has been read.
    fn index_rev(&mut self, server_url: &str, shard: u32) -> Result<u64, SinkError>;
    /// Records a page of the registry index: the registry's head for each object. A head older
    /// than the one held (a row left in another shard after a reshard) changes nothing.
    fn record_index_page(&mut self, server_url: &str, worker: &str, entries: &[IndexEntry]) -> Result<(), SinkError>;
    /// Saves how far a shard of the index has been read, once every page is recorded.
    fn save_index_rev(&mut self, server_url: &str, shard: u32, rev: u64) -> Result<(), SinkError>;
    /// Objects of `server_url` whose local copy is behind the registry (or was never pulled,
    /// or was pulled under another key filter than `key_filter`); with `every`, all of them.
    fn targets(&mut self, server_url: &str, key_filter: &str, every: bool) -> Result<Vec<PullTarget>, SinkError>;
    /// Starts writing a download of the object `do_id`; its state stays here, named by the id.
    fn begin(&mut self, do_id: i64, mode: ExportMode, read_at: Cursor, key_filter: &str, compare: bool) -> Result<WriteId, SinkError>;
    /// Applies a page of changes.
    fn apply(&mut self, id: WriteId, changes: &[Change]) -> Result<ApplyStats, SinkError>;
    /// Applies a page of one SQL table's rows.
    fn apply_sql(&mut self, id: WriteId, page: &SqlPage) -> Result<ApplyStats, SinkError>;
    /// Keeps the schema of one of the object's SQL tables.
    fn save_sql_schema(
        &mut self,
        id: WriteId,
        table: &str,
        statements: &[String],
        autoincrement: Option<i64>,
    ) -> Result<ApplyStats, SinkError>;
    /// Drops the object's rows of an SQL table it no longer has.
    fn drop_sql_table(&mut self, id: WriteId, table: &str) -> Result<ApplyStats, SinkError>;
    /// Ends a download: sweeps what a snapshot did not send and saves the cursor (the key
    /// log's and the SQL one), together; answers what it swept.
    fn finish(&mut self, id: WriteId, cursor: Cursor, sql: u64) -> Result<Swept, SinkError>;
    /// Drops the state of a download that ended without finishing: its cursor stays as it was.
    fn abandon(&mut self, id: WriteId);
}
