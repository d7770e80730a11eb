//! The backup a restore reads: the objects of a database a pull wrote (the SQLite file or a
//! PostgreSQL database), and each object's keys and SQL tables, as the database holds them now
//! or, with `--at`, as its history tables held them at that moment. Reads come in pages in key
//! order (the bytes' order, in both databases), so a restore of any size holds one page at a
//! time, and a dry run walks a backup and a copy of the target side by side.
//!
//! Each database answers the few questions whose SQL differs ([`BackupSource`]'s required
//! methods, `sqlite.rs` and `postgres.rs`); what the answers mean is decided once, in
//! `interface.rs`; [`open`] chooses the database.

pub mod interface;
pub(crate) mod postgres;
pub(crate) mod sqlite;

pub use crate::restore::source::interface::{BackupObject, BackupSource, Moment, SourceError, TableSchema, TableSource};
pub use crate::restore::source::postgres::PostgresBackup;
pub use crate::restore::source::sqlite::SqliteBackup;
use crate::sink::database::Database;

/// The backup `db` holds, read as it was at `moment`: to list its objects, or to read `object`.
pub fn open(db: &Database, moment: Moment, object: Option<&BackupObject>) -> Result<Box<dyn BackupSource>, SourceError> {
    Ok(match db {
        Database::File(path) => Box::new(SqliteBackup::open(path, moment)?),
        Database::Postgres(url) => Box::new(PostgresBackup::open(url, moment, object)?),
    })
}

#[cfg(test)]
mod tests;
