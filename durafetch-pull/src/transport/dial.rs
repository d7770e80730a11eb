//! A connection to a server's host, as every request of the puller makes it: TCP, TLS for
//! `wss://` with the roots `tls` keeps, `*.localhost` reached on 127.0.0.1 (the system resolver
//! does not resolve it) with the name kept for the `Host` header; the URL under the server's
//! path prefix, the bearer header, and what a refusal's body says.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use durafetch_sdk::core::route::is_local_host;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::settings::file::Server;
use crate::tls::{self, CertificateFileError};
use crate::transport::error::ConnectError;

/// The URL of one of the server's endpoints: under its path prefix, if it has one.
pub(crate) fn endpoint(server: &Server, path: &str) -> url::Url {
    let mut url = server.url.clone();
    url.set_path(&format!("{}{path}", server.url.path().trim_end_matches('/')));
    url
}

/// The `authorization` header of the server's token.
pub(crate) fn bearer(server: &Server) -> Result<HeaderValue, ConnectError> {
    HeaderValue::from_str(&format!("Bearer {}", server.token.expose()))
        .map_err(|_| ConnectError::Protocol("the token holds characters a header cannot carry".into()))
}

/// A connection to `url`'s host: TCP, and TLS over it for `wss://` with the settings `tls`
/// makes. The TLS settings come first, so that an unreadable SSL_CERT_FILE is named before any
/// connection is made.
pub(crate) async fn dial(
    url: &url::Url,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, ConnectError>,
) -> Result<Stream, ConnectError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let tls = if url.scheme() == "wss" { Some(tls()?) } else { None };
    let unreachable = |e: io::Error| ConnectError::Unreachable { host: host.clone(), message: e.to_string() };
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp =
        if is_local_host(&host) { TcpStream::connect(("127.0.0.1", port)).await } else { TcpStream::connect((host.as_str(), port)).await }
            .map_err(unreachable)?;
    // Pages and credits are small messages: send each at once.
    tcp.set_nodelay(true).map_err(unreachable)?;
    match tls {
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| ConnectError::Protocol(e.to_string()))?;
            let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| tls_error(&host, e))?;
            Ok(Stream::Tls(Box::new(tls)))
        }
        None => Ok(Stream::Plain(tcp)),
    }
}

/// The TLS settings of every connection, made once: see [`tls::roots`].
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, ConnectError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, CertificateFileError>> = OnceLock::new();
    let made = CONFIG.get_or_init(|| tls::roots(tls::ssl_cert_file().as_deref()).map(tls::client_config));
    Ok(made.clone()?)
}

/// A failed TLS handshake: a refused certificate says why, in words; anything else is the
/// network's.
fn tls_error(host: &str, e: io::Error) -> ConnectError {
    match tls::refusal_reason(&e, host) {
        Some(reason) => ConnectError::Certificate { host: host.to_owned(), reason },
        None => ConnectError::Unreachable { host: host.to_owned(), message: e.to_string() },
    }
}

/// What a refusal says: the `error` of durafetch's JSON error body, or the body as text.
pub(crate) fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    message.chars().take(1000).collect()
}

/// The byte stream under a connection: TCP, or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
