//! PostgreSQL's errors in words: what the server said, which of its refusals are about TLS, and
//! TLS settings that cannot be used. In the bottom layer, as the interface's errors name them.

use crate::tls::CertificateFileError;

#[derive(Debug, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("sslrootcert=system checks the server's name against the system's roots: it takes sslmode=verify-full (or none), as in libpq")]
    SystemNeedsVerifyFull,
    #[error(
        "sslmode=verify-ca checks only that the certificate chains to a root, so it needs the server's own CA: name it with sslrootcert=<file> (PEM), or use sslmode=verify-full"
    )]
    VerifyCaNeedsRoot,
    #[error(transparent)]
    RootCert(#[from] CertificateFileError),
}

/// What PostgreSQL said: its own message and detail, which the client's error shows only as
/// "db error".
pub(crate) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        // The server's rule for connections without TLS: say which setting turned TLS off.
        Some(db) if tls_required(error) => {
            format!("{}; the server takes this connection over TLS only: leave out sslmode=disable (URL or PGSSLMODE)", db.message())
        }
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => error.to_string(),
    }
}

/// Whether the server's rules refuse this address without TLS: libpq's `allow` then tries TLS.
pub(crate) fn tls_required(error: &postgres::Error) -> bool {
    refused_by_rule(error, &["no encryption", "SSL off"])
}

/// A `pg_hba.conf` refusal whose message ends with one of `endings` (the wording of PostgreSQL
/// 14 and later, then of older servers).
pub(crate) fn refused_by_rule(error: &postgres::Error, endings: &[&str]) -> bool {
    error.as_db_error().is_some_and(|db| {
        db.code() == &postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION && endings.iter().any(|e| db.message().ends_with(e))
    })
}
