//! What can go wrong reaching a server, and which of it another attempt cannot fix.

use std::time::Duration;

use crate::tls::CertificateFileError;

/// A connection and its WebSocket upgrade must be done within this long; a host that drops
/// packets would otherwise hold a download for minutes.
pub(crate) const HANDSHAKE_LIMIT: Duration = Duration::from_secs(30);

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
    #[error(
        "the certificate of {host} is refused: {reason}; if a TLS-inspecting proxy or a private CA signs it, point SSL_CERT_FILE at that CA's certificate (PEM)"
    )]
    Certificate { host: String, reason: String },
    #[error(transparent)]
    CertificateFile(#[from] CertificateFileError),
}

impl ConnectError {
    /// Errors that another attempt cannot fix.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ConnectError::Unauthorized | ConnectError::Certificate { .. } | ConnectError::CertificateFile(_))
            || matches!(self, ConnectError::Status { status, .. } if (400..500).contains(status))
    }
}
