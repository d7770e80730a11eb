//! The object's end of the API: the internal call the worker forwards, checked, and the session
//! it opens on a WebSocket: an export (`export`), or a restore (`import`), which only a token of
//! the restore secret may open. An export may instead be asked for in one request (`one_shot`).

use worker::{Request, Response, WebSocketPair};

use super::http::{is_websocket_upgrade, json_error, Routed};
use super::internal::{self, Caller, EXPORT_PATH, HELLO_HEADER, IMPORT_PATH, OBJECT_HEADER};
use super::{export, import, object_log, one_shot};

/// Called by `#[durafetch]` at the top of the object's `fetch`: answers internal calls from the
/// worker, passes everything else to the user's code untouched.
pub async fn route_object_request(req: Request) -> Routed<Request> {
    if !internal::claims_internal(&req) {
        return Routed::Pass(req);
    }
    Routed::Handled(serve(req).await)
}

async fn serve(req: Request) -> worker::Result<Response> {
    let id = req.headers().get(OBJECT_HEADER)?.unwrap_or_default();
    // Without the object there is no secret to check the call against: answer as for a forged
    // call, so an outside request learns nothing from the header it sent.
    let Some(log) = object_log::find(&id) else {
        return json_error(403, "forbidden");
    };
    let path = req.path();
    let caller = match path.as_str() {
        EXPORT_PATH => Caller::Client,
        IMPORT_PATH => Caller::Restorer,
        _ => return json_error(403, "forbidden"),
    };
    if let Err(refused) = internal::authenticate(&log.env, &req, caller) {
        return refused;
    }
    if !is_websocket_upgrade(&req) {
        return match req.headers().get(HELLO_HEADER)? {
            Some(hello) if caller == Caller::Client => one_shot::answer(&log, &hello).await,
            _ => json_error(426, "expected a WebSocket upgrade"),
        };
    }
    let pair = WebSocketPair::new()?;
    match caller {
        Caller::Restorer => wasm_bindgen_futures::spawn_local(import::run(log, pair.server)),
        _ => wasm_bindgen_futures::spawn_local(export::run(log, pair.server)),
    }
    Response::from_websocket(pair.client)
}
