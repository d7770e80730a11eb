//! durafetch-sdk records every storage write of a Cloudflare Durable Object written with
//! [`worker`](https://docs.rs/worker), keeps a registry of objects and serves an authenticated
//! WebSocket export, so that `durafetch-pull` can copy only what changed into a local SQLite file.
//!
//! The crate has two layers. [`core`] is pure Rust (change-log keys, cursors, wire protocol, auth,
//! host routing) and is shared with the puller. The runtime layer (feature `runtime`, on by
//! default) binds that core to the Workers runtime; it is internal, and the `#[durafetch]`
//! attribute reaches it through [`__private`] only.

pub mod core;

/// The crate README's example, compiled (not run: it needs a Worker) as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

#[cfg(feature = "runtime")]
mod runtime;

#[cfg(feature = "runtime")]
pub use durafetch_macros::durafetch;

/// The registry object that lists every instrumented object; bind it in wrangler.toml as
/// `DURAFETCH_REGISTRY` with `class_name = "DurafetchRegistry"`.
#[cfg(feature = "runtime")]
pub use runtime::DurafetchRegistry;

/// What `#[durafetch]`'s expansion calls, and debug views for durafetch's own tests and
/// benchmarks. Not public API: it changes without notice.
#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{
        held_state, install, log_rows, route_object_request, route_worker_request, sql_close_generation, sql_log_rows, HeldState, Routed,
    };
}
