//! Certificates as the ACME task handles them: a stored or issued PEM (chain and key) read
//! into what rustls serves, its lifetime and names; when a renewal is due and how long to
//! wait after a failure (pure, tested from tables); and the TLS-ALPN-01 challenge
//! certificate (RFC 8737). Does no IO and reads no clock: callers pass `now`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// When a certificate starts and stops being valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Lifetime {
    /// The renewal is due once a third of the lifetime is left (30 days of Let's Encrypt's
    /// 90, as its own client does), so a failing CA leaves weeks to notice.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_after - lifetime / 3
    }

    /// How long until the renewal is due; zero when it is.
    pub fn renew_in(&self, now: SystemTime) -> Duration {
        self.renew_at().duration_since(now).unwrap_or_default()
    }

    /// Seconds since the Unix epoch of `not_after` (for the expiry gauge).
    pub fn expires_unix(&self) -> i64 {
        self.not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// How long to wait before trying again after `failures` failed orders in a row: 30 s,
/// doubling to at most an hour (so Let's Encrypt's limit of five failed validations per
/// name and hour is not reached), and never past a quarter of what is left of the current
/// certificate (at least 5 s), so one near its end is retried often.
pub fn retry_delay(failures: u32, current: Option<&Lifetime>, now: SystemTime) -> Duration {
    let exponent = failures.saturating_sub(1).min(7);
    let mut delay = (Duration::from_secs(30) * 2u32.pow(exponent)).min(Duration::from_secs(3600));
    if let Some(current) = current {
        let left = current.not_after.duration_since(now).unwrap_or_default();
        delay = delay.min((left / 4).max(Duration::from_secs(5)));
    }
    delay
}

/// A certificate ready to serve: the rustls key, its lifetime and DNS names.
#[derive(Debug, Clone)]
pub struct Served {
    pub key: Arc<CertifiedKey>,
    pub lifetime: Lifetime,
    pub names: Vec<String>,
}

impl Served {
    /// Whether every one of `domains` is among the certificate's names.
    pub fn covers(&self, domains: &[String]) -> bool {
        domains.iter().all(|domain| self.names.contains(domain))
    }
}

/// Reads one PEM text holding the chain (leaf first) and its private key. The reason never
/// quotes the key.
pub fn read(pem: &[u8]) -> Result<Served, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate chain does not parse: {e}"))?;
    let leaf = chain.first().ok_or("it holds no certificate")?;
    let parsed = x509_cert::Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let validity = &parsed.tbs_certificate.validity;
    let lifetime = Lifetime {
        not_before: validity.not_before.to_system_time(),
        not_after: validity.not_after.to_system_time(),
    };
    let names = match parsed
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(|e| format!("its subject alternative names do not parse: {e}"))?
    {
        Some((_, names)) => names
            .0
            .iter()
            .filter_map(|name| match name {
                GeneralName::DnsName(dns) => Some(dns.to_string().to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "it holds no usable private key".to_string())?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    Ok(Served {
        key: Arc::new(key),
        lifetime,
        names,
    })
}

/// A new private key (ECDSA P-256) and the CSR for `domains` signed by it: (CSR DER, key PEM).
pub fn request(domains: &[String]) -> Result<(Vec<u8>, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(domains.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    Ok((csr.der().to_vec(), key.serialize_pem()))
}

/// The self-signed TLS-ALPN-01 certificate for `domain`: its only name, and the
/// `acmeIdentifier` extension holding the SHA-256 digest of the key authorization.
pub fn challenge(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let made = || -> Result<_, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key)?;
        Ok((cert.der().clone(), key.serialize_der()))
    };
    let (cert, key) = made().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    // Not `CertifiedKey::from_der`: it parses the certificate with webpki, which refuses the
    // critical `acmeIdentifier` extension that the challenge needs.
    let signer = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let day = 86_400;
        let life = Lifetime {
            not_before: at(0),
            not_after: at(90 * day),
        };
        assert_eq!(life.renew_at(), at(60 * day));
        for (now, wait) in [
            (0, 60 * day),
            (59 * day, day),
            (60 * day, 0),
            (89 * day, 0),
            (100 * day, 0),
        ] {
            assert_eq!(
                life.renew_in(at(now)),
                Duration::from_secs(wait),
                "now {now}"
            );
        }
        assert_eq!(life.expires_unix(), i64::from(90 * 86_400));
    }

    #[test]
    fn retries_back_off_to_an_hour_but_not_past_a_quarter_of_what_is_left() {
        let far = Lifetime {
            not_before: at(0),
            not_after: at(90 * 86_400),
        };
        for (failures, secs) in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (40, 3600)] {
            assert_eq!(
                retry_delay(failures, Some(&far), at(61 * 86_400)),
                Duration::from_secs(secs),
                "{failures}"
            );
            assert_eq!(
                retry_delay(failures, None, at(0)),
                Duration::from_secs(secs)
            );
        }
        let near = Lifetime {
            not_before: at(0),
            not_after: at(400),
        };
        assert_eq!(
            retry_delay(8, Some(&near), at(200)),
            Duration::from_secs(50)
        );
        assert_eq!(retry_delay(8, Some(&near), at(399)), Duration::from_secs(5));
        assert_eq!(retry_delay(8, Some(&near), at(500)), Duration::from_secs(5));
    }

    #[test]
    fn a_challenge_certificate_and_an_issued_pem_read_back() {
        let digest = [7u8; 32];
        let challenge = challenge("gateway.example.com", &digest).unwrap();
        assert_eq!(challenge.cert.len(), 1);

        let domains = vec!["a.example.com".to_string(), "b.example.com".to_string()];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(domains.clone())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}{}", cert.pem(), key.serialize_pem());
        let served = read(pem.as_bytes()).unwrap();
        assert_eq!(served.names, domains);
        assert!(served.covers(&domains[..1]));
        assert!(!served.covers(&["c.example.com".to_string()]));
        assert!(served.lifetime.not_after > served.lifetime.not_before);

        let error = read(cert.pem().as_bytes()).unwrap_err();
        assert!(error.contains("no usable private key"), "{error}");
        let other = rcgen::KeyPair::generate().unwrap();
        let error =
            read(format!("{}{}", cert.pem(), other.serialize_pem()).as_bytes()).unwrap_err();
        assert!(error.contains("does not fit"), "{error}");
        assert!(read(b"nothing").unwrap_err().contains("no certificate"));
        let (csr, key_pem) = request(&domains).unwrap();
        assert!(!csr.is_empty() && key_pem.contains("PRIVATE KEY"));
    }
}
