//! Per-app edge policy around the view plane, and the CSRF/CORS guard of the account and
//! admin routes. Runs before the handler, so a refused request never reaches a datasource.
//!
//! For `/v1/apps/{app}/queries/{query}`: the app's IP allowlist (403 `ip_not_allowed`, with
//! an audit event), CORS preflights (204 with the app's CORS headers, or 403
//! `cors_refused`), the CSRF check on cookie-authenticated writes (403 `csrf_refused`), and
//! on the way out the app's security headers and CORS headers.
//!
//! For `/v1/auth/*` and `/v1/admin/*`: the same CSRF check, where an allowed page is this
//! instance or an origin some app lists; CORS answers for those origins on `/v1/auth/*` only
//! (the admin API is same-origin).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use crate::http::ApiError;
use crate::policy::client_ip::ClientIp;
use crate::policy::cors::{self, CorsPolicy};

/// Middleware for the query route.
pub async fn app_policy(
    State(state): State<Arc<GatewayState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
    next: Next,
) -> Response {
    // The app name as the handler sees it: percent-decoded by the same extractor, so that
    // `/v1/apps/%73hop/...` meets the policy of `shop` (reading the raw path let an encoded
    // name skip the allowlist and the CSRF check).
    let app_name = path.map(|Path((app, _))| app).unwrap_or_default();
    // Unknown apps get the default policy (any address, same-origin only), so that the edge
    // answers for them exactly as for an app without a policy: a private app's name cannot
    // be probed with preflights or cross-site writes. The handler then answers 404.
    let policy = state
        .snapshot()
        .catalog
        .apps
        .get(&app_name)
        .map(|app| app.policy.clone())
        .unwrap_or_default();
    let ip = ClientIp::of(&request);
    if !policy.ip_allowed(ip) {
        let client = crate::auth::routes::client_info(Some(&ClientIp(ip)), request.headers());
        state
            .audit
            .ip_refused(&client, serde_json::json!({ "app": app_name }))
            .await;
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "this app does not accept requests from your network",
        )
        .into_response();
    }
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if request.method() == Method::OPTIONS {
        return match policy
            .cors
            .as_ref()
            .map(|c| c.preflight(request.headers(), &Method::POST))
        {
            Some(Ok(headers)) => {
                let mut response = StatusCode::NO_CONTENT.into_response();
                response.headers_mut().extend(headers);
                response
            }
            Some(Err(reason)) => cors_refused(reason),
            None => cors_refused("this app does not allow cross-origin calls"),
        };
    }
    if carries_session_cookie(&state, request.headers())
        && let Err(reason) = cors::check_csrf(
            request.method(),
            request.headers(),
            scheme(&state),
            state.edge.public_origin.as_deref(),
            policy.cors.as_ref(),
        )
    {
        return csrf_refused(reason);
    }
    let mut response = next.run(request).await;
    policy.headers.apply(response.headers_mut());
    if let Some(cors) = &policy.cors {
        cors.response_headers(origin.as_deref(), response.headers_mut());
    }
    response
}

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
pub async fn account_policy(
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

fn scheme(state: &GatewayState) -> &'static str {
    if state.edge.tls { "https" } else { "http" }
}

fn carries_session_cookie(state: &GatewayState, headers: &HeaderMap) -> bool {
    // A request that authenticates with a bearer key is not riding on ambient credentials.
    !headers.contains_key(header::AUTHORIZATION) && state.auth.cookie.read(headers).is_some()
}

fn cors_refused(reason: &'static str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "cors_refused", reason).into_response()
}

fn csrf_refused(reason: &'static str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "csrf_refused", reason).into_response()
}
