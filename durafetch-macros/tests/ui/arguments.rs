use durafetch_sdk::durafetch;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct Counter {
    state: State,
}

#[durafetch(worker = "my-app")]
impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::ok("")
    }
}

fn main() {}
