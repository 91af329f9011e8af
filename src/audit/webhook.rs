//! A webhook client for the audit log's sinks: the audit webhook (`SLUICE_AUDIT_WEBHOOK_URL`,
//! a batch of entries as JSON lines, `application/x-ndjson`) and the alert webhook
//! (`SLUICE_ALERT_WEBHOOK_URL`, one alert as JSON, [`super::alerts::notify`]), each with
//! `Authorization: Bearer` when its token is set.
//!
//! Every connection goes to an address the egress guard judged: names resolve through
//! [`crate::egress::resolve_checked`] (reqwest's resolver), and an IP literal in the URL is
//! judged when the webhook is set up and before each request. So the webhook cannot be
//! aimed at a cloud metadata address, loopback or a private network unless
//! `SLUICE_EGRESS_ALLOW` admits it. No proxies, no redirects. A 2xx answer delivers the
//! batch; 408, 429, 5xx, a timeout or a connection failure is retried; any other answer
//! refuses it for good. Never logs the URL (it may carry a key in its query) or the token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::AuditError;
use super::export::Delivery;
use crate::egress::{self, EgressPolicy};
use crate::vault::SecretString;

/// How long one POST may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's client.
pub struct Webhook {
    client: reqwest::Client,
    url: url::Url,
    token: Option<SecretString>,
    /// The URL's host when it is an IP literal (reqwest connects to it without resolving).
    literal: Option<IpAddr>,
    policy: Arc<EgressPolicy>,
}

impl Webhook {
    /// Sets up the client for the URL of the variable `var` (named in errors, never the
    /// URL); an IP literal in `url` that the egress `policy` refuses is
    /// refused here, before the instance serves.
    pub fn new(
        var: &'static str,
        url: &url::Url,
        token: Option<SecretString>,
        policy: EgressPolicy,
        source: Option<IpAddr>,
    ) -> Result<Webhook, AuditError> {
        let policy = Arc::new(policy);
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            policy
                .check(ip)
                .map_err(|error| AuditError::Webhook(var, error.to_string()))?;
        }
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(egress::CheckedResolver::new(policy.clone()))
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        if let Some(source) = source {
            builder = builder.local_address(source);
        }
        let client = builder
            .build()
            .map_err(|error| AuditError::Webhook(var, error.without_url().to_string()))?;
        Ok(Webhook {
            client,
            url: url.clone(),
            token,
            literal,
            policy,
        })
    }

    /// POSTs one body of type `content_type`.
    pub async fn post(&self, body: Vec<u8>, content_type: &'static str) -> Delivery {
        if let Some(ip) = self.literal
            && let Err(error) = self.policy.check(ip)
        {
            return Delivery::Retry(error.to_string());
        }
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Delivery::Delivered
                } else if status.as_u16() == 408
                    || status.as_u16() == 429
                    || status.is_server_error()
                {
                    Delivery::Retry(format!("the webhook answered {}", status.as_u16()))
                } else {
                    Delivery::Refused(format!("the webhook answered {}", status.as_u16()))
                }
            }
            Err(error) => Delivery::Retry(describe(error)),
        }
    }
}

/// The error without the URL, with its causes (an egress refusal says which address).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
