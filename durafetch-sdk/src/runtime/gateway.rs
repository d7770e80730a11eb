//! The worker's side of the API: recognises its requests (by host label or path prefix,
//! `core::route::ApiAddress`), authenticates them (a restore with the restore secret only) and
//! forwards WebSocket upgrades to the registry or to the object itself, and an export's hello
//! POSTed to be answered in one response.

use url::Url;
use worker::{Env, Headers, Method, ObjectNamespace, Request, Response, Stub};

use super::config::{self, Config};
use super::http::{is_websocket_upgrade, json_error, Routed};
use super::internal::{self, EXPORT_PATH, HELLO_HEADER, IMPORT_PATH, INDEX_PATH, OBJECT_HEADER};
use super::registry;
use crate::core::auth::{Secret, SecretError};
use crate::core::protocol::{ProtocolError, MAX_CLIENT_MESSAGE_BYTES};
use crate::core::route::{is_local_host, may_be_api, ApiRoute, ImportTarget, RouteError};

/// Called by `#[durafetch]` at the top of the worker's `#[event(fetch)]` function. Requests that
/// are not the API's come back untouched, with the environment.
pub async fn route_worker_request(mut req: Request, env: Env) -> Routed<(Request, Env)> {
    let Ok(url) = req.url() else { return Routed::Pass((req, env)) };
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let config = match Config::cached(&env) {
        Ok(config) => config,
        // Without a config no mode is known: a request for the API (a durafetch label, or a
        // puller's under the prefix the config names or one like the docs') is told why;
        // anything else is the user's.
        Err(error) if may_be_api(&host, url.path(), error.path_prefix.as_deref(), has_bearer(&req)) => {
            return Routed::Handled(json_error(500, &error.message))
        }
        Err(_) => return Routed::Pass((req, env)),
    };
    let Some(path) = config.address.api_path(&host, url.path(), &config.worker) else {
        return Routed::Pass((req, env));
    };
    Routed::Handled(serve(&mut req, &env, &config, &url, &host, path).await)
}

/// Whether the request carries a bearer token, as every puller's does.
fn has_bearer(req: &Request) -> bool {
    let header = req.headers().get("authorization").ok().flatten().unwrap_or_default();
    header.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
}

async fn serve(req: &mut Request, env: &Env, config: &Config, url: &Url, host: &str, path: &str) -> worker::Result<Response> {
    let secret = match config::secret(env) {
        Ok(secret) => secret,
        Err(e) => return json_error(500, &e.to_string()),
    };
    if url.scheme() != "https" && !is_local_host(host) {
        return json_error(403, "https required");
    }
    let authorization = req.headers().get("authorization")?;
    let route = ApiRoute::parse(path);
    // A restore writes: only a token of the restore secret may, never one that can only read.
    let accepted = match &route {
        Ok(ApiRoute::Import { .. }) => match config::restore_secret(env, &secret) {
            Ok(restore) => restore.accepts_header(authorization.as_deref()),
            Err(SecretError::Missing(name)) => {
                return json_error(403, &format!("durafetch: restore is not enabled on this worker; to allow it, set the secret {name} to a random token of at least 40 characters, another than DURAFETCH_AUTH's"))
            }
            Err(e) => return json_error(500, &e.to_string()),
        },
        _ => secret.accepts_header(authorization.as_deref()),
    };
    if !accepted {
        return json_error(401, "unauthorized");
    }
    let route = match route {
        Ok(route) => route,
        Err(e) => return json_error(400, &e.to_string()),
    };
    // An export's hello may come as a POST, to be answered in one response.
    let hello = match &route {
        ApiRoute::Export { .. } if !is_websocket_upgrade(req) && req.method() == Method::Post => {
            let body = req.text().await?;
            if body.len() > MAX_CLIENT_MESSAGE_BYTES {
                return json_error(413, &ProtocolError::TooLarge.to_string());
            }
            Some(body)
        }
        _ if !is_websocket_upgrade(req) => {
            return json_error(426, "expected a WebSocket upgrade, or for an export a POST of its hello");
        }
        _ => None,
    };
    let forward = Forward { secret: &secret, authorization: authorization.as_deref().unwrap_or_default(), hello };
    match route {
        ApiRoute::Index { shard } if shard >= config.registry_shards => json_error(400, &RouteError::BadShard.to_string()),
        ApiRoute::Index { shard } => forward.to(registry::stub(env, shard)?, INDEX_PATH, None).await,
        ApiRoute::Export { class, id } => {
            let namespace = match namespace(env, config, &class) {
                Ok(namespace) => namespace,
                Err(refused) => return refused,
            };
            match namespace.id_from_string(&id) {
                Ok(object_id) => forward.to(object_id.get_stub()?, EXPORT_PATH, Some(&id)).await,
                Err(_) => not_of_class(config, &class),
            }
        }
        ApiRoute::Import { class, target } => {
            let namespace = match namespace(env, config, &class) {
                Ok(namespace) => namespace,
                Err(refused) => return refused,
            };
            let object_id = match target {
                ImportTarget::Name(name) => namespace.id_from_name(&name)?,
                ImportTarget::Id { worker, .. } if worker != config.worker => {
                    return json_error(
                        409,
                        &format!(
                            "the object has no name, and an object without a name can only be restored into the worker it came from \
                             ({worker}), not into {}",
                            config.worker
                        ),
                    )
                }
                ImportTarget::Id { id, .. } => match namespace.id_from_string(&id) {
                    Ok(object_id) => object_id,
                    Err(_) => return not_of_class(config, &class),
                },
            };
            let id = object_id.to_string();
            forward.to(object_id.get_stub()?, IMPORT_PATH, Some(&id)).await
        }
    }
}

/// The namespace of `class`'s objects, or the answer naming what is wrong: 404 for a class not
/// in `objects`, 500 for one mapped to a binding the worker lacks.
fn namespace(env: &Env, config: &Config, class: &str) -> Result<ObjectNamespace, worker::Result<Response>> {
    let Some(binding) = config.objects.get(class) else {
        return Err(json_error(404, &config.unknown_class(class)));
    };
    env.durable_object(binding).map_err(|_| json_error(500, &config::not_a_binding(class, binding)))
}

fn not_of_class(config: &Config, class: &str) -> worker::Result<Response> {
    let binding = config.objects.get(class).map(String::as_str).unwrap_or_default();
    json_error(
        400,
        &format!(
            "invalid object id for {class}: the id is malformed, or [vars.DURAFETCH] objects maps {class} to {binding}, the binding of another class"
        ),
    )
}

/// An internal call carrying the authenticator and the client's token: a WebSocket upgrade, or
/// the POST of an export's `hello`.
struct Forward<'a> {
    secret: &'a Secret,
    authorization: &'a str,
    hello: Option<String>,
}

impl Forward<'_> {
    async fn to(&self, stub: Stub, path: &str, object: Option<&str>) -> worker::Result<Response> {
        let headers = Headers::new();
        headers.set("authorization", self.authorization)?;
        if let Some(id) = object {
            headers.set(OBJECT_HEADER, id)?;
        }
        let request = match &self.hello {
            // In a header: a request without a body costs the runtime no stream between the two.
            Some(hello) => {
                headers.set(HELLO_HEADER, hello)?;
                internal::request(self.secret, path, Method::Get, headers, None)?
            }
            None => {
                headers.set("upgrade", "websocket")?;
                internal::request(self.secret, path, Method::Get, headers, None)?
            }
        };
        stub.fetch_with_request(request).await
    }
}
