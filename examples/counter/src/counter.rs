//! The two classes: one on the key-value storage backend, one on the SQLite backend. Both keep
//! their request handling in `writes`, a module outside the annotated impls.

use durafetch_sdk::durafetch;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct CounterKv {
    state: State,
}

#[durafetch]
impl DurableObject for CounterKv {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        crate::writes::handle(&self.state, req).await
    }
}

#[durable_object]
pub struct CounterSql {
    state: State,
}

#[durafetch]
impl DurableObject for CounterSql {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        crate::writes::handle(&self.state, req).await
    }
}
