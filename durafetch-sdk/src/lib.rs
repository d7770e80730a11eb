//! durafetch-sdk records every storage write of a Cloudflare Durable Object written with
//! [`worker`](https://docs.rs/worker), keeps a registry of objects and serves an authenticated
//! WebSocket export, so that `durafetch-pull` can copy only what changed into a local SQLite file.
//!
//! The crate has two layers. [`core`] is pure Rust (change-log keys, cursors, wire protocol, auth,
//! host routing) and is shared with the puller. `runtime` (feature `runtime`, on by default) binds
//! that core to the Workers runtime and is what the `#[durafetch]` attribute calls into.

pub mod core;

#[cfg(feature = "runtime")]
pub mod runtime;

#[cfg(feature = "runtime")]
pub use durafetch_macros::durafetch;
