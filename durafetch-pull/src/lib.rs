//! durafetch-pull's library: everything but flag parsing. A folder per concern, in the order
//! data flows: `settings` (the config file, flags and filters turned into what to do) →
//! `pull` (which objects changed, then each one's download) over `transport` (the WebSocket or
//! one request, and the flow-controlled session) → `sink` (the database: its interface at the
//! bottom, SQLite and PostgreSQL above it, on a thread of its own). `restore` runs the other
//! way: a file read by `restore::source`, written into objects over an import session. `retry`
//! and `tls` serve them all.

pub mod pull;
pub mod restore;
mod retry;
pub mod settings;
pub mod sink;
mod tls;
pub mod transport;

#[cfg(test)]
mod fake_server;
