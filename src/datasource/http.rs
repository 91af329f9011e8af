//! HTTP API datasources: a reqwest client per datasource that only reaches addresses the
//! egress guard allows, with credentials added when a request is sent.
//!
//! - Every connection goes through a resolver that checks each resolved address
//!   ([`egress::resolve_checked`]); reqwest connects to those addresses only. Hosts written as
//!   IP literals skip resolvers, so they are checked here before each request.
//! - System proxies are ignored; redirects are off unless the datasource allows some, and
//!   then only to the same origin (so credentials never travel to another host), each hop
//!   re-checked.
//! - The upstream's status, a safe set of its headers and its body come back in an
//!   envelope; its address and any credential never do: an upstream that echoes the
//!   request has every form of the credential redacted from those headers and the body
//!   ([`scrub`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

mod scrub;

use super::{DatasourceError, PoolDefaults, PoolError};
use crate::egress::{self, EgressPolicy, HostSpec};
use crate::spec::{HttpAuthSpec, HttpDatasourceSpec};
use crate::statement::{RenderedBody, RenderedHttp};
use crate::vault::SecretString;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_RESPONSE: usize = 1024 * 1024;

/// Upstream response headers passed back to clients; all others are dropped.
pub const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "content-language",
    "etag",
    "last-modified",
    "cache-control",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// The credential to attach at send time.
enum Credential {
    None,
    Bearer(SecretString),
    Basic {
        user: String,
        password: SecretString,
    },
    HeaderKey {
        name: HeaderName,
        value: SecretString,
    },
    QueryKey {
        name: String,
        value: SecretString,
    },
}

/// One HTTP datasource.
pub struct HttpSource {
    name: Arc<str>,
    client: reqwest::Client,
    base: Url,
    host: String,
    policy: Arc<EgressPolicy>,
    headers: HeaderMap,
    credential: Credential,
    /// Finds the credential in what the upstream sends back (`None`: no credential).
    scrubber: Option<scrub::Scrubber>,
    max_response_bytes: usize,
    /// Source addresses and connect timeout, as the client has them (for the datasource
    /// test, which opens its own TCP connection first).
    bind: Vec<std::net::IpAddr>,
    connect_timeout: Duration,
}

/// Why the datasource test's request to the base URL got no answer.
#[derive(Debug)]
pub(crate) enum BaseRequestError {
    /// The sealed API key is not a valid header value.
    Credential,
    Request(reqwest::Error),
}

/// The secrets of an HTTP datasource, opened by the vault.
pub struct HttpSecrets {
    pub secret: Option<SecretString>,
}

/// What came back from the upstream, ready to send to the client.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as a JSON value's text (JSON embedded; other text as a JSON string;
    /// binary as a base64 JSON string).
    pub body_json: Vec<u8>,
}

impl HttpSource {
    pub fn new(
        name: &str,
        spec: &HttpDatasourceSpec,
        secret: Option<SecretString>,
        defaults: &PoolDefaults,
    ) -> Result<HttpSource, PoolError> {
        let config_error = |message: String| PoolError::Config {
            datasource: name.to_string(),
            message,
        };
        spec.check().map_err(config_error)?;
        let base = spec.base_url().map_err(config_error)?;
        let host = base.host_str().unwrap_or_default().to_string();
        let policy = Arc::new(super::egress_policy(name, &spec.egress_allow, defaults)?);
        let origin = base.origin();
        let max_redirects = spec.max_redirects.unwrap_or(0);
        let redirect = if max_redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max_redirects {
                    attempt.error("too many redirects")
                } else if attempt.url().origin() != origin {
                    // Credentials were attached for this origin only; never carry them on.
                    attempt.error("redirect to another origin refused")
                } else {
                    attempt.follow()
                }
            })
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect)
            .dns_resolver(egress::CheckedResolver::new(policy.clone()))
            .timeout(
                spec.timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(DEFAULT_TIMEOUT),
            )
            .connect_timeout(defaults.connect_timeout)
            .pool_max_idle_per_host(defaults.pool_size);
        if let Some(source) = defaults.egress_bind.first() {
            builder = builder.local_address(*source);
        }
        let client = builder
            .build()
            .map_err(|e| config_error(format!("HTTP client: {}", e.without_url())))?;
        let mut headers = HeaderMap::new();
        for (header, value) in &spec.headers {
            let header = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| config_error(format!("headers.{header}: invalid name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| config_error(format!("headers.{header}: invalid value")))?;
            headers.insert(header, value);
        }
        let missing = || config_error("auth: the sealed secret is missing".into());
        let credential = match &spec.auth {
            None => Credential::None,
            Some(HttpAuthSpec::Bearer { .. }) => Credential::Bearer(secret.ok_or_else(missing)?),
            Some(HttpAuthSpec::Basic { user, .. }) => Credential::Basic {
                user: user.clone(),
                password: secret.ok_or_else(missing)?,
            },
            Some(HttpAuthSpec::ApiKey {
                header: Some(header),
                ..
            }) => Credential::HeaderKey {
                name: HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| config_error("auth.api_key.header: invalid name".into()))?,
                value: secret.ok_or_else(missing)?,
            },
            Some(HttpAuthSpec::ApiKey { query, .. }) => Credential::QueryKey {
                name: query.clone().unwrap_or_default(),
                value: secret.ok_or_else(missing)?,
            },
        };
        let scrubber = match &credential {
            Credential::None => None,
            Credential::Bearer(secret)
            | Credential::HeaderKey { value: secret, .. }
            | Credential::QueryKey { value: secret, .. } => {
                scrub::Scrubber::new([secret.expose()], None)
            }
            Credential::Basic { user, password } => scrub::Scrubber::new(
                [password.expose()],
                Some(format!("{user}:{}", password.expose())),
            ),
        };
        Ok(HttpSource {
            name: name.into(),
            client,
            base,
            host,
            policy,
            headers,
            credential,
            scrubber,
            max_response_bytes: spec.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE),
            bind: defaults.egress_bind.clone(),
            connect_timeout: defaults.connect_timeout,
        })
    }

    /// The base URL, its host and port, the egress policy, the source addresses and the
    /// connect timeout (for the datasource test).
    pub(crate) fn target(
        &self,
    ) -> (
        &Url,
        &str,
        u16,
        &EgressPolicy,
        &[std::net::IpAddr],
        Duration,
    ) {
        (
            &self.base,
            &self.host,
            self.base.port_or_known_default().unwrap_or(443),
            &self.policy,
            &self.bind,
            self.connect_timeout,
        )
    }

    /// GETs the base URL with the datasource's headers and credential and returns the
    /// status; the body is not read. For the datasource test.
    pub(crate) async fn get_base(&self) -> Result<u16, BaseRequestError> {
        let mut url = self.base.clone();
        if let Credential::QueryKey { name, value } = &self.credential {
            url.query_pairs_mut().append_pair(name, value.expose());
        }
        let builder = self.client.get(url).headers(self.headers.clone());
        let builder = self
            .with_credential(builder)
            .map_err(|_| BaseRequestError::Credential)?;
        let response = builder
            .send()
            .await
            .map_err(|e| BaseRequestError::Request(e.without_url()))?;
        Ok(response.status().as_u16())
    }

    /// Adds the credential (but a query-string key, which is part of the URL).
    fn with_credential(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, DatasourceError> {
        Ok(match &self.credential {
            Credential::None | Credential::QueryKey { .. } => builder,
            Credential::Bearer(token) => builder.bearer_auth(token.expose()),
            Credential::Basic { user, password } => {
                builder.basic_auth(user, Some(password.expose()))
            }
            Credential::HeaderKey { name, value } => {
                let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                    DatasourceError::Internal {
                        class: "credential_header",
                    }
                })?;
                value.set_sensitive(true);
                builder.header(name.clone(), value)
            }
        })
    }

    /// Sends a rendered request and reads the reply (bounded by `max_response_bytes`).
    pub async fn send(&self, request: RenderedHttp) -> Result<HttpReply, DatasourceError> {
        // reqwest does not ask resolvers about IP literals: check those here.
        if let Ok(HostSpec::Ip(ip)) = egress::parse_host(&self.host)
            && let Err(error) = self.policy.check(ip)
        {
            return Err(super::classify_egress(&self.name, &error));
        }
        let mut url = self.base.clone();
        if !request.path.is_empty() {
            let joined = format!("{}{}", url.path().trim_end_matches('/'), request.path);
            url.set_path(&joined);
        }
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &request.query {
                pairs.append_pair(name, value);
            }
            if let Credential::QueryKey { name, value } = &self.credential {
                pairs.append_pair(name, value.expose());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut builder = self.client.request(request.method.clone(), url);
        let mut headers = self.headers.clone();
        for (name, value) in request.headers {
            headers.insert(name, value);
        }
        builder = builder.headers(headers);
        builder = self.with_credential(builder)?;
        builder = match request.body {
            None => builder,
            Some(RenderedBody::Json(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes),
            Some(RenderedBody::Form(pairs)) => builder.form(&pairs),
            Some(RenderedBody::Text(text)) => builder
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(text),
        };
        let response = builder.send().await.map_err(|e| self.classify(e))?;
        let status = response.status().as_u16();
        let mut headers = Vec::new();
        for name in FORWARDED_HEADERS {
            if let Some(value) = response.headers().get(*name)
                && let Ok(value) = value.to_str()
            {
                let value = match &self.scrubber {
                    Some(scrubber) => scrubber.text(value),
                    None => value.to_string(),
                };
                headers.push((name.to_string(), value));
            }
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json" || essence.ends_with("+json")
            })
            .unwrap_or(false);
        if response
            .content_length()
            .is_some_and(|length| length > self.max_response_bytes as u64)
        {
            return Err(self.too_large());
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.classify(e))?;
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if let Some(scrubber) = &self.scrubber {
            body = scrubber.body(body, is_json);
        }
        Ok(HttpReply {
            status,
            headers,
            body_json: body_as_json(body, is_json),
        })
    }

    fn too_large(&self) -> DatasourceError {
        tracing::warn!(datasource = %self.name, limit = self.max_response_bytes, "Upstream response over the size limit");
        DatasourceError::UpstreamTooLarge
    }

    /// Maps a reqwest error. The URL is stripped before logging: it can carry a query-string
    /// API key and the caller's values.
    fn classify(&self, error: reqwest::Error) -> DatasourceError {
        let error = error.without_url();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(cause) = source {
            if let Some(egress) = cause.downcast_ref::<egress::EgressError>() {
                return super::classify_egress(&self.name, egress);
            }
            source = cause.source();
        }
        if error.is_timeout() {
            tracing::warn!(datasource = %self.name, "Upstream timed out");
            return DatasourceError::Timeout;
        }
        if error.is_redirect() {
            tracing::warn!(datasource = %self.name, error = %error, "Upstream redirect refused");
            return DatasourceError::Unavailable { class: "redirect" };
        }
        tracing::warn!(datasource = %self.name, error = %error, "Upstream request failed");
        DatasourceError::Unavailable { class: "upstream" }
    }
}

/// The reply body as JSON text: JSON embedded if it parses, UTF-8 text as a string, anything
/// else as base64.
fn body_as_json(body: Vec<u8>, is_json: bool) -> Vec<u8> {
    if body.is_empty() {
        return b"null".to_vec();
    }
    if is_json && serde_json::from_slice::<&serde_json::value::RawValue>(&body).is_ok() {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + 2);
    match std::str::from_utf8(&body) {
        Ok(text) => super::json::string(&mut out, text),
        Err(_) => super::json::bytes(&mut out, &body),
    }
    out
}
