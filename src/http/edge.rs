//! The edge middleware, just inside the request-id layer: resolves the client address
//! ([`ClientIp`], trusting forwarding headers only from `SLUICE_TRUSTED_PROXIES`), applies
//! the instance-wide per-IP rate limit (`SLUICE_RATE_LIMIT_PER_IP`) to every endpoint but
//! the health checks, and fills the baseline security headers on every answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::ApiError;
use super::server::PeerAddr;
use crate::policy::client_ip::{self, ClientIp};
use crate::policy::headers::apply_baseline;
use crate::policy::rate_limit::{Decision, RateLimiter};
use crate::spec::rate::RateRule;

/// What the edge needs.
pub struct EdgeState {
    pub trusted_proxies: Vec<IpNet>,
    pub per_ip: Option<RateRule>,
    pub limiter: Arc<dyn RateLimiter>,
    /// Whether connections are TLS (adds `Strict-Transport-Security`).
    pub tls: bool,
    /// The origin of `SLUICE_PUBLIC_URL`, for same-origin checks.
    pub public_origin: Option<String>,
}

pub async fn middleware(
    State(edge): State<Arc<EdgeState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ip = client_ip::resolve(peer, request.headers(), &edge.trusted_proxies);
    request.extensions_mut().insert(ClientIp(ip));
    let health = matches!(request.uri().path(), "/healthz" | "/readyz");
    let mut response = match edge.per_ip {
        Some(rule) if !health => match edge
            .limiter
            .check(&format!("edge:{}", client_ip::bucket_key(ip)), rule)
        {
            Decision::Allow => next.run(request).await,
            Decision::Deny { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many requests from this address (limit {rule}); retry later"),
                )
            }
            .into_response(),
        },
        _ => next.run(request).await,
    };
    apply_baseline(response.headers_mut(), edge.tls);
    response
}
