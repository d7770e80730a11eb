//! What the API's ends share of HTTP: a request either handled by durafetch or passed back to
//! the user's code, a JSON error body with its status, and whether a request asks for a
//! WebSocket.

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
