//! TLS to PostgreSQL, set as libpq's users set it: `sslmode` and `sslrootcert` in the URL's query,
//! or else `PGSSLMODE` and `PGSSLROOTCERT`. The client library knows three of libpq's six modes,
//! so both settings are taken out of the URL here and turned into its mode and a rustls
//! connector whose certificate check is the mode's.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use crate::sink::postgres_error::{refused_by_rule, tls_required, TlsSettingsError};
use crate::tls::{self};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    /// Plain text, and TLS should the server refuse plain text.
    Allow,
    /// libpq's default: TLS when the server offers it, its certificate unchecked, and plain
    /// text should TLS fail.
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
    let mode = mode.or_else(|| env("PGSSLMODE")).map(|mode| SslMode::parse(&mode)).transpose()?;
    let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT")).filter(|r| !r.is_empty());
    let settings = match root_cert.as_deref() {
        // libpq 16's rule: the system's roots are for checking the host name too.
        Some("system") => match mode {
            None | Some(SslMode::VerifyFull) => {
                TlsSettings { mode: SslMode::VerifyFull, root_cert: RootCert::System, root_cert_named: false }
            }
            Some(_) => return Err(TlsSettingsError::SystemNeedsVerifyFull),
        },
        Some(path) => {
            TlsSettings { mode: mode.unwrap_or(SslMode::Prefer), root_cert: RootCert::File(PathBuf::from(path)), root_cert_named: true }
        }
        // A chain checked against the web's roots, whatever the name, proves nothing: anyone can
        // have such a certificate.
        None if mode == Some(SslMode::VerifyCa) => return Err(TlsSettingsError::VerifyCaNeedsRoot),
        None => TlsSettings { mode: mode.unwrap_or(SslMode::Prefer), root_cert: RootCert::System, root_cert_named: false },
    };
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, settings))
}

fn percent_decoded(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

impl TlsSettings {
    /// Connects as the mode says: `allow` in plain text, then over TLS should the server's
    /// rules refuse plain text; `prefer` over TLS when the server offers it, then in plain text
    /// should TLS fail; the others once.
    pub(crate) fn connect(&self, config: &postgres::Config, connector: MakeRustlsConnect) -> Result<postgres::Client, postgres::Error> {
        use postgres::config::SslMode as Client;
        let connect = |mode: Client| {
            let mut config = config.clone();
            config.ssl_mode(mode);
            config.connect(connector.clone())
        };
        match self.mode {
            SslMode::Disable => connect(Client::Disable),
            SslMode::Allow => match connect(Client::Disable) {
                Err(error) if tls_required(&error) => connect(Client::Require),
                plain => plain,
            },
            SslMode::Prefer => match connect(Client::Prefer) {
                Err(error) if tls_failed(&error) => connect(Client::Disable),
                encrypted => encrypted,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => connect(Client::Require),
        }
    }

    fn check(&self) -> Check {
        match self.mode {
            SslMode::VerifyFull => Check::Full,
            SslMode::VerifyCa => Check::Chain,
            SslMode::Require if self.root_cert_named => Check::Chain,
            _ => Check::Encryption,
        }
    }

    /// Whether the server's certificate is checked (so a refusal is worth a word on the roots).
    pub(crate) fn checks_certificates(&self) -> bool {
        self.check() != Check::Encryption
    }

    /// The connector whose certificate check is the mode's. The roots are read first, so an
    /// unreadable `sslrootcert` is named before any connection is made.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, TlsSettingsError> {
        let check = self.check();
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Encryption => Arc::new(Unnamed { roots: None, provider: tls::provider() }),
            Check::Chain | Check::Full => {
                let roots = Arc::new(match &self.root_cert {
                    RootCert::System => tls::roots(tls::ssl_cert_file().as_deref())?,
                    RootCert::File(path) => tls::roots_of_file(path, "sslrootcert")?,
                });
                if check == Check::Full {
                    WebPkiServerVerifier::builder_with_provider(roots, tls::provider())
                        .build()
                        .expect("a root store that is not empty makes a verifier")
                } else {
                    Arc::new(Unnamed { roots: Some(roots), provider: tls::provider() })
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

/// The checks that leave the host name aside: with `roots`, `verify-ca` (the certificate chains
/// to one of them); without, `prefer` and `require` as libpq has them (the connection encrypted,
/// the certificate taken unchecked). The handshake's signatures are checked either way.
#[derive(Debug)]
struct Unnamed {
    roots: Option<Arc<rustls::RootCertStore>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unnamed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            let algorithms = self.provider.signature_verification_algorithms.all;
            verify_server_cert_signed_by_trust_anchor(&certificate, roots, intermediates, now, algorithms)?;
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `error` is TLS failing where plain text may still work: the handshake failed, or
/// the server's rules refuse this address over TLS. libpq's `prefer` then connects in plain text.
pub(crate) fn tls_failed(error: &postgres::Error) -> bool {
    tls::tls_error_in(error).is_some()
        || error.to_string().starts_with("error performing TLS handshake")
        || refused_by_rule(error, &["SSL encryption", "SSL on"])
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
            "PGSSLROOTCERT" => Some("/etc/ca.pem".to_owned()),
            _ => None,
        };
        let (url, settings) = split("postgres://u@h/d", env).unwrap();
        assert_eq!((url.as_str(), settings.mode), ("postgres://u@h/d", SslMode::Require));
        assert!(settings.checks_certificates(), "require with a root file checks the chain, as in libpq");
        assert_eq!(split("postgres://u@h/d?sslmode=disable", env).unwrap().1.mode, SslMode::Disable);

        let (_, default) = split("postgres://u@h/d", no_env).unwrap();
        assert_eq!((default.mode, default.checks_certificates()), (SslMode::Prefer, false));
        let wrong = split("postgres://u@h/d?sslmode=verify", no_env).unwrap_err().to_string();
        assert_eq!(wrong, "sslmode=verify is not one of disable, allow, prefer, require, verify-ca, verify-full");
    }

    /// libpq's rules for the roots: `system` means `verify-full`, and `verify-ca` needs a CA
    /// of its own (the web's roots vouch for anyone's certificate).
    #[test]
    fn the_system_roots_take_verify_full_and_verify_ca_takes_a_root_file() {
        let (_, system) = split("postgres://u@h/d?sslrootcert=system", no_env).unwrap();
        assert_eq!((system.mode, &system.root_cert), (SslMode::VerifyFull, &RootCert::System));
        for weaker in ["require", "verify-ca", "prefer", "disable"] {
            let refused = split(&format!("postgres://u@h/d?sslrootcert=system&sslmode={weaker}"), no_env).unwrap_err();
            assert!(matches!(refused, TlsSettingsError::SystemNeedsVerifyFull), "{weaker}: {refused}");
        }
        let refused = split("postgres://u@h/d?sslmode=verify-ca", no_env).unwrap_err().to_string();
        assert!(refused.contains("needs the server's own CA"), "{refused}");
        let (_, full) = split("postgres://u@h/d?sslmode=verify-full", no_env).unwrap();
        assert_eq!((&full.root_cert, full.checks_certificates()), (&RootCert::System, true));
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
