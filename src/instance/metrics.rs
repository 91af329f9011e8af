//! `GET /metrics`, the Prometheus scrape, in the two ways an instance serves it (docs/DEPLOY.md,
//! "Metrics"): on a listener of its own without authentication (`SLUICE_METRICS_LISTEN`, for
//! a loopback or pod-network address), and on the main listener behind a bearer token
//! (`SLUICE_METRICS_TOKEN`). With neither, `/metrics` is an unknown path.
//!
//! On the main listener a missing or wrong token is answered exactly as an unknown path
//! (404 `not_found`, whatever the method), so the answer does not tell whether metrics are
//! on; the token is compared in constant time. The per-address rate limit of the edge
//! applies, as on every endpoint but the health checks.
//!
//! A scrape reads the served snapshot (catalog revision, pool use) and renders
//! [`Metrics`](crate::metrics::Metrics); nothing in it is a value a client sent.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::gateway::GatewayState;
use crate::http::{ApiError, method_not_allowed, no_such_endpoint, request_id};
use crate::vault::SecretString;

/// The path, on either listener.
const PATH: &str = "/metrics";

/// The scrape itself.
fn scrape(state: &GatewayState) -> Response {
    let snapshot = state.snapshot();
    let text = state.metrics.render(&snapshot.reading());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// `/metrics` for the main listener, behind `token`.
pub(super) fn token_routes(state: Arc<GatewayState>, token: SecretString) -> Router {
    Router::new()
        .route(PATH, any(guarded))
        .with_state((state, Arc::new(token)))
}

async fn guarded(
    State((state, token)): State<(Arc<GatewayState>, Arc<SecretString>)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !presented.is_some_and(|presented| token.matches(presented)) {
        tracing::debug!("A /metrics request without the metrics token answered as unknown");
        return Err(no_such_endpoint().await);
    }
    if method != Method::GET {
        return Err(method_not_allowed().await);
    }
    Ok(scrape(&state))
}

/// The whole router of the metrics listener: `GET /metrics`, and JSON 404/405 for the rest.
/// Request ids and the rendering of errors as on the main listener; no edge policy (it is
/// meant for a private address, and Prometheus alone).
pub(super) fn listener_router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route(PATH, get(open))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(request_id::middleware))
}

async fn open(State(state): State<Arc<GatewayState>>) -> Response {
    scrape(&state)
}
