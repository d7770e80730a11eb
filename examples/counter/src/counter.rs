//! The classes: `CounterKv` on the key-value storage backend and `CounterSql` on the SQLite
//! backend, both instrumented, and `PlainSql`, the same code without `#[durafetch]`. They keep
//! their request handling in `writes`, a module outside the annotated impls.

use durafetch_sdk::durafetch;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage};

/// One instrumented class; written once and stamped out for both storage backends, which
/// differ only in wrangler.toml's migration.
macro_rules! instrumented_counter {
    ($class:ident) => {
        #[durable_object]
        pub struct $class {
            state: State,
        }

        #[durafetch]
        impl DurableObject for $class {
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
    };
}

instrumented_counter!(CounterKv);
instrumented_counter!(CounterSql);

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
