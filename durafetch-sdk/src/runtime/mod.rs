//! The Workers-side layer: binds the pure [`core`](crate::core) to `worker::State`, `Storage`,
//! `Env` and WebSockets. The `#[durafetch]` attribute generates calls to the entry points
//! re-exported here and nothing else.

mod config;
mod export;
mod flow;
mod gateway;
mod json_page;
mod object;
mod registry;
mod storage;
mod value;

pub use gateway::route_worker_request;
pub use object::{install, log_rows, route_object_request};
pub use registry::DurafetchRegistry;

/// What an instrumented entry point does with a request.
pub enum Routed<T> {
    /// durafetch answered it; the user's code does not run.
    Handled(worker::Result<worker::Response>),
    /// Not durafetch's: the user's code gets it back untouched.
    Pass(T),
}

/// A JSON error body `{"error": message}` with the given status.
pub(crate) fn json_error(status: u16, message: &str) -> worker::Result<worker::Response> {
    Ok(worker::Response::from_json(&serde_json::json!({ "error": message }))?.with_status(status))
}

pub(crate) fn is_websocket_upgrade(req: &worker::Request) -> bool {
    req.headers().get("upgrade").ok().flatten().is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}
