//! durafetch-pull's library: everything but flag parsing. Modules follow the data's path:
//! `config` (settings) → `index` (which objects changed) → `download` (their keys, read by an
//! `export_reader` from one answer or a flow-controlled `session` that the `transport` opens: in
//! production `connect`'s WebSocket or `one_response`'s kept-alive request, with `retry`) → `sink_thread` → `object_write`, `sql_write` (SQL tables) and `sink` (the SQLite file), with
//! `filter` choosing objects and keys, `error` joining the session's and the file's errors,
//! `progress` reporting, and `pull` running it all. `restore` runs the other way: the file read
//! by `restore_source`, written into objects over an `import_session`.

pub mod config;
mod connect;
mod download;
mod error;
mod export_reader;
pub mod filter;
mod import_session;
mod index;
pub mod object_write;
mod one_response;
mod postgres_copy;
pub mod postgres_sink;
mod postgres_sql;
mod postgres_tls;
pub mod progress;
pub mod pull;
pub mod restore;
pub mod restore_source;
mod retry;
mod session;
pub mod sink;
pub mod sink_thread;
mod sql_write;
pub mod sqlite_sink;
mod tls;
pub mod transport;

#[cfg(test)]
mod fake_server;
