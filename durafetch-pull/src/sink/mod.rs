//! Where a pull writes, in layers: at the bottom what every database shares (`interface`: the
//! `Sink` trait and its errors; `database`: which database and which part; `plan`: what a
//! download writes, decided once; `naming`: the local tables' and columns' names); above it
//! each database, a leaf that turns the plan into its own SQL (`sqlite`, `postgres`), or
//! `memory` for the pull logic's tests; `thread` runs whichever one on a thread of its own; and
//! `open` here chooses one.

pub mod database;
pub mod interface;
#[cfg(test)]
pub(crate) mod memory;
pub mod naming;
pub mod plan;
pub mod postgres;
pub mod postgres_error;
pub mod sqlite;
pub mod thread;

use crate::sink::database::{Database, Part};
use crate::sink::interface::{OpenError, Sink};
use crate::sink::postgres::database::PostgresSink;
use crate::sink::sqlite::file::SqliteSink;

/// Opens `db` for a pull that takes `part` of the objects.
pub fn open(db: &Database, history: bool, part: Part) -> Result<Box<dyn Sink>, OpenError> {
    Ok(match db {
        Database::File(path) => Box::new(SqliteSink::open(path, history)?),
        Database::Postgres(url) => Box::new(PostgresSink::open(url, history, part)?),
    })
}
