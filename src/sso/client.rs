//! The HTTP client SSO talks to providers with: discovery documents, key sets and the token
//! endpoint. reqwest on rustls (aws-lc-rs), no proxies, no redirects, short timeouts, and
//! every connection to an address the egress guard judged ([`egress::CheckedResolver`]; an
//! IP literal in a URL is judged here, since reqwest connects to it without resolving).
//! Answers are read up to [`MAX_BODY_BYTES`] and must be JSON objects.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::egress::{self, EgressPolicy};

/// Largest discovery document, key set or token answer read.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long one request to a provider may take.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} answered {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
}

/// The providers' HTTP client (see the module doc).
#[derive(Clone)]
pub struct SsoClient {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
}

impl SsoClient {
    pub fn new(policy: EgressPolicy) -> Result<SsoClient, ClientError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(egress::CheckedResolver::new(policy.clone()))
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Request {
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(SsoClient { client, policy })
    }

    /// GET a JSON object.
    pub async fn get_json(&self, url: &str) -> Result<Value, ClientError> {
        self.check_literal(url)?;
        let request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(url, request).await
    }

    /// POST a form (the token endpoint), with HTTP Basic client authentication when
    /// `basic` is given; answers a JSON object.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Value, ClientError> {
        self.check_literal(url)?;
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form);
        if let Some((user, password)) = basic {
            // RFC 6749 2.3.1: both parts form-encoded before Basic.
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(encode(user), Some(encode(password)));
        }
        self.send(url, request).await
    }

    fn check_literal(&self, url: &str) -> Result<(), ClientError> {
        let parsed = url::Url::parse(url).map_err(|e| ClientError::Request {
            url: url.into(),
            reason: e.to_string(),
        })?;
        if let Some(url::Host::Ipv4(ip)) = parsed.host() {
            self.policy.check(ip.into()).map_err(|e| refused(url, e))?;
        }
        if let Some(url::Host::Ipv6(ip)) = parsed.host() {
            self.policy.check(ip.into()).map_err(|e| refused(url, e))?;
        }
        Ok(())
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ClientError> {
        let failed = |e: reqwest::Error| ClientError::Request {
            url: url.into(),
            reason: describe(&e),
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ClientError::Request {
                    url: url.into(),
                    reason: format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            // The provider's own error code only (RFC 6749 5.2), never the body: it may
            // echo what was sent.
            let detail = value
                .as_ref()
                .and_then(|v| v.get("error"))
                .and_then(Value::as_str)
                .filter(|code| code.bytes().all(|b| b.is_ascii_graphic()) && code.len() <= 64)
                .unwrap_or("no error code")
                .to_owned();
            return Err(ClientError::Status {
                url: url.into(),
                status: status.as_u16(),
                detail,
            });
        }
        match value {
            Some(value @ Value::Object(_)) => Ok(value),
            _ => Err(ClientError::Request {
                url: url.into(),
                reason: "the answer is not a JSON object".into(),
            }),
        }
    }
}

fn refused(url: &str, error: egress::EgressError) -> ClientError {
    ClientError::Request {
        url: url.into(),
        reason: error.to_string(),
    }
}

/// reqwest's error with its causes (the egress refusal is a cause of a connect error).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
