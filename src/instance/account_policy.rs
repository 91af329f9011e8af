//! The CSRF/CORS guard of the account (`/v1/auth/*`) and admin (`/v1/admin/*`) routes.
//!
//! Cookie-authenticated writes, and writes a browser says come from another page, need an
//! allowed origin: this instance, or an origin some app lists. CORS answers for app-listed
//! origins only on the few account routes an app on another site needs to sign a user in
//! and out; the admin API is same-origin only.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::gateway::GatewayState;
use crate::gateway::edge_policy::{carries_session_cookie, cors_refused, csrf_refused, scheme};
use crate::policy::cors::{self, CorsPolicy};

/// The account routes an origin listed by an app may call cross-origin.
const CROSS_ORIGIN_ACCOUNT_PATHS: &[&str] = &[
    "/v1/auth/login",
    "/v1/auth/logout",
    "/v1/auth/me",
    "/v1/auth/password-reset",
    "/v1/auth/signup",
];

/// Middleware for `/v1/auth/*` (`cors_allowed`: answer CORS for app-listed origins) and
/// `/v1/admin/*` (same-origin only).
pub async fn middleware(
    State((state, cors_allowed)): State<(Arc<GatewayState>, bool)>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Cross-origin answers only for what an app on another site needs to sign a user in
    // and out; password, email, MFA, key and session management stay same-origin.
    let cross_origin_ok =
        cors_allowed && CROSS_ORIGIN_ACCOUNT_PATHS.contains(&request.uri().path());
    let listed = cross_origin_ok
        .then(|| origin.as_deref().and_then(|o| listed_origins(&state, o)))
        .flatten();
    if request.method() == Method::OPTIONS {
        return match &listed {
            Some(policy) => match account_preflight(policy, request.headers()) {
                Ok(headers) => {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    response.headers_mut().extend(headers);
                    response
                }
                Err(reason) => cors_refused(reason),
            },
            None => cors_refused("this origin may not call the account API"),
        };
    }
    // Writes with the session cookie are checked; so are writes a browser says come from
    // another page (an Origin header), cookie or not, which stops login CSRF (signing a
    // victim's browser into the attacker's account) and cross-site reset or signup floods.
    let cross_page = origin.is_some() && cors::is_write(request.method());
    if (carries_session_cookie(&state, request.headers()) || cross_page)
        && let Err(reason) = cors::check_csrf(
            request.method(),
            request.headers(),
            scheme(&state),
            state.edge.public_origin.as_deref(),
            listed.as_ref(),
        )
    {
        return csrf_refused(reason);
    }
    let mut response = next.run(request).await;
    if let Some(policy) = &listed {
        policy.response_headers(origin.as_deref(), response.headers_mut());
    }
    response
}

/// A one-origin policy when some app lists `origin` exactly (never for `*`).
fn listed_origins(state: &GatewayState, origin: &str) -> Option<CorsPolicy> {
    let normal = cors::normalize_origin(origin)?;
    let snapshot = state.snapshot();
    let listed = snapshot.catalog.apps.values().any(|app| {
        app.policy
            .cors
            .as_ref()
            .is_some_and(|c| !c.any && c.origins.contains(&normal))
    });
    listed.then(|| CorsPolicy {
        origins: [normal].into_iter().collect(),
        any: false,
        allow_headers: vec!["content-type".into(), "authorization".into()],
        max_age_secs: 600,
    })
}

fn account_preflight(policy: &CorsPolicy, request: &HeaderMap) -> Result<HeaderMap, &'static str> {
    let method = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| v.to_str().ok())
        .and_then(|m| m.parse::<Method>().ok())
        .ok_or("a preflight needs Access-Control-Request-Method")?;
    if !matches!(method, Method::GET | Method::POST | Method::DELETE) {
        return Err("this method is not allowed cross-origin");
    }
    let mut headers = policy.preflight(request, &method)?;
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE"),
    );
    Ok(headers)
}
