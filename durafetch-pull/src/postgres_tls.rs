//! TLS to PostgreSQL, set as libpq's users set it: `sslmode` and `sslrootcert` in the URL's query,
//! or else `PGSSLMODE` and `PGSSLROOTCERT`. The client library knows three of libpq's six modes,
//! so both settings are taken out of the URL here and turned into its mode and a rustls
//! connector whose certificate check is the mode's.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::tls::{self, CertificateFileError};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    /// Plain text first in libpq; here as `prefer`, TLS when the server offers it.
    Allow,
    /// libpq's default: TLS when the server offers it, its certificate unchecked.
    Prefer,
    /// TLS, its certificate unchecked, unless a root certificate is given (then as `verify-ca`).
    Require,
    /// TLS, the certificate chained to a trusted root, whatever names it holds.
    VerifyCa,
    /// TLS, the certificate chained to a trusted root and valid for the host name.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, TlsSettingsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsSettingsError::Mode(other.to_owned())),
        })
    }
}

/// Where the roots for `verify-ca` and `verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// The web's, the operating system's and `SSL_CERT_FILE`'s (no `sslrootcert`, or
    /// `sslrootcert=system` as libpq 16 spells it).
    System,
    /// Only the certificates of this PEM file.
    File(PathBuf),
}

/// The TLS settings of a PostgreSQL URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: RootCert,
    /// Whether a root certificate was named (which turns `require` into `verify-ca`).
    root_cert_named: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSettingsError {
    #[error("sslmode={0} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error(transparent)]
    RootCert(#[from] CertificateFileError),
}

/// Splits `url` into the URL the client library reads (without `sslmode` and `sslrootcert`) and
/// the TLS settings, the URL's before the variables `env` reads (`PGSSLMODE`, `PGSSLROOTCERT`).
pub(crate) fn split(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<(String, TlsSettings), TlsSettingsError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root_cert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || percent_decoded(value);
        match key {
            "sslmode" => mode = Some(decoded()),
            "sslrootcert" => root_cert = Some(decoded()),
            _ => kept.push(pair),
        }
    }
    let mode = match mode.or_else(|| env("PGSSLMODE")) {
        Some(mode) => SslMode::parse(&mode)?,
        None => SslMode::Prefer,
    };
    let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT")).filter(|r| !r.is_empty());
    let settings = TlsSettings {
        mode,
        root_cert_named: root_cert.as_deref().is_some_and(|r| r != "system"),
        root_cert: match root_cert {
            Some(path) if path != "system" => RootCert::File(PathBuf::from(path)),
            _ => RootCert::System,
        },
    };
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, settings))
}

fn percent_decoded(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

impl TlsSettings {
    /// The client library's own mode for these settings.
    pub(crate) fn client_mode(&self) -> postgres::config::SslMode {
        use postgres::config::SslMode as Client;
        match self.mode {
            SslMode::Disable => Client::Disable,
            SslMode::Allow | SslMode::Prefer => Client::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Client::Require,
        }
    }

    /// The connector whose certificate check is the mode's. The roots are read first, so an
    /// unreadable `sslrootcert` is named before any connection is made.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, TlsSettingsError> {
        let check = match self.mode {
            SslMode::VerifyFull => Check::Full,
            SslMode::VerifyCa => Check::Chain,
            SslMode::Require if self.root_cert_named => Check::Chain,
            _ => Check::Encryption,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Encryption => Arc::new(EncryptionOnly(tls::provider())),
            Check::Chain | Check::Full => {
                let roots = match &self.root_cert {
                    RootCert::System => tls::roots(tls::ssl_cert_file().as_deref())?,
                    RootCert::File(path) => tls::roots_of_file(path, "sslrootcert")?,
                };
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), tls::provider())
                    .build()
                    .expect("a root store that is not empty makes a verifier");
                if check == Check::Full {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Encryption,
    Chain,
    Full,
}

/// `verify-ca`: the chain to a trusted root, not the names (rustls checks the names last, so a
/// name refusal means the chain held).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            checked => checked,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` as libpq has them: the connection encrypted, the certificate taken
/// unchecked (the handshake's signatures still are).
#[derive(Debug)]
struct EncryptionOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The URL's settings come out of it and win over the variables; the rest of the query stays.
    #[test]
    fn sslmode_and_sslrootcert_are_read_from_the_url_then_the_environment() {
        let (url, settings) =
            split("postgres://u@db.example.com/d?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem", no_env).unwrap();
        assert_eq!(url, "postgres://u@db.example.com/d?application_name=x");
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(settings.root_cert, RootCert::File("/etc/ca.pem".into()));

        let env = |name: &str| match name {
            "PGSSLMODE" => Some("require".to_owned()),
            "PGSSLROOTCERT" => Some("system".to_owned()),
            _ => None,
        };
        let (url, settings) = split("postgres://u@h/d", env).unwrap();
        assert_eq!((url.as_str(), settings.mode, &settings.root_cert), ("postgres://u@h/d", SslMode::Require, &RootCert::System));
        assert_eq!(settings.client_mode(), postgres::config::SslMode::Require);
        assert_eq!(split("postgres://u@h/d?sslmode=disable", env).unwrap().1.mode, SslMode::Disable);

        let (_, default) = split("postgres://u@h/d", no_env).unwrap();
        assert_eq!((default.mode, default.client_mode()), (SslMode::Prefer, postgres::config::SslMode::Prefer));
        let wrong = split("postgres://u@h/d?sslmode=verify", no_env).unwrap_err().to_string();
        assert_eq!(wrong, "sslmode=verify is not one of disable, allow, prefer, require, verify-ca, verify-full");
    }

    /// A named root file is read before any connection, for the modes that check.
    #[test]
    fn a_root_file_that_cannot_be_read_is_named() {
        let (_, settings) = split("postgres://u@h/d?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem", no_env).unwrap();
        let error = settings.connector().err().unwrap().to_string();
        assert!(error.starts_with("cannot read the certificates of sslrootcert (/nonexistent/ca.pem)"), "{error}");
        let (_, unchecked) = split("postgres://u@h/d?sslmode=prefer&sslrootcert=/nonexistent/ca.pem", no_env).unwrap();
        assert!(unchecked.connector().is_ok(), "prefer checks no certificate, so reads no root");
    }
}
