use durafetch_sdk::durafetch;
use worker::{durable_object, event, Context, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct Counter {
    _state: State,
}

#[durafetch]
impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        Self { _state: state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        Response::ok(req.text().await?)
    }
}

// Either order of the two attributes works.
#[durafetch]
#[event(fetch)]
async fn main(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    Response::ok(req.path())
}

fn main() {}
