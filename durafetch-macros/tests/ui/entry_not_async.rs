use durafetch_sdk::durafetch;
use worker::{Context, Env, Request, Response, Result};

#[durafetch]
fn handler(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok(req.path())
}

fn main() {}
