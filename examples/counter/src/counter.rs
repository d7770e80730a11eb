//! The two classes: one on the key-value storage backend, one on the SQLite backend. Both keep
//! their request handling in `writes`, a module outside the annotated impls.

use durafetch_sdk::durafetch;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage};

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

    async fn alarm(&self) -> Result<Response> {
        crate::writes::on_alarm(&self.state).await
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        crate::writes::on_socket_message(&self.state, &ws, message).await
    }

    async fn websocket_close(&self, _ws: WebSocket, _code: usize, _reason: String, _clean: bool) -> Result<()> {
        crate::writes::on_socket_close(&self.state).await
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

    async fn alarm(&self) -> Result<Response> {
        crate::writes::on_alarm(&self.state).await
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        crate::writes::on_socket_message(&self.state, &ws, message).await
    }

    async fn websocket_close(&self, _ws: WebSocket, _code: usize, _reason: String, _clean: bool) -> Result<()> {
        crate::writes::on_socket_close(&self.state).await
    }
}

/// `CounterSql` without `#[durafetch]`: the benchmark's baseline.
#[durable_object]
pub struct PlainSql {
    state: State,
}

impl DurableObject for PlainSql {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        crate::writes::handle(&self.state, req).await
    }
}
