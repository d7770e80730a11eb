//! What the puller trusts when it speaks TLS, to a worker (`transport::dial`) or to
//! PostgreSQL (`sink::postgres::tls`): the roots a certificate may chain to, and the client settings over them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A file of certificates the puller was pointed at and cannot take roots from.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read the certificates of {setting} ({path}): {message}")]
pub struct CertificateFileError {
    /// What named the file: `SSL_CERT_FILE`, `sslrootcert`.
    setting: &'static str,
    path: String,
    message: String,
}

/// `SSL_CERT_FILE`, the PEM file of extra roots that OpenSSL's tools read too.
pub(crate) fn ssl_cert_file() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE").map(PathBuf::from)
}

/// The client settings over `roots`, with the ring provider the puller is built with.
pub(crate) fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots a server's certificate may chain to: the web's (Mozilla's list, built in), the
/// operating system's store, and the PEM file `cert_file` (`SSL_CERT_FILE`) names, for a
/// TLS-inspecting proxy or a private CA. A file that cannot be read, or holds no certificate, is
/// an error; a system store that cannot be read is not, as the built-in roots remain.
pub(crate) fn roots(cert_file: Option<&Path>) -> Result<rustls::RootCertStore, CertificateFileError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = cert_file {
        add_file(&mut roots, path, "SSL_CERT_FILE")?;
    }
    Ok(roots)
}

/// The roots of the PEM file `path` alone, which `setting` named.
pub(crate) fn roots_of_file(path: &Path, setting: &'static str) -> Result<rustls::RootCertStore, CertificateFileError> {
    let mut roots = rustls::RootCertStore::empty();
    add_file(&mut roots, path, setting)?;
    Ok(roots)
}

fn add_file(roots: &mut rustls::RootCertStore, path: &Path, setting: &'static str) -> Result<(), CertificateFileError> {
    let failed = |message: String| CertificateFileError { setting, path: path.display().to_string(), message };
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))?.collect::<Result<Vec<_>, _>>();
    let certs = certs.map_err(|e| failed(e.to_string()))?;
    if certs.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(failed("none of its certificates can be a root".into()));
    }
    Ok(())
}

/// The TLS error somewhere in `error`'s sources, itself or inside an I/O error, as the TLS
/// stack and the clients over it wrap it.
pub(crate) fn tls_error_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        let found = error
            .downcast_ref::<rustls::Error>()
            .or_else(|| error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref()));
        if found.is_some() {
            return found;
        }
        next = error.source();
    }
    None
}

/// Why a certificate was refused, in words, if a refused certificate is what `error` is.
pub(crate) fn refusal_reason(error: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
    use rustls::CertificateError as Why;
    let rustls::Error::InvalidCertificate(why) = tls_error_in(error)? else { return None };
    Some(match why {
        Why::UnknownIssuer => "it is signed by an authority this machine does not trust".to_owned(),
        Why::NotValidForName | Why::NotValidForNameContext { .. } => format!("it is not valid for the name {host}"),
        Why::Expired | Why::ExpiredContext { .. } => "it has expired".to_owned(),
        other => format!("{other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SSL_CERT_FILE adds its certificates to the roots, `sslrootcert` gives the only ones; a
    /// file that cannot be read, or holds no certificate, is an error naming it and its setting.
    #[test]
    fn a_certificate_file_adds_roots_or_says_why_it_cannot() {
        let dir = std::env::temp_dir().join(format!("durafetch-roots-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let builtin = roots(None).unwrap().len();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, ca.pem()).unwrap();
        assert_eq!(roots(Some(&pem)).unwrap().len(), builtin + 1);
        assert_eq!(roots_of_file(&pem, "sslrootcert").unwrap().len(), 1);
        let missing = roots(Some(&dir.join("missing.pem"))).unwrap_err().to_string();
        assert!(missing.starts_with("cannot read the certificates of SSL_CERT_FILE (") && missing.contains("missing.pem"), "{missing}");
        std::fs::write(dir.join("empty.pem"), "not a certificate").unwrap();
        let empty = roots_of_file(&dir.join("empty.pem"), "sslrootcert").unwrap_err().to_string();
        assert!(
            empty.starts_with("cannot read the certificates of sslrootcert (") && empty.contains("no PEM certificate in it"),
            "{empty}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
