//! The client end of a flow-controlled session: reads server messages and hands back credits as
//! pages are consumed, so the server never runs more than a window ahead.

use durafetch_sdk::core::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{ConnectError, Socket};

/// Pages the client lets the server send ahead.
pub const WINDOW: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the server closed the session early")]
    Closed,
    #[error("the server reported: {0}")]
    Server(String),
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
    #[error("database: {0}")]
    Sink(String),
}

impl SessionError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SessionError::Connect(e) => !e.is_permanent(),
            SessionError::Closed | SessionError::Server(_) => true,
            SessionError::Protocol(_) | SessionError::Sink(_) => false,
        }
    }
}

pub struct ClientSession {
    socket: Socket,
}

impl ClientSession {
    pub async fn start(mut socket: Socket, since: Option<durafetch_sdk::core::cursor::Cursor>, since_rev: u64) -> Result<Self, SessionError> {
        let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, since, since_rev, window: WINDOW };
        send(&mut socket, &hello).await?;
        Ok(Self { socket })
    }

    pub async fn next(&mut self) -> Result<ServerMessage, SessionError> {
        loop {
            let frame = self.socket.next().await.ok_or(SessionError::Closed)?;
            match frame.map_err(|e| SessionError::Connect(ConnectError::Protocol(e.to_string())))? {
                Message::Text(text) => {
                    return match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(ServerMessage::Error { message }) => Err(SessionError::Server(message)),
                        Ok(msg) => Ok(msg),
                        Err(e) => Err(SessionError::Protocol(e.to_string())),
                    };
                }
                Message::Close(_) => return Err(SessionError::Closed),
                Message::Binary(_) => return Err(SessionError::Protocol("binary frame".into())),
                _ => continue,
            }
        }
    }

    /// Returns a credit for a page the caller has consumed.
    pub async fn consumed_page(&mut self) -> Result<(), SessionError> {
        send(&mut self.socket, &ClientMessage::Credit { pages: 1 }).await
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

async fn send(socket: &mut Socket, msg: &ClientMessage) -> Result<(), SessionError> {
    let text = serde_json::to_string(msg).map_err(|e| SessionError::Protocol(e.to_string()))?;
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| SessionError::Connect(ConnectError::Protocol(e.to_string())))
}
