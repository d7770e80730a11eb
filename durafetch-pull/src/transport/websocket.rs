//! The production transport: an authenticated WebSocket to a server, or a small export asked for
//! in one request (`one_response`); both dial as `dial` does.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Response;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use crate::settings::file::Server;
use crate::transport::dial::{bearer, dial, endpoint, error_message, tls_config, Stream};
use crate::transport::error::{ConnectError, HANDSHAKE_LIMIT};
use crate::transport::one_response::KeptConnections;
use crate::transport::{Answer, Link, Transport};

type Socket = WebSocketStream<Connection>;

/// Opens each session as an authenticated WebSocket, TLS for `wss://`; asks for whole exports
/// on connections it keeps open between requests.
#[derive(Default)]
pub struct NetworkTransport {
    kept: KeptConnections,
}

impl Transport for NetworkTransport {
    fn open<'a>(&'a self, server: &'a Server, path: &'a str) -> Answer<'a, Link> {
        Box::pin(async move { open(server, path).await.map(|socket| Box::pin(socket) as Link) })
    }

    fn export_whole<'a>(&'a self, server: &'a Server, path: &'a str, hello: &'a str) -> Answer<'a, Option<String>> {
        Box::pin(self.kept.export_whole(server, path, hello))
    }
}
/// How much of a refusal's body is read, and for how long: enough for the error message a
/// server puts there, never a download.
const REFUSAL_BODY_LIMIT: usize = 16 * 1024;
const REFUSAL_BODY_WAIT: Duration = Duration::from_secs(5);
async fn open(server: &Server, path: &str) -> Result<Socket, ConnectError> {
    open_trusting(server, path, tls_config).await
}

/// [`open`], with the TLS settings `tls` makes (the tests' own roots).
async fn open_trusting(
    server: &Server,
    path: &str,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, ConnectError>,
) -> Result<Socket, ConnectError> {
    tokio::time::timeout(HANDSHAKE_LIMIT, handshake(server, path, tls))
        .await
        .unwrap_or_else(|_| Err(ConnectError::TimedOut { host: server.url.host_str().unwrap_or_default().to_owned() }))
}

async fn handshake(
    server: &Server,
    path: &str,
    tls: impl FnOnce() -> Result<Arc<rustls::ClientConfig>, ConnectError>,
) -> Result<Socket, ConnectError> {
    let url = endpoint(server, path);
    let host = url.host_str().unwrap_or_default().to_owned();
    let mut request = url.as_str().into_client_request().map_err(|e| ConnectError::Protocol(e.to_string()))?;
    request.headers_mut().insert("authorization", bearer(server)?);
    let connection = Connection(Arc::new(Mutex::new(dial(&url, tls).await?)));
    match tokio_tungstenite::client_async(request, connection.clone()).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) if response.status() == 401 => Err(ConnectError::Unauthorized),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = refusal_body(&response, connection).await;
            Err(ConnectError::Status { status, body: error_message(&body) })
        }
        Err(WsError::Io(e)) => Err(ConnectError::Unreachable { host, message: e.to_string() }),
        Err(e) => Err(ConnectError::Protocol(e.to_string())),
    }
}
/// The whole body of a refused upgrade, up to [`REFUSAL_BODY_LIMIT`]: the handshake hands back
/// only the bytes that came with the headers, and the rest may still be on its way.
async fn refusal_body(response: &Response<Option<Vec<u8>>>, mut connection: Connection) -> Vec<u8> {
    let mut body = response.body().clone().unwrap_or_default();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_ascii_lowercase);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
    let complete = |body: &[u8]| match (chunked, length) {
        (true, _) => body.windows(5).any(|w| w == b"0\r\n\r\n"),
        (false, Some(length)) => body.len() >= length,
        // Neither: the body ends when the server closes the connection.
        (false, None) => false,
    };
    let read_rest = async {
        let mut buf = [0u8; 4096];
        while !complete(&body) && body.len() < REFUSAL_BODY_LIMIT {
            match connection.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, read_rest).await;
    if chunked {
        body = dechunk(&body);
    }
    body.truncate(length.unwrap_or(usize::MAX).min(REFUSAL_BODY_LIMIT));
    body
}

/// The data of a chunked body (RFC 9112 §7.1), as far as it is well formed.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..line_end]).ok().and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&s| s > 0) else { break };
        let start = line_end + 2;
        let end = (start + size).min(raw.len());
        data.extend_from_slice(&raw[start..end]);
        raw = raw.get(end + 2..).unwrap_or_default();
    }
    data
}
/// A `Stream` that the handshake's caller keeps a handle to, so that when the server refuses
/// the upgrade the rest of its answer can still be read. Only the task that polls the socket
/// ever takes the lock, so it is never contended.
#[derive(Clone)]
pub struct Connection(Arc<Mutex<Stream>>);

impl Connection {
    fn stream(&self) -> MutexGuard<'_, Stream> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::pki_types::CertificateDer;

    /// A server that refuses every upgrade with `status`, sending its headers first and the body
    /// a moment later, in two parts: the way a body can trail the headers over a real network.
    async fn refusing_server(status: &'static str, headers: &'static str, body_parts: [&'static str; 2]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = tcp.read(&mut request).await;
                let _ = tcp.write_all(format!("HTTP/1.1 {status}\r\n{headers}\r\n").as_bytes()).await;
                for part in body_parts {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let _ = tcp.write_all(part.as_bytes()).await;
                }
            }
        });
        port
    }

    fn local_server(port: u16) -> Server {
        crate::settings::file::test_server(&format!("ws://durafetch_app.localhost:{port}"))
    }

    #[tokio::test]
    async fn a_refusal_keeps_the_whole_body_that_trails_its_headers() {
        let body = r#"{"error": "durafetch: DURAFETCH_AUTH is shorter than 40 characters"}"#;
        let (first, rest) = body.split_at(10);
        let headers: &'static str =
            Box::leak(format!("content-length: {}\r\ncontent-type: application/json\r\n", body.len()).into_boxed_str());
        let port = refusing_server("500 Internal Server Error", headers, [Box::leak(first.into()), Box::leak(rest.into())]).await;
        for _ in 0..20 {
            let error = open(&local_server(port), "/index").await.err().unwrap();
            assert_eq!(error.to_string(), "the server answered 500: durafetch: DURAFETCH_AUTH is shorter than 40 characters");
        }
    }

    #[tokio::test]
    async fn a_chunked_refusal_is_read_whole() {
        let port = refusing_server("404 Not Found", "transfer-encoding: chunked\r\n", ["5\r\nhello\r\n", "6\r\n world\r\n0\r\n\r\n"]).await;
        let error = open(&local_server(port), "/export/C/00").await.err().unwrap();
        assert_eq!(error.to_string(), "the server answered 404: hello world");
        assert!(error.is_permanent());
    }

    /// wss:// speaks TLS (to local hosts too): a server that answers in plain HTTP gives a clear
    /// error, not a hang and not a panic for want of a crypto provider.
    #[tokio::test]
    async fn wss_speaks_tls_and_names_a_failed_handshake() {
        let port = refusing_server("400 Bad Request", "content-length: 0\r\n", ["", ""]).await;
        let server = crate::settings::file::test_server(&format!("wss://durafetch_app.localhost:{port}"));
        let error = open(&server, "/index").await.err().unwrap();
        assert!(matches!(error, ConnectError::Unreachable { .. }), "{error}");
        assert!(error.to_string().starts_with("cannot reach durafetch_app.localhost: "), "{error}");
    }

    /// A CA of the test's own, and a certificate it signs for `names`.
    struct TestPki {
        ca: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    }

    fn pki(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        TestPki { ca: ca.der().clone(), cert: cert.der().clone(), key }
    }

    /// A wss:// server on loopback presenting `pki`'s certificate, accepting every upgrade.
    async fn tls_server(pki: &TestPki) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await {
                        use futures_util::StreamExt;
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                });
            }
        });
        port
    }

    fn trusting(ca: Option<&CertificateDer<'static>>) -> impl FnOnce() -> Result<Arc<rustls::ClientConfig>, ConnectError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(ca) = ca {
            roots.add(ca.clone()).unwrap();
        }
        move || Ok(tls::client_config(roots))
    }

    /// A certificate from a CA the puller trusts is accepted, under an underscore label too; one
    /// from another CA, or for another name, is refused with one line saying why and what to do,
    /// and is not retried.
    #[tokio::test]
    async fn certificates_are_checked_against_the_roots_and_refusals_say_why() {
        let host = "durafetch_app.localhost";
        let good = pki(&[host]);
        let port = tls_server(&good).await;
        let server = crate::settings::file::test_server(&format!("wss://{host}:{port}"));
        open_trusting(&server, "/index", trusting(Some(&good.ca))).await.expect("a certificate of a trusted CA");

        let error = open_trusting(&server, "/index", trusting(None)).await.err().unwrap();
        assert!(matches!(error, ConnectError::Certificate { .. }), "{error}");
        assert!(error.is_permanent());
        let text = error.to_string();
        assert!(text.contains("signed by an authority this machine does not trust") && text.contains("SSL_CERT_FILE"), "{text}");

        let other = pki(&["other.localhost"]);
        let port = tls_server(&other).await;
        let server = crate::settings::file::test_server(&format!("wss://{host}:{port}"));
        let error = open_trusting(&server, "/index", trusting(Some(&other.ca))).await.err().unwrap();
        assert!(error.to_string().contains("not valid for the name durafetch_app.localhost"), "{error}");
    }
}
