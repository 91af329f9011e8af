//! TLS to PostgreSQL and MySQL/MariaDB: the four modes (`disable`, `require`, `verify-ca`,
//! `verify-full`), the trusted CAs (a `tls_ca_file` bundle instead of the bundled web PKI
//! roots) and the client certificate of mutual TLS.
//!
//! [`DbTls::load`] reads the PEM files and checks them (a CA file with no certificate, a
//! client key that does not fit its certificate) when pools are built and when a catalog is
//! checked, so a broken file is refused before anything serves. It builds one rustls
//! configuration on aws-lc-rs, which the PostgreSQL pool and the datasource test use; the
//! MySQL driver builds its own from the same bytes (`mysql::ssl_opts`).
//!
//! The client key arrives opened by the vault and is parsed here; no error message, log line
//! or `Debug` output carries any part of it. `require` encrypts without checking who answers:
//! every pool built with it logs a warning.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::spec::{NetworkDatabaseSpec, TlsMode};
use crate::vault::SecretString;

/// Why a datasource's TLS settings could not be loaded. Messages name the field and the
/// file, never a byte of the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read `{path}`: {cause}")]
    Read {
        field: &'static str,
        path: String,
        cause: std::io::Error,
    },
    #[error("`{path}` holds no PEM certificate{}", pem_reason(.cause))]
    NoCertificate {
        field: &'static str,
        path: String,
        cause: Option<rustls_pki_types::pem::Error>,
    },
    #[error("`{path}`: a certificate cannot be used as a trust anchor: {cause}")]
    BadCa { path: String, cause: rustls::Error },
    #[error("the sealed key is missing")]
    MissingKey,
    #[error(
        "not a PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)"
    )]
    BadKey,
    #[error(
        "the key does not fit the certificate of `tls_client_cert_file`, or cannot be used: {cause}"
    )]
    KeyMismatch { cause: rustls::Error },
}

fn pem_reason(cause: &Option<rustls_pki_types::pem::Error>) -> String {
    match cause {
        Some(cause) => format!(" ({cause})"),
        None => String::new(),
    }
}

impl TlsSetupError {
    /// The catalog field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            TlsSetupError::Read { field, .. } | TlsSetupError::NoCertificate { field, .. } => field,
            TlsSetupError::BadCa { .. } => "tls_ca_file",
            TlsSetupError::MissingKey
            | TlsSetupError::BadKey
            | TlsSetupError::KeyMismatch { .. } => "tls_client_key",
        }
    }
}

/// A datasource's TLS, loaded: the mode, and for every mode but `disable` the rustls
/// configuration and the PEM bytes it was made from.
#[derive(Clone)]
pub struct DbTls {
    pub mode: TlsMode,
    /// `None` when TLS is off.
    pub config: Option<Arc<ClientConfig>>,
    /// The `tls_ca_file` bundle as read (MySQL takes the PEM itself).
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// The `tls_client_cert_file` chain as read.
    pub(crate) client_cert_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for DbTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTls")
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .finish()
    }
}

impl DbTls {
    /// Reads and checks the TLS settings of `spec` under `mode` (the mode in force). The
    /// client key, when the spec has one, must be given opened.
    pub fn load(
        spec: &NetworkDatabaseSpec,
        mode: TlsMode,
        client_key: Option<&SecretString>,
    ) -> Result<DbTls, TlsSetupError> {
        if mode == TlsMode::Disable {
            return Ok(DbTls {
                mode,
                config: None,
                ca_pem: None,
                client_cert_pem: None,
            });
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (ca_pem, roots) = match &spec.tls_ca_file {
            Some(path) => {
                let (pem, roots) = read_ca(path)?;
                (Some(pem), roots)
            }
            None => (
                None,
                RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            ),
        };
        let roots = Arc::new(roots);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions");
        let builder = match mode {
            TlsMode::VerifyFull => builder.with_root_certificates(roots),
            TlsMode::VerifyCa => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaOnlyVerifier {
                    roots,
                    provider: provider.clone(),
                })),
            TlsMode::Require | TlsMode::Disable => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UncheckedVerifier {
                    provider: provider.clone(),
                })),
        };
        let client = match &spec.tls_client_cert_file {
            Some(path) => {
                let (pem, chain) = read_certificates("tls_client_cert_file", path)?;
                let key = client_key.ok_or(TlsSetupError::MissingKey)?;
                let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                    .map_err(|_| TlsSetupError::BadKey)?;
                Some((pem, chain, key))
            }
            None => None,
        };
        let (config, client_cert_pem) = match client {
            Some((pem, chain, key)) => (
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|cause| TlsSetupError::KeyMismatch { cause })?,
                Some(pem),
            ),
            None => (builder.with_no_client_auth(), None),
        };
        Ok(DbTls {
            mode,
            config: Some(Arc::new(config)),
            ca_pem,
            client_cert_pem,
        })
    }

    /// Reads and checks the CA bundle and the client certificate of `spec`, as [`load`]
    /// does, without the client key (for a catalog check on a machine without the instance
    /// key).
    ///
    /// [`load`]: DbTls::load
    pub fn check_files(spec: &NetworkDatabaseSpec, mode: TlsMode) -> Result<(), TlsSetupError> {
        if mode == TlsMode::Disable {
            return Ok(());
        }
        if let Some(path) = &spec.tls_ca_file {
            read_ca(path)?;
        }
        if let Some(path) = &spec.tls_client_cert_file {
            read_certificates("tls_client_cert_file", path)?;
        }
        Ok(())
    }

    /// The name a TLS handshake with `host` checks the certificate against (an IP address
    /// for an IP literal).
    pub fn server_name(host: &str) -> Option<ServerName<'static>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_string()).ok()
    }
}

/// Reads a CA bundle: the bytes, and the store of its certificates.
fn read_ca(path: &str) -> Result<(Vec<u8>, RootCertStore), TlsSetupError> {
    let (pem, certs) = read_certificates("tls_ca_file", path)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|cause| TlsSetupError::BadCa {
            path: path.to_string(),
            cause,
        })?;
    }
    Ok((pem, roots))
}

/// Reads a PEM file of certificates: the bytes, and the certificates.
fn read_certificates(
    field: &'static str,
    path: &str,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsSetupError> {
    let pem = std::fs::read(path).map_err(|cause| TlsSetupError::Read {
        field,
        path: path.to_string(),
        cause,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsSetupError::NoCertificate {
            field,
            path: path.to_string(),
            cause: Some(cause),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            field,
            path: path.to_string(),
            cause: None,
        });
    }
    Ok((pem, certs))
}

/// `verify-ca`: the certificate must chain to a trusted CA and be in its validity period;
/// the host name is not compared (as libpq's `sslmode=verify-ca`).
#[derive(Debug)]
struct CaOnlyVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `require`: any certificate is accepted. The handshake signatures are still checked, so
/// the session is at least with the holder of the certificate presented, but nothing says
/// who that is.
#[derive(Debug)]
struct UncheckedVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for UncheckedVerifier {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls error somewhere in `error`'s chain, looking inside `io::Error`s too (whose
/// `source()` skips the error they wrap, which is where TLS streams put it).
pub(crate) fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = current {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            if let Some(found) = find_rustls_error(inner) {
                return Some(found);
            }
        }
        current = cause.source();
    }
    None
}

/// What to change when a TLS handshake failed with `error`: a hint for the admin, naming
/// the setting. Never quotes a value. `verify_ca` says whether the driver offers
/// `tls: verify-ca` (PostgreSQL does, MySQL does not).
pub(crate) fn tls_hint(error: &rustls::Error, host: &str, verify_ca: bool) -> String {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as E};
    match error {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA: set `tls_ca_file` to the \
             PEM bundle of the CA that signed it (RDS, Cloud SQL and internal CAs publish \
             theirs), or `tls: require` to encrypt without checking the certificate (not \
             recommended)"
                .into()
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            if verify_ca {
                format!(
                    "the server's certificate does not list the host name `{host}`: connect \
                     with a name it lists, or use `tls: verify-ca` (the CA is checked, the \
                     name is not)"
                )
            } else {
                format!(
                    "the server's certificate does not list the host name `{host}`: connect \
                     with a name it lists"
                )
            }
        }
        E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the server's certificate has expired (or this machine's clock is wrong)".into()
        }
        E::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (or this machine's clock is wrong)".into()
        }
        E::InvalidCertificate(_) => {
            "the server's certificate was refused; check it, and `tls_ca_file`".into()
        }
        E::AlertReceived(
            Alert::CertificateRequired
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::AccessDenied,
        ) => "the server refused the client certificate, or needs one: set \
              `tls_client_cert_file` and `tls_client_key` to a certificate its CA signed"
            .into(),
        E::AlertReceived(Alert::HandshakeFailure | Alert::ProtocolVersion) => {
            "the server and Sluice share no TLS version or cipher (Sluice speaks TLS 1.2 and \
             1.3)"
                .into()
        }
        _ => "the TLS handshake failed; check the server's TLS settings and `tls`".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NetworkDatabaseSpec {
        serde_norway::from_str(yaml).expect("a network datasource")
    }

    #[test]
    fn disable_needs_no_files_and_builds_no_config() {
        let spec = spec("{host: db, database: d, user: u}");
        let tls = DbTls::load(&spec, TlsMode::Disable, None).unwrap();
        assert!(tls.config.is_none());
    }

    #[test]
    fn every_mode_builds_with_the_bundled_roots() {
        let spec = spec("{host: db, database: d, user: u}");
        for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            assert!(DbTls::load(&spec, mode, None).unwrap().config.is_some());
        }
    }

    #[test]
    fn unreadable_and_empty_ca_files_name_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let spec_for = |path: &std::path::Path| {
            spec(&format!(
                "{{host: db, database: d, user: u, tls_ca_file: '{}'}}",
                path.display()
            ))
        };
        let error = DbTls::load(&spec_for(&missing), TlsMode::VerifyFull, None).unwrap_err();
        assert_eq!(error.field(), "tls_ca_file");
        assert!(error.to_string().contains("missing.pem"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = DbTls::load(&spec_for(&empty), TlsMode::VerifyFull, None).unwrap_err();
        assert_eq!(error.field(), "tls_ca_file");
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn a_client_key_that_is_not_pem_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let cert = dir.path().join("client.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        let spec = spec(&format!(
            "{{host: db, database: d, user: u, tls_client_cert_file: '{}', tls_client_key: sealed}}",
            cert.display()
        ));
        let key = SecretString::from("secret-key-material-4711".to_string());
        let error = DbTls::load(&spec, TlsMode::VerifyFull, Some(&key)).unwrap_err();
        assert_eq!(error.field(), "tls_client_key");
        assert!(!error.to_string().contains("4711"), "{error}");
        // Another certificate's key does not fit.
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        let key = SecretString::from(other.signing_key.serialize_pem());
        let error = DbTls::load(&spec, TlsMode::VerifyFull, Some(&key)).unwrap_err();
        assert!(
            matches!(error, TlsSetupError::KeyMismatch { .. }),
            "{error}"
        );
        let key = SecretString::from(made.signing_key.serialize_pem());
        assert!(DbTls::load(&spec, TlsMode::VerifyFull, Some(&key)).is_ok());
    }

    #[test]
    fn server_names_accept_ip_literals() {
        assert!(matches!(
            DbTls::server_name("127.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            DbTls::server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            DbTls::server_name("db.internal"),
            Some(ServerName::DnsName(_))
        ));
    }
}
