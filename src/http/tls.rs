//! TLS termination from certificate files (`SLUICE_TLS_CERT_FILE`, `SLUICE_TLS_KEY_FILE`),
//! with rustls on the aws-lc-rs provider. The files are read at start-up and again on
//! `SIGHUP`, so a renewed certificate is picked up without a restart; a reload that fails
//! keeps serving the previous certificate. [`acceptor`] serves any certificate resolver
//! (the ACME one, `crate::acme`, also answers TLS-ALPN-01 challenges on `acme-tls/1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used. Never holds key material. Each message
/// carries its cause's text (these are logged on a failed reload as well as printed at
/// start), so the causes are not also chained as `source`: printed once, not twice.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain from {path}: {cause}")]
    Certificate {
        path: PathBuf,
        cause: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key from {path}: {cause}")]
    Key {
        path: PathBuf,
        cause: rustls_pki_types::pem::Error,
    },
    #[error("the private key does not fit the certificate or is not supported: {0}")]
    Mismatch(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The certificate in use, swappable while serving.
#[derive(Debug)]
pub struct CertStore {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// Reads both files; fails with the reason when they do not make a usable pair.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<CertStore>, TlsError> {
        let key = read_pair(cert_file, key_file)?;
        Ok(Arc::new(CertStore {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(key),
        }))
    }

    /// Reads the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_pair(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// An acceptor serving this store's certificate (HTTP/1.1 over TLS 1.2 and 1.3).
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        acceptor(self.clone(), false)
    }
}

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737). A connection that negotiated it
/// is a CA's validation: the server closes it after the handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// An acceptor whose certificates come from `resolver` (HTTP/1.1 over TLS 1.2 and 1.3);
/// `acme_challenges` also offers [`ACME_TLS_ALPN`], for a resolver that answers challenges.
pub fn acceptor(
    resolver: Arc<dyn ResolvesServerCert>,
    acme_challenges: bool,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if acme_challenges {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|cause| TlsError::Certificate {
            path: cert_file.to_path_buf(),
            cause,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|cause| TlsError::Key {
        path: key_file.to_path_buf(),
        cause,
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(TlsError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_mismatched_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let error = CertStore::load(&cert, &key).unwrap_err();
        assert!(error.to_string().contains("cert.pem"), "{error}");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = CertStore::load(&cert, &key).unwrap_err();
        assert!(
            error.to_string().contains("holds no certificate"),
            "{error}"
        );
    }
}
