//! Where a pull writes: the SQLite file (`sqlite_sink`, the default) or a PostgreSQL database
//! (`postgres_sink`), behind one interface that the database thread (`sink_thread`) drives. Both
//! write the same tables, and both save each object's cursor in the transaction that writes the
//! last of the data it covers.

use std::fmt;
use std::path::PathBuf;

use durafetch_sdk::core::cursor::Cursor;
use durafetch_sdk::core::protocol::{Change, ExportMode, IndexEntry, SqlPage};

use crate::postgres_sink::PostgresSink;
use crate::sink_thread::SinkError;
use crate::sqlite_sink::SqliteSink;

/// The database a pull writes: a `--db` or `db_file` that starts with `postgres://` or
/// `postgresql://` names a PostgreSQL database, anything else a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    File(PathBuf),
    Postgres(String),
}

impl Database {
    pub fn parse(value: PathBuf) -> Self {
        match value.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Database::Postgres(url.to_owned()),
            _ => Database::File(value),
        }
    }
}

/// A file by its path; a PostgreSQL URL without its password, which must not reach a log.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::File(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match url::Url::parse(url) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    // The client also takes the password as a query parameter.
                    if parsed.query_pairs().any(|(key, _)| key == "password") {
                        let pairs: Vec<(String, String)> = parsed
                            .query_pairs()
                            .map(|(key, value)| {
                                let value = if key == "password" { "***".to_owned() } else { value.into_owned() };
                                (key.into_owned(), value)
                            })
                            .collect();
                        parsed.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    write!(f, "{parsed}")
                }
                Err(_) => f.write_str("postgres://(a URL that does not parse)"),
            },
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// The part of the objects one of several pullers takes (`--shard I/N`, I from 1 to N): the
/// objects whose id hashes to I - 1 modulo N. Ids are hashed, not registry shards assigned, so
/// that the parts stay even whatever the registry's shard count, and any N works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    pub const WHOLE: Part = Part { index: 1, count: 1 };

    /// Whether the object `id` is this part's, by the FNV-1a hash of the id: every puller of a
    /// database must agree.
    pub fn owns(&self, id: &str) -> bool {
        fnv1a(id) % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// FNV-1a, 64 bits: a stable hash of names, the same on every machine and version.
pub(crate) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
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

/// The most parts (`--shard I/N`, `reshard --parts N`) a database's objects split into.
pub const MAX_PARTS: u32 = 1024;

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a part: give I/N with 1 <= I <= N <= {MAX_PARTS}, as in --shard 2/4");
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count || count > MAX_PARTS {
            return Err(bad());
        }
        Ok(Part { index, count })
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

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
    #[error("the PostgreSQL URL cannot be used: {}", crate::postgres_sink::describe(.0))]
    PostgresUrl(postgres::Error),
    /// `sslmode` or `sslrootcert` (URL or `PG*` variables) that cannot be used.
    #[error("the PostgreSQL TLS settings cannot be used: {0}")]
    PostgresTls(#[from] crate::postgres_tls::TlsSettingsError),
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
    #[error("{}", crate::postgres_sink::describe(.0))]
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

/// Opens `db` for a pull that takes `part` of the objects.
pub fn open(db: &Database, history: bool, part: Part) -> Result<Box<dyn Sink>, OpenError> {
    Ok(match db {
        Database::File(path) => Box::new(SqliteSink::open(path, history)?),
        Database::Postgres(url) => Box::new(PostgresSink::open(url, history, part)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_object_once_and_evenly() {
        let parts: Vec<Part> = (1..=4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        let mut counts = [0u32; 4];
        for n in 0..4000u32 {
            let id = format!("{:064x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let owners: Vec<usize> = (0..4).filter(|&i| parts[i].owns(&id)).collect();
            assert_eq!(owners.len(), 1, "{id}");
            counts[owners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        assert!(Part::WHOLE.owns("anything"));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0", ""] {
            assert!(bad.parse::<Part>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let db = Database::parse("postgres://puller:s3cret@db.internal:5433/backup".into());
        assert!(matches!(db, Database::Postgres(_)));
        assert_eq!(db.to_string(), "postgres://puller:***@db.internal:5433/backup");
        assert!(!format!("{db:?}").contains("s3cret"));
        assert_eq!(Database::parse("backup.sqlite".into()), Database::File("backup.sqlite".into()));
        let in_query = Database::parse("postgres://puller@db.internal/backup?sslmode=require&password=s3cret".into());
        assert_eq!(in_query.to_string(), "postgres://puller@db.internal/backup?sslmode=require&password=***");
    }
}
