//! Exports asked for in one HTTP request: the hello POSTed to the export's path and answered
//! with the export's messages, one per line, on HTTP/1.1 connections kept alive between
//! requests. Most objects are small, and a request on an open connection costs both ends less
//! than a WebSocket opened, proxied and closed for each. Connections are dialled as the
//! WebSocket's are (`dial::dial`: the same TLS roots, the same `*.localhost` rule).

use std::sync::Mutex;
use std::time::Duration;

use durafetch_sdk::core::protocol::ONE_RESPONSE_MAX_BYTES;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;

use crate::settings::file::Server;
use crate::transport::dial;
use crate::transport::error::ConnectError;

/// A request, from dialling to the last byte of its answer, must be done within this long.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);

/// The most of an answer read: a whole export, with room for the headers' worth of slack a
/// refusal's body may take.
const ANSWER_MAX_BYTES: usize = ONE_RESPONSE_MAX_BYTES + 16 * 1024;

/// Connections not in use, each with the origin (`scheme://host:port`) it is open to. A
/// download takes one for its request and puts it back once the answer is read whole, so
/// there are never more than the pull's concurrency.
#[derive(Default)]
pub struct KeptConnections {
    idle: Mutex<Vec<(String, SendRequest<Full<Bytes>>)>>,
}

impl KeptConnections {
    /// The export at `path` in one answer, or `None` when the server says it needs a session
    /// (426).
    pub async fn export_whole(&self, server: &Server, path: &str, hello: &str) -> Result<Option<String>, ConnectError> {
        let url = dial::endpoint(server, path);
        let host = url.host_str().unwrap_or_default().to_owned();
        tokio::time::timeout(ANSWER_LIMIT, self.ask(server, &url, hello)).await.unwrap_or(Err(ConnectError::TimedOut { host }))
    }

    async fn ask(&self, server: &Server, url: &url::Url, hello: &str) -> Result<Option<String>, ConnectError> {
        let origin = url[..url::Position::BeforePath].to_owned();
        let request = || -> Result<hyper::Request<Full<Bytes>>, ConnectError> {
            hyper::Request::post(&url[url::Position::BeforePath..url::Position::AfterQuery])
                .header("host", &url[url::Position::BeforeHost..url::Position::AfterPort])
                .header("authorization", dial::bearer(server)?)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::copy_from_slice(hello.as_bytes())))
                .map_err(|e| ConnectError::Protocol(e.to_string()))
        };
        let host = url.host_str().unwrap_or_default();
        let failed = |e: hyper::Error| ConnectError::Unreachable { host: host.to_owned(), message: e.to_string() };
        // A kept connection the server has since closed fails before any answer: the request,
        // a read, is then made once more on a new connection.
        if let Some(mut kept) = self.take(&origin) {
            if kept.ready().await.is_ok() {
                if let Ok(response) = kept.send_request(request()?).await {
                    return self.read(origin, kept, response, host).await;
                }
            }
        }
        let stream = dial::dial(url, dial::tls_config).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(failed)?;
        tokio::spawn(connection);
        let response = sender.send_request(request()?).await.map_err(failed)?;
        self.read(origin, sender, response, host).await
    }

    /// Reads the answer whole, keeps the connection for the next request, and says what the
    /// answer means.
    async fn read(
        &self,
        origin: String,
        sender: SendRequest<Full<Bytes>>,
        response: hyper::Response<hyper::body::Incoming>,
        host: &str,
    ) -> Result<Option<String>, ConnectError> {
        let status = response.status();
        let body = Limited::new(response.into_body(), ANSWER_MAX_BYTES)
            .collect()
            .await
            .map_err(|e| ConnectError::Unreachable { host: host.to_owned(), message: format!("reading the answer: {e}") })?;
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((origin, sender));
        let body = body.to_bytes();
        match status {
            StatusCode::OK => {
                String::from_utf8(body.to_vec()).map(Some).map_err(|_| ConnectError::Protocol("an export answer that is not UTF-8".into()))
            }
            StatusCode::UPGRADE_REQUIRED => Ok(None),
            StatusCode::UNAUTHORIZED => Err(ConnectError::Unauthorized),
            status => Err(ConnectError::Status { status: status.as_u16(), body: dial::error_message(&body) }),
        }
    }

    fn take(&self, origin: &str) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        idle.retain(|(_, sender)| !sender.is_closed());
        let at = idle.iter().position(|(open_to, _)| open_to == origin)?;
        Some(idle.swap_remove(at).1)
    }
}
