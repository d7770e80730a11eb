use durafetch_sdk::durafetch;
use worker::{DurableObject, Env, Request, Response, Result, State};

pub struct Counter<T> {
    state: State,
    marker: std::marker::PhantomData<T>,
}

#[durafetch]
impl<T> DurableObject for Counter<T> {
    fn new(state: State, _env: Env) -> Self {
        Self { state, marker: std::marker::PhantomData }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::ok("")
    }
}

fn main() {}
