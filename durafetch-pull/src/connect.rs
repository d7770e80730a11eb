//! Opens an authenticated WebSocket to a server. `*.localhost` does not resolve through the
//! system resolver, so such hosts are reached on 127.0.0.1 with the name in the `Host` header.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::Server;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connection and its WebSocket upgrade must be done within this long; a host that drops
/// packets would otherwise hold a download for minutes.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the server refused the token (401); check DURAFETCH_AUTH against the worker's secret")]
    Unauthorized,
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("cannot reach {host}: {message}")]
    Unreachable { host: String, message: String },
    #[error("websocket: {0}")]
    Protocol(String),
    #[error("{host} did not complete the connection within {} s", HANDSHAKE_LIMIT.as_secs())]
    TimedOut { host: String },
}

impl ConnectError {
    /// Errors that another attempt cannot fix.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConnectError::Unauthorized) || matches!(self, ConnectError::Status { status, .. } if (400..500).contains(status))
    }
}

pub async fn open(server: &Server, path: &str) -> Result<Socket, ConnectError> {
    tokio::time::timeout(HANDSHAKE_LIMIT, handshake(server, path))
        .await
        .unwrap_or_else(|_| Err(ConnectError::TimedOut { host: server.url.host_str().unwrap_or_default().to_owned() }))
}

async fn handshake(server: &Server, path: &str) -> Result<Socket, ConnectError> {
    let mut url = server.url.clone();
    url.set_path(path);
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut request = url.as_str().into_client_request().map_err(|e| ConnectError::Protocol(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", server.token.expose()))
        .map_err(|_| ConnectError::Protocol("the token holds characters a header cannot carry".into()))?;
    request.headers_mut().insert("authorization", bearer);

    let result = if host == "localhost" || host.ends_with(".localhost") {
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| ConnectError::Unreachable { host: host.clone(), message: e.to_string() })?;
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await
    } else {
        tokio_tungstenite::connect_async(request).await
    };
    match result {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            if status == 401 {
                return Err(ConnectError::Unauthorized);
            }
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).chars().take(300).collect()).unwrap_or_default();
            Err(ConnectError::Status { status, body })
        }
        Err(WsError::Io(e)) => Err(ConnectError::Unreachable { host, message: e.to_string() }),
        Err(e) => Err(ConnectError::Protocol(e.to_string())),
    }
}
