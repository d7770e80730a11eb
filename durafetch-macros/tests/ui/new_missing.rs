use durafetch_sdk::durafetch;
use worker::{durable_object, DurableObject, Request, Response, Result, State};

#[durable_object]
pub struct Counter {
    state: State,
}

#[durafetch]
impl DurableObject for Counter {
    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::ok("")
    }
}

fn main() {}
