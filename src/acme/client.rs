//! The HTTP client the ACME protocol runs on: reqwest (rustls on aws-lc-rs, no proxies, no
//! redirects) whose every connection goes to an address the egress guard judged. Names are
//! resolved by [`crate::egress::resolve_checked`] (reqwest's resolver); an IP literal in the
//! directory's URLs, which reqwest connects to without resolving, is judged here first. The
//! directory's HTTPS certificate is checked against `SLUICE_ACME_CA_FILE` when it is set, else
//! the usual public roots.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

use crate::config::AcmeSettings;
use crate::egress::{self, EgressPolicy};

use super::AcmeError;

/// How long one request to the CA may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The ACME client's transport (see the module doc).
pub struct EgressClient {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl EgressClient {
    pub fn new(
        settings: &AcmeSettings,
        policy: EgressPolicy,
        source: Option<IpAddr>,
    ) -> Result<EgressClient, AcmeError> {
        let policy = Arc::new(policy);
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(egress::CheckedResolver::new(policy.clone()))
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| AcmeError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| AcmeError::CaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if certificates.is_empty() {
                return Err(AcmeError::CaFile {
                    path: path.clone(),
                    reason: "it holds no certificate".into(),
                });
            }
            builder = builder.tls_certs_only(certificates);
        }
        if let Some(source) = source {
            builder = builder.local_address(source);
        }
        let client = builder
            .build()
            .map_err(|e| AcmeError::Client(e.to_string()))?;
        Ok(EgressClient { client, policy })
    }
}

impl HttpClient for EgressClient {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let policy = self.policy.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            if let Some(host) = parts.uri.host()
                && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse()
            {
                policy.check(ip).map_err(other)?;
            }
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(other)?;
            let mut answer = http::Response::new(Full::new(body));
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(BytesResponse::from(answer))
        })
    }
}

fn other(error: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(error))
}
