use durafetch_sdk::durafetch;
use worker::{Request, Response, Result};

#[durafetch]
async fn handler(req: Request) -> Result<Response> {
    Response::ok(req.path())
}

fn main() {}
