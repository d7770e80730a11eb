//! The pure core: no `worker`, no `wasm_bindgen`, tested natively with `cargo test`.

pub mod auth;
pub mod compaction;
pub mod cursor;
pub mod keys;
pub mod page_writer;
pub mod pending_row;
pub mod protocol;
pub mod restore_protocol;
pub mod route;
pub mod shard;
pub mod sql_capture;
pub mod sql_restore;
pub mod storage_api;
