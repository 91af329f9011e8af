//! The edge middleware, just inside the request-id middleware (served together as one layer,
//! [`front`]): resolves the client address
//! ([`ClientIp`], trusting forwarding headers only from `SLUICE_TRUSTED_PROXIES`), applies
//! the instance-wide per-IP rate limit (`SLUICE_RATE_LIMIT_PER_IP`) to every endpoint but
//! the health checks (its refusals are counted in the metrics as limit `address`), and fills
//! the baseline security headers on every answer.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::server::PeerAddr;
use crate::http::{ApiError, request_id};
use crate::policy::Refusal;
use crate::policy::client_ip::{self, ClientIp};
use crate::policy::edge::EdgeState;
use crate::policy::headers::apply_baseline;
use crate::policy::rate_limit::Decision;
use crate::policy::refusal::RateLimited;

/// The request-id middleware with this one just inside it, as one layer: what the main
/// listener serves. Does exactly what the two did as separate layers, in the same order.
pub async fn front(State(edge): State<Arc<EdgeState>>, request: Request, next: Next) -> Response {
    request_id::around(request, |request| middleware(State(edge), request, next)).await
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
            .await
        {
            Decision::Allow => next.run(request).await,
            Decision::Deny { retry_after_secs } => {
                edge.metrics.rate_limited("address");
                ApiError::from(Refusal::RateLimited {
                    limit: RateLimited::Address(rule),
                    retry_after_secs,
                })
                .into_response()
            }
        },
        _ => next.run(request).await,
    };
    apply_baseline(response.headers_mut(), edge.tls);
    response
}
