//! Calls between the worker, its objects and the registry: where they go, the header that proves
//! a call comes from this worker (the secret's internal tag, which an outside request cannot
//! forge), and the checks every receiving end makes, defined once.

use worker::{Env, Headers, Method, Request, RequestInit, Response};

use super::config;
use super::http::json_error;
use crate::core::auth::{Secret, INTERNAL_HEADER};

/// The origin of internal calls: never resolved, the stub the call goes to decides where.
const ORIGIN: &str = "https://durafetch.internal";
/// An object's export, forwarded by the worker.
pub(crate) const EXPORT_PATH: &str = "/export";
/// A restore into an object, forwarded by the worker.
pub(crate) const IMPORT_PATH: &str = "/import";
/// A registry shard's index, forwarded by the worker.
pub(crate) const INDEX_PATH: &str = "/index";
/// An object's report of its head to its registry shard.
pub(crate) const REPORT_PATH: &str = "/report";
/// Names the object an internal export call is for.
pub(crate) const OBJECT_HEADER: &str = "x-durafetch-object";
/// Carries the hello of an export asked for in one request.
pub(crate) const HELLO_HEADER: &str = "x-durafetch-hello";

/// Who may make a call, beyond proving it comes from this worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The worker itself (a report): the internal tag is enough.
    Worker,
    /// A client forwarded by the worker (an export or an index): its bearer token must be valid too.
    Client,
    /// A restore forwarded by the worker: its bearer token must be one of the restore secret's.
    Restorer,
}

/// An internal call to `path`, carrying the internal tag of `secret` besides `headers`.
pub(crate) fn request(secret: &Secret, path: &str, method: Method, headers: Headers, body: Option<String>) -> worker::Result<Request> {
    headers.set(INTERNAL_HEADER, &secret.internal_tag())?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers).with_body(body.map(Into::into));
    Request::new_with_init(&format!("{ORIGIN}{path}"), &init)
}

/// Whether `req` claims to be an internal call at all; anything else belongs to the user's code.
pub(crate) fn claims_internal(req: &Request) -> bool {
    req.headers().has(INTERNAL_HEADER).unwrap_or(false)
}

/// The secret, once `req` has proved it comes from this worker and, for a client's call,
/// carries a valid token (a restorer's: of the restore secret); otherwise the answer to send:
/// 500 naming the fix for a missing or short secret, 403 for a forged call or a restore the
/// worker does not allow, 401 for a bad token.
pub(crate) fn authenticate(env: &Env, req: &Request, caller: Caller) -> Result<Secret, worker::Result<Response>> {
    let secret = config::secret(env).map_err(|e| json_error(500, &e.to_string()))?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    if !secret.accepts_internal(header(INTERNAL_HEADER).as_deref()) {
        return Err(json_error(403, "forbidden"));
    }
    let accepted = match caller {
        Caller::Worker => true,
        Caller::Client => secret.accepts_header(header("authorization").as_deref()),
        Caller::Restorer => {
            let restore = config::restore_secret(env, &secret).map_err(|_| json_error(403, "forbidden"))?;
            restore.accepts_header(header("authorization").as_deref())
        }
    };
    if !accepted {
        return Err(json_error(401, "unauthorized"));
    }
    Ok(secret)
}
