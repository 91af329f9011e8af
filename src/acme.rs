//! HTTPS certificates from an ACME CA (RFC 8555: Let's Encrypt or any other directory) for
//! the main listener, when `SLUICE_ACME_DOMAINS` is set.
//!
//! The challenge is TLS-ALPN-01 (RFC 8737), answered by the main listener itself, so no
//! port 80 is needed: while an order is open, [`AcmeCertificates`] (the listener's
//! certificate resolver) hands a handshake that offers `acme-tls/1` the challenge certificate
//! for its server name, and every other handshake the served certificate. The account and
//! the certificate with its key are kept in `<data dir>/acme` (`files`: directory 0700, files
//! 0600); at start a stored certificate that names every domain is served at once, without an
//! order. [`AcmeCertificates::run`] orders a new one when a third of the served one's lifetime
//! is left (`certificate`), swaps it in without a restart, and on failure keeps serving the
//! current one, logs the CA's reason at error, counts it in
//! `sluice_acme_orders_total{result="failed"}` and tries again later (30 s doubling to an
//! hour).
//!
//! Invariants: the CA is reached only through the egress guard (`client`); a private key is
//! never logged, and written only to those files; knows nothing of the HTTP server beyond
//! the resolver and acceptor it hands it.

mod certificate;
mod client;
mod files;

pub use certificate::{Lifetime, retry_delay};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::AcmeSettings;
use crate::egress::EgressPolicy;
use crate::http::tls::{self, ACME_TLS_ALPN, TlsError};
use crate::metrics::Metrics;

use certificate::Served;
use client::EgressClient;
use files::AcmeFiles;

/// The longest the renewal task sleeps before looking at the clock again (a suspended host
/// or a changed clock is noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Why an order, or reading what is kept, failed. Messages carry the CA's own reason (an
/// RFC 8555 problem document), never a key.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("cannot read or write {path}: {cause}")]
    Files { path: PathBuf, cause: String },
    #[error("SLUICE_ACME_CA_FILE {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("the HTTP client for the ACME directory: {0}")]
    Client(String),
    #[error("the stored account in {path} does not parse: {cause}")]
    Account { path: PathBuf, cause: String },
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    #[error("the CA offers no tls-alpn-01 challenge for {domain}")]
    NoChallenge { domain: String },
    #[error("the authorization for {domain} is {status}")]
    Authorization { domain: String, status: String },
    #[error("the order is {status} after its challenges were answered{detail}")]
    Order { status: String, detail: String },
    #[error("the issued certificate cannot be served: {0}")]
    Issued(String),
    #[error("cannot make a key, request or challenge certificate: {0}")]
    Keys(String),
}

/// The certificates of the main listener under ACME: the served one and the challenges of
/// an open order. Hand it to the listener with [`AcmeCertificates::acceptor`] and run
/// [`AcmeCertificates::run`] beside it.
pub struct AcmeCertificates {
    settings: AcmeSettings,
    files: AcmeFiles,
    egress: EgressPolicy,
    source: Option<IpAddr>,
    metrics: Arc<Metrics>,
    current: ArcSwapOption<CertifiedKey>,
    lifetime: Mutex<Option<Lifetime>>,
    /// Challenge certificates by lower-case domain, while an order is open.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for AcmeCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeCertificates")
            .field("domains", &self.settings.domains)
            .field("directory", &self.settings.directory)
            .finish_non_exhaustive()
    }
}

impl AcmeCertificates {
    /// Makes `<data_dir>/acme` and serves the certificate kept there when it names every
    /// domain (even one due for renewal: the task renews it at once). One that does not
    /// parse or fit is logged and replaced by the first order.
    pub fn open(
        settings: &AcmeSettings,
        data_dir: &Path,
        egress: EgressPolicy,
        source: Option<IpAddr>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<AcmeCertificates>, AcmeError> {
        let files = AcmeFiles::open(data_dir)?;
        let certificates = Arc::new(AcmeCertificates {
            settings: settings.clone(),
            files,
            egress,
            source,
            metrics,
            current: ArcSwapOption::empty(),
            lifetime: Mutex::new(None),
            challenges: Mutex::new(HashMap::new()),
        });
        // The client is built now so that a bad CA file stops start-up, not the first order.
        EgressClient::new(settings, certificates.egress.clone(), source)?;
        if let Some(pem) = certificates.files.certificate()? {
            let path = certificates.files.certificate_path();
            match certificate::read(&pem) {
                Ok(served) if served.covers(&settings.domains) => {
                    tracing::info!(
                        path = %path.display(),
                        expires_unix = served.lifetime.expires_unix(),
                        "Serving the ACME certificate kept in the data directory"
                    );
                    certificates.serve(served);
                }
                Ok(_) => tracing::info!(
                    path = %path.display(),
                    "The kept ACME certificate does not name every one of SLUICE_ACME_DOMAINS; ordering a new one"
                ),
                Err(reason) => tracing::warn!(
                    path = %path.display(),
                    reason = %reason,
                    "The kept ACME certificate cannot be served; ordering a new one"
                ),
            }
        }
        Ok(certificates)
    }

    /// An acceptor serving these certificates and answering TLS-ALPN-01 challenges.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        tls::acceptor(self.clone(), true)
    }

    /// The lifetime of the served certificate, if there is one.
    pub fn lifetime(&self) -> Option<Lifetime> {
        *self.lifetime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn serve(&self, served: Served) {
        self.metrics
            .tls_certificate_expires(served.lifetime.expires_unix());
        *self.lifetime.lock().unwrap_or_else(PoisonError::into_inner) = Some(served.lifetime);
        self.current.store(Some(served.key));
    }

    /// Orders a certificate whenever one is missing or due, forever (abort the task to stop).
    pub async fn run(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            let wait = self
                .lifetime()
                .map_or(Duration::ZERO, |life| life.renew_in(SystemTime::now()));
            if !wait.is_zero() {
                tokio::time::sleep(wait.min(MAX_SLEEP)).await;
                continue;
            }
            let renewal = self.lifetime().is_some();
            let result = self.order().await;
            self.challenges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            match result {
                Ok(lifetime) => {
                    failures = 0;
                    self.metrics.acme_order("issued");
                    tracing::info!(
                        domains = %self.settings.domains.join(","),
                        expires_unix = lifetime.expires_unix(),
                        renewal,
                        "ACME certificate issued; serving it"
                    );
                }
                Err(error) => {
                    failures += 1;
                    self.metrics.acme_order("failed");
                    let retry = retry_delay(failures, self.lifetime().as_ref(), SystemTime::now());
                    if renewal {
                        tracing::error!(
                            error = %error,
                            retry_secs = retry.as_secs(),
                            "ACME renewal failed; still serving the current certificate"
                        );
                    } else {
                        tracing::error!(
                            error = %error,
                            retry_secs = retry.as_secs(),
                            "ACME order failed; no certificate to serve yet, so HTTPS handshakes fail"
                        );
                    }
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// One order: the account (made and kept on first use), a TLS-ALPN-01 challenge per
    /// domain, a CSR for a new key, the certificate; then it is kept and served.
    async fn order(&self) -> Result<Lifetime, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .settings
            .domains
            .iter()
            .map(|domain| Identifier::Dns(domain.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let domain = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Authorization {
                        domain,
                        status: format!("{status:?}").to_ascii_lowercase(),
                    });
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::NoChallenge {
                    domain: domain.clone(),
                })?;
            let digest = challenge.key_authorization().digest();
            let answer =
                certificate::challenge(&domain, digest.as_ref()).map_err(AcmeError::Keys)?;
            self.challenges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(domain.to_ascii_lowercase(), answer);
            challenge.set_ready().await?;
        }
        let patience = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&patience).await?;
        if status != OrderStatus::Ready {
            let mut detail = order
                .state()
                .error
                .as_ref()
                .map(|problem| format!(": {problem}"))
                .unwrap_or_default();
            // Why a challenge failed is on the challenge (the CA's validation error).
            let mut authorizations = order.authorizations();
            while detail.is_empty()
                && let Some(Ok(mut authorization)) = authorizations.next().await
            {
                if let Ok(state) = authorization.refresh().await
                    && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
                {
                    detail = format!(": {}: {problem}", state.identifier());
                }
            }
            return Err(AcmeError::Order {
                status: format!("{status:?}").to_ascii_lowercase(),
                detail,
            });
        }
        let (csr, key_pem) = certificate::request(&self.settings.domains)
            .map_err(|e| AcmeError::Keys(e.to_string()))?;
        order.finalize_csr(&csr).await?;
        let chain = order.poll_certificate(&patience).await?;
        let pem = format!("{}\n{key_pem}", chain.trim_end());
        let served = certificate::read(pem.as_bytes()).map_err(AcmeError::Issued)?;
        self.files.save_certificate(pem.as_bytes())?;
        let lifetime = served.lifetime;
        self.serve(served);
        Ok(lifetime)
    }

    /// The kept account when it belongs to the configured directory, else a new one (kept).
    async fn account(&self) -> Result<Account, AcmeError> {
        let http = || EgressClient::new(&self.settings, self.egress.clone(), self.source);
        if let Some(json) = self.files.account()? {
            let kept: KeptAccount =
                serde_json::from_slice(&json).map_err(|e| AcmeError::Account {
                    path: PathBuf::from("acme/account.json"),
                    cause: e.to_string(),
                })?;
            if kept.directory == self.settings.directory {
                return Ok(Account::builder_with_http(Box::new(http()?))
                    .from_credentials(kept.credentials)
                    .await?);
            }
            tracing::info!(
                directory = %self.settings.directory,
                "The kept ACME account belongs to another directory; making a new one"
            );
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(Box::new(http()?))
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await?;
        let kept = KeptAccount {
            directory: self.settings.directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec(&kept).map_err(|e| AcmeError::Account {
            path: PathBuf::from("acme/account.json"),
            cause: e.to_string(),
        })?;
        self.files.save_account(&json)?;
        tracing::info!(directory = %self.settings.directory, "ACME account made and kept");
        Ok(account)
    }
}

/// `account.json`: the directory the account belongs to, and its credentials (key included).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl ResolvesServerCert for AcmeCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&name)
                .cloned();
        }
        self.current.load_full()
    }
}
