//! The seam under the sessions: how a session reaches a server. In production
//! `websocket`'s `NetworkTransport` opens an authenticated WebSocket, or asks for a small
//! export in one HTTP request (`one_response`); in tests a scripted fake server answers over
//! in-memory channels, so the download, index and pull logic is tested without a network or a
//! worker.

pub(crate) mod dial;
pub mod error;
pub(crate) mod one_response;
pub(crate) mod session;
pub mod websocket;

use std::future::Future;
use std::pin::Pin;

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::settings::file::Server;
use crate::transport::error::ConnectError;

/// A connection's frames: WebSocket messages in both directions.
pub trait LinkIo: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Send {}

impl<T: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Send> LinkIo for T {}

/// An open connection to one of a server's endpoints.
pub type Link = Pin<Box<dyn LinkIo>>;

/// A future a transport answers with.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, ConnectError>> + Send + 'a>>;

/// Opens connections to a server's endpoints (`/index`, `/index/<shard>`,
/// `/export/<class>/<id>`).
pub trait Transport: Send + Sync {
    fn open<'a>(&'a self, server: &'a Server, path: &'a str) -> Answer<'a, Link>;

    /// Asks for an export in one request: `hello` (the session's first message) sent to `path`,
    /// answered with the export's messages, one per line. `None` when the server answers that
    /// the export needs a session: it is larger than one response, or the server predates
    /// answers in one response.
    fn export_whole<'a>(&'a self, server: &'a Server, path: &'a str, hello: &'a str) -> Answer<'a, Option<String>>;
}
