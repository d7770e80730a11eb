//! The SQL half of the change log, as the SQL text the runtime runs inside a SQLite-backed object.
//!
//! Writes are billed a thousand times dearer than reads, so the capture writes as little as it
//! can and leaves the work to the export's reads. Each user table has a change set,
//! `_durafetch_rows_<id>`, holding one row per row of the table that ever changed: its key and
//! the generation it last changed in. Triggers after each insert, update and delete upsert that
//! row, and the upsert writes nothing when the row is already marked in the current generation:
//! a new row costs one more row written, a row changed a million times between two exports costs
//! one. A deletion is a change-set row whose row no longer exists (its tombstone).
//!
//! The generation is `_durafetch_state.head`. It is odd while changes are being recorded since
//! the last export and even once an export has closed them: the first change after an export
//! makes it odd (one row written per export interval), and an export that finds it odd makes it
//! even before it reads. A reader's SQL cursor is the even head its export closed; it has every
//! change of a generation at or below it, and the next export sends the change-set rows and
//! table markers of the generations above it. The head only grows, and grows exactly when
//! something changed since the last export, so it is what the object reports to the registry.
//!
//! A row's key is its rowid in a rowid table (a declared key there may hold NULL, or repeat in
//! another collation), and its primary key in a table without rowid. Which tables exist, and with
//! which key and columns, is kept in `_durafetch_known` with the generation of the table's last
//! marker: when a table appears, changes its columns or loses its triggers (dropped and
//! recreated), the marker asks readers to replace all their rows of it, and when it disappears,
//! to drop them.

mod own_tables;
mod reads;
mod shape;
mod statement_text;
mod sync;
mod triggers;

#[cfg(test)]
mod tests;

pub use own_tables::*;
pub use reads::{decode_value, json_cell, scan_binding, ScanBinding};
pub use shape::{ColumnInfo, IndexColumn, TableShape, UniqueIndex};
pub use statement_text::{may_change_schema, may_drop_column, names_reserved, StatementText};
pub use sync::{plan_sync, KnownTable, SyncPlan};
