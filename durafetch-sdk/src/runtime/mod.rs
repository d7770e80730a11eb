//! The Workers-side layer: binds the pure [`core`](crate::core) to `worker::State`, `Storage`,
//! `Env` and WebSockets. Internal: the `#[durafetch]` attribute reaches it only through
//! [`__private`](crate::__private), and users name only [`DurafetchRegistry`].
//!
//! A write goes through `write_hooks` (with `js_methods` under them and `list_filter` for
//! reads), its keys gather in `pending` and `rows` writes them as log rows at positions
//! `object_log` hands out; `maintenance` keeps the log small (its compactors within
//! `compactor_memory`) and `report` tells the `registry`. On a SQLite-backed object, `sql_hooks`
//! keeps the triggers that record SQL row changes. An export arrives at `gateway` (the worker),
//! crosses to the object or registry as an `internal` call, reaches the object's `object_api`
//! and is served by `export` (with `sql_export` for SQL tables) over a `flow`-controlled
//! session or, for a small object, in one response (`one_shot`), values written by `value` and
//! `json_page`. A restore takes the same way to `import`, which stages what it receives
//! (`import_stage`) and applies it at its end in one transaction through the hooks
//! (`import_apply`), values made by `value_decode`.

mod compactor_memory;
mod config;
mod debug_views;
mod export;
mod flow;
mod gateway;
mod http;
mod import;
mod import_apply;
mod import_stage;
mod internal;
mod js_methods;
mod json_page;
mod list_filter;
mod maintenance;
mod object_api;
mod object_log;
mod one_shot;
mod pending;
mod registry;
mod report;
mod rows;
mod sql_export;
mod sql_hooks;
mod sql_page;
mod sql_storage;
mod storage;
mod value;
mod value_decode;
mod write_hooks;

pub use debug_views::{log_rows, sql_close_generation, sql_log_rows};
pub use gateway::route_worker_request;
pub use http::Routed;
pub use object_api::route_object_request;
pub use object_log::install;
pub use registry::DurafetchRegistry;

/// What this isolate holds for instrumented objects: a debug view for tests.
#[derive(serde::Serialize)]
pub struct HeldState {
    /// Objects whose change-log state the isolate holds.
    pub objects: usize,
    /// Keys their compactors remember together, within `compactor_keys_bound`.
    pub compactor_keys: usize,
    pub compactor_keys_bound: usize,
}

pub fn held_state() -> HeldState {
    HeldState {
        objects: object_log::objects_held(),
        compactor_keys: compactor_memory::keys_held(),
        compactor_keys_bound: compactor_memory::ISOLATE_COMPACTOR_KEYS,
    }
}
