//! The worker's side of the export API: recognises its requests (by host label or path prefix,
//! `core::route::ApiAddress`), authenticates them and forwards WebSocket upgrades to the
//! registry or to the object itself.

use url::Url;
use worker::{Env, Headers, Method, Request, Response, Stub};

use super::config::{self, Config};
use super::internal::{self, EXPORT_PATH, INDEX_PATH, OBJECT_HEADER};
use super::{is_websocket_upgrade, json_error, registry, Routed};
use crate::core::auth::Secret;
use crate::core::route::{is_local_host, ApiRoute, RouteError, HOST_LABEL_PREFIX, HYPHEN_LABEL_PREFIX};

/// Called by `#[durafetch]` at the top of the worker's `#[event(fetch)]` function. Requests that
/// are not the API's come back untouched, with the environment.
pub async fn route_worker_request(req: Request, env: Env) -> Routed<(Request, Env)> {
    let Ok(url) = req.url() else { return Routed::Pass((req, env)) };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let config = match Config::cached(&env) {
        Ok(config) => config,
        // Without a config no mode is known: a request for a durafetch label is told why,
        // anything else is the user's.
        Err(message) if host.starts_with(HOST_LABEL_PREFIX) || host.starts_with(HYPHEN_LABEL_PREFIX) => {
            return Routed::Handled(json_error(500, &message))
        }
        Err(_) => return Routed::Pass((req, env)),
    };
    let Some(path) = config.address.api_path(&host, url.path(), &config.worker) else {
        return Routed::Pass((req, env));
    };
    Routed::Handled(serve(&req, &env, &config, &url, &host, path).await)
}

async fn serve(req: &Request, env: &Env, config: &Config, url: &Url, host: &str, path: &str) -> worker::Result<Response> {
    let secret = match config::secret(env) {
        Ok(secret) => secret,
        Err(e) => return json_error(500, &e.to_string()),
    };
    if url.scheme() != "https" && !is_local_host(host) {
        return json_error(403, "https required");
    }
    let authorization = req.headers().get("authorization")?;
    if !secret.accepts_header(authorization.as_deref()) {
        return json_error(401, "unauthorized");
    }
    let route = match ApiRoute::parse(path) {
        Ok(route) => route,
        Err(e) => return json_error(400, &e.to_string()),
    };
    if !is_websocket_upgrade(req) {
        return json_error(426, "expected a WebSocket upgrade");
    }
    let forward = Forward { secret: &secret, authorization: authorization.as_deref().unwrap_or_default() };
    match route {
        ApiRoute::Index { shard } if shard >= config.registry_shards => json_error(400, &RouteError::BadShard.to_string()),
        ApiRoute::Index { shard } => forward.to(registry::stub(env, shard)?, INDEX_PATH, None).await,
        ApiRoute::Export { class, id } => {
            let Some(binding) = config.objects.get(&class) else {
                return json_error(404, &config.unknown_class(&class));
            };
            let Ok(namespace) = env.durable_object(binding) else {
                return json_error(500, &config::not_a_binding(&class, binding));
            };
            let stub = match namespace.id_from_string(&id) {
                Ok(object_id) => object_id.get_stub()?,
                Err(_) => {
                    return json_error(
                        400,
                        &format!(
                            "invalid object id for {class}: the id is malformed, or [vars.DURAFETCH] objects maps {class} to {binding}, \
                             the binding of another class"
                        ),
                    )
                }
            };
            forward.to(stub, EXPORT_PATH, Some(&id)).await
        }
    }
}

/// An internal call carrying the authenticator and the client's token.
struct Forward<'a> {
    secret: &'a Secret,
    authorization: &'a str,
}

impl Forward<'_> {
    async fn to(&self, stub: Stub, path: &str, object: Option<&str>) -> worker::Result<Response> {
        let headers = Headers::new();
        headers.set("upgrade", "websocket")?;
        headers.set("authorization", self.authorization)?;
        if let Some(id) = object {
            headers.set(OBJECT_HEADER, id)?;
        }
        stub.fetch_with_request(internal::request(self.secret, path, Method::Get, headers, None)?).await
    }
}
