//! durafetch-pull's library: everything but flag parsing. Modules follow the data's path:
//! `config` (settings) → `index` (which objects changed) → `download` (their keys, over a
//! flow-controlled `session` on a `connect`ed socket, with `retry`) → `sink` (the SQLite file),
//! with `filter` choosing objects and keys, `progress` reporting, and `pull` running it all.

pub mod config;
mod connect;
mod download;
pub mod filter;
mod index;
pub mod progress;
pub mod pull;
mod retry;
mod session;
pub mod sink;
