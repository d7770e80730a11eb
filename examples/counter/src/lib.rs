//! An ordinary worker with two Durable Object classes, instrumented with two `#[durafetch]`
//! attributes, and an uninstrumented twin for benchmarks. Requests
//! `/<kv|sql|plain>/<object name>/<operation>?key=..` reach the named object;
//! `/<kv|sql>/@unique/..` a new object without a name (its id comes back in `x-object-id`), and
//! `/<kv|sql>/@<object id>/..` that object.

mod counter;
mod writes;

use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
#[durafetch_sdk::durafetch]
async fn main(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let binding = match segments.next() {
        Some("kv") => "COUNTER_KV",
        Some("sql") => "COUNTER_SQL",
        Some("plain") => "PLAIN_SQL",
        _ => return Response::error("expected /<kv|sql>/<object name>/<operation>", 404),
    };
    let Some(name) = segments.next().filter(|n| !n.is_empty()) else {
        return Response::error("missing object name", 404);
    };
    let namespace = env.durable_object(binding)?;
    if name == "@unique" {
        let id = namespace.unique_id()?;
        let response = id.get_stub()?.fetch_with_request(req).await?;
        let headers = response.headers().clone();
        headers.set("x-object-id", &id.to_string())?;
        return Ok(response.with_headers(headers));
    }
    let id = match name.strip_prefix('@') {
        Some(id) => namespace.id_from_string(id)?,
        None => namespace.id_from_name(name)?,
    };
    id.get_stub()?.fetch_with_request(req).await
}
