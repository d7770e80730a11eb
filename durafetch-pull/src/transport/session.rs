//! The client end of a flow-controlled session: reads server messages and hands back credits as
//! pages are consumed, so the server never runs more than a window ahead.

use std::time::{Duration, Instant};

use durafetch_sdk::core::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::retry::Retryable;
use crate::transport::error::ConnectError;
use crate::transport::Link;

/// Pages the client lets the server send ahead.
pub const WINDOW: u32 = 8;

/// How a session tells a quiet server from a dead one. A quiet session pings the server every
/// `ping_every`; the server's runtime answers with a pong, so a live session is never silent for
/// long, even a watch with nothing to report. A session that hears nothing for `silence_limit`
/// is taken as dead (a half-open connection, a server gone without closing) and fails, to be
/// retried, rather than waiting forever.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    ping_every: Duration,
    silence_limit: Duration,
}

const HEARTBEAT: Heartbeat = Heartbeat { ping_every: Duration::from_secs(20), silence_limit: Duration::from_secs(60) };

/// What can go wrong in a session: the network's and the server's failures only.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the server closed the session early")]
    Closed,
    #[error("the server sent nothing for {} s", HEARTBEAT.silence_limit.as_secs())]
    Silent,
    #[error("the server reported: {0}")]
    Server(String),
    #[error("unexpected message from the server: {0}")]
    Protocol(String),
}

impl Retryable for SessionError {
    fn is_retryable(&self) -> bool {
        match self {
            SessionError::Connect(e) => !e.is_permanent(),
            SessionError::Closed | SessionError::Silent | SessionError::Server(_) => true,
            SessionError::Protocol(_) => false,
        }
    }
}

pub struct ClientSession {
    socket: Link,
    /// Bytes of server messages received, for progress.
    received: u64,
    heartbeat: Heartbeat,
}

impl ClientSession {
    /// The hello of an export from the cursor `since` and the SQL cursor `since_sql`.
    pub fn export_hello(since: Option<durafetch_sdk::core::cursor::Cursor>, since_sql: u64) -> ClientMessage {
        ClientMessage::Hello { version: PROTOCOL_VERSION, since, since_sql, since_rev: 0, window: WINDOW, watch: false }
    }

    /// Opens an index session from the registry revision `since_rev`, kept open if `watch`.
    pub async fn index(socket: Link, since_rev: u64, watch: bool) -> Result<Self, SessionError> {
        Self::start(socket, ClientMessage::Hello { version: PROTOCOL_VERSION, since: None, since_sql: 0, since_rev, window: WINDOW, watch })
            .await
    }

    /// Opens a session on `socket` with `hello`.
    pub async fn start(mut socket: Link, hello: ClientMessage) -> Result<Self, SessionError> {
        send(&mut socket, &hello).await?;
        Ok(Self { socket, received: 0, heartbeat: HEARTBEAT })
    }

    pub async fn next(&mut self) -> Result<ServerMessage, SessionError> {
        let mut heard = Instant::now();
        loop {
            // `next` is cancel-safe: a frame that arrives as the wait times out is read next turn.
            let frame = match tokio::time::timeout(self.heartbeat.ping_every, self.socket.next()).await {
                Ok(frame) => frame.ok_or(SessionError::Closed)?,
                Err(_) if heard.elapsed() >= self.heartbeat.silence_limit => return Err(SessionError::Silent),
                Err(_) => {
                    self.socket.send(Message::Ping(Default::default())).await.map_err(protocol_error)?;
                    continue;
                }
            };
            heard = Instant::now();
            let Some(text) = frame_text(frame)? else { continue };
            self.received += text.len() as u64;
            return server_message(&text);
        }
    }

    pub fn received_bytes(&self) -> u64 {
        self.received
    }

    /// Returns a credit for a page the caller has consumed.
    pub async fn consumed_page(&mut self) -> Result<(), SessionError> {
        send(&mut self.socket, &ClientMessage::Credit { pages: 1 }).await
    }

    pub async fn close(mut self) {
        let _ = self.socket.close().await;
    }
}

/// One message of the server: an error it reports fails the session.
pub(crate) fn server_message(text: &str) -> Result<ServerMessage, SessionError> {
    match ServerMessage::parse(text) {
        Ok(ServerMessage::Error { message }) => Err(SessionError::Server(message)),
        Ok(msg) => Ok(msg),
        Err(e) => Err(SessionError::Protocol(e.to_string())),
    }
}

async fn send(socket: &mut Link, msg: &ClientMessage) -> Result<(), SessionError> {
    let text = serde_json::to_string(msg).map_err(|e| SessionError::Protocol(e.to_string()))?;
    socket.send(Message::text(text)).await.map_err(protocol_error)
}

/// The text of a frame from the server; `None` for a control frame (ping, pong), which sessions
/// pass over. A close ends the session, and a binary frame is no message of ours.
pub(crate) fn frame_text(
    frame: Result<Message, tokio_tungstenite::tungstenite::Error>,
) -> Result<Option<tokio_tungstenite::tungstenite::Utf8Bytes>, SessionError> {
    match frame.map_err(protocol_error)? {
        Message::Text(text) => Ok(Some(text)),
        Message::Close(_) => Err(SessionError::Closed),
        Message::Binary(_) => Err(SessionError::Protocol("binary frame".into())),
        _ => Ok(None),
    }
}

pub(crate) fn protocol_error(e: tokio_tungstenite::tungstenite::Error) -> SessionError {
    SessionError::Connect(ConnectError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;
    use tokio::net::TcpListener;

    /// A session with a WebSocket server on loopback that sends nothing after the handshake. It
    /// answers pings if `answers_pings` (tungstenite does so while it reads), else reads nothing.
    async fn session_with_mute_server(answers_pings: bool) -> ClientSession {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            if answers_pings {
                while let Some(Ok(_)) = ws.next().await {}
            } else {
                std::future::pending::<()>().await;
            }
        });
        let server = crate::settings::file::test_server(&format!("ws://durafetch_app.localhost:{}", addr.port()));
        let socket = crate::transport::websocket::NetworkTransport::default().open(&server, "/index").await.unwrap();
        let heartbeat = Heartbeat { ping_every: Duration::from_millis(50), silence_limit: Duration::from_millis(300) };
        ClientSession { socket, received: 0, heartbeat }
    }

    #[tokio::test]
    async fn a_server_gone_silent_fails_the_session_and_a_quiet_live_one_does_not() {
        let mut dead = session_with_mute_server(false).await;
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(5), dead.next()).await;
        assert!(matches!(outcome, Ok(Err(SessionError::Silent))), "still waiting after {:?}", started.elapsed());
        assert!(SessionError::Silent.is_retryable());

        let mut quiet = session_with_mute_server(true).await;
        let wait = tokio::time::timeout(Duration::from_secs(2), quiet.next()).await;
        assert!(wait.is_err(), "a live server that answers pings kept the session open: {:?}", wait.map(|r| r.map(|_| ())));
    }
}
