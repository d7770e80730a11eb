//! An export answered in one HTTP response: the client POSTs its hello, and the object answers
//! with the export's messages, one JSON text per line, when they fit in
//! [`ONE_RESPONSE_MAX_BYTES`]; a larger export is answered 426 (Upgrade Required) and the
//! client opens a session for it. A small object's export then costs one request on a kept-alive
//! connection, not a WebSocket opened, proxied and closed.

use js_sys::JsString;
use worker::Response;

use super::export::export;
use super::flow::{Hello, Outbox, SessionError};
use super::http::json_error;
use super::object_log::ObjectLog;
use crate::core::protocol::{ClientMessage, ServerMessage, ONE_RESPONSE_MAX_BYTES};

/// The media type of the answer: JSON texts, one per line.
const LINES_OF_JSON: &str = "application/x-ndjson";

/// Answers an export's hello, POSTed to the worker and forwarded in a header: 200 with the whole export, 426 when it needs a session, 400
/// for a body that is not a hello, 500 when the object cannot read its storage.
pub(crate) async fn answer(log: &ObjectLog, hello: &str) -> worker::Result<Response> {
    let hello = match ClientMessage::parse(hello).and_then(Hello::from_first) {
        Ok(hello) => hello,
        Err(e) => return json_error(400, &e.to_string()),
    };
    let mut out = Lines::default();
    match export(log, &hello, &mut out).await {
        Ok(()) => {
            let response = Response::ok(out.text)?;
            response.headers().set("content-type", LINES_OF_JSON)?;
            Ok(response)
        }
        // The runtime drops the `Upgrade` header 426 would name a protocol in (a hop-by-hop
        // header): the status alone says it.
        Err(SessionError::BeyondOneResponse) => {
            json_error(426, &format!("the export is larger than one response ({ONE_RESPONSE_MAX_BYTES} bytes); open a WebSocket session"))
        }
        Err(SessionError::Protocol(e)) => json_error(400, &e.to_string()),
        Err(SessionError::BadRequest(e)) => json_error(400, &e),
        Err(SessionError::Server(e)) => {
            worker::console_error!("durafetch: export failed: {e}");
            json_error(500, &e)
        }
        // There is no session to close: nothing reads from the client.
        Err(SessionError::Closed) => json_error(500, "the export ended early"),
    }
}

/// The export's messages as lines of one text, refused past [`ONE_RESPONSE_MAX_BYTES`].
#[derive(Default)]
struct Lines {
    text: String,
}

impl Lines {
    fn push(&mut self, line: &str) -> Result<(), SessionError> {
        if self.text.len() + line.len() + 1 > ONE_RESPONSE_MAX_BYTES {
            return Err(SessionError::BeyondOneResponse);
        }
        self.text.push_str(line);
        self.text.push('\n');
        Ok(())
    }
}

impl Outbox for Lines {
    fn send(&mut self, msg: &ServerMessage) -> Result<(), SessionError> {
        let text = serde_json::to_string(msg).map_err(|e| SessionError::Server(e.to_string()))?;
        self.push(&text)
    }

    async fn send_page(&mut self, page: &str) -> Result<(), SessionError> {
        self.push(page)
    }

    async fn send_page_text(&mut self, page: &JsString) -> Result<(), SessionError> {
        // Sized before it is copied into wasm memory: a page past the limit is never copied.
        if self.text.len() + page.length() as usize + 1 > ONE_RESPONSE_MAX_BYTES {
            return Err(SessionError::BeyondOneResponse);
        }
        self.push(&String::from(page))
    }
}
