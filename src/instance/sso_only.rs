//! SSO-only mode (`SLUICE_SSO_ONLY`): every local sign-in path answers one refusal.
//!
//! The local paths are password sign-in and re-authentication, signup, password reset,
//! password change, email change (and the pages their mailed links open), and local user
//! creation by the admin API. They are refused before anything else looks at the request
//! (body, cookie, CSRF), so every one answers byte for byte the same, whatever is sent.
//! What stays open: sign-in through the providers, sessions and sign-out, MFA (a second
//! factor on top of the provider's), API keys, and the admin API's other routes. The CLI
//! (`sluice user create`, `sluice user reset-password`) stays as break-glass for admins; it
//! writes the audit log like every change.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::ApiError;

/// The local paths SSO-only mode closes: (method, path as routed).
pub const LOCAL_PATHS: &[(Method, &str)] = &[
    (Method::POST, "/v1/auth/login"),
    (Method::POST, "/v1/auth/reauth"),
    (Method::POST, "/v1/auth/password"),
    (Method::POST, "/v1/auth/email"),
    (Method::POST, "/v1/auth/email/confirm"),
    (Method::POST, "/v1/auth/password-reset"),
    (Method::POST, "/v1/auth/password-reset/complete"),
    (Method::POST, "/v1/auth/signup"),
    (Method::POST, "/v1/auth/signup/complete"),
    (Method::GET, "/auth/reset"),
    (Method::GET, "/auth/signup"),
    (Method::GET, "/auth/email"),
    (Method::POST, "/v1/admin/users"),
];

/// The one answer every closed path gives.
pub fn refusal() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "sso_only",
        "this instance signs in through SSO only: local passwords, signup, resets, email \
         changes and local accounts are closed (GET /v1/auth/sso lists the providers)",
    )
}

/// Route layer of the account and admin routers when SSO-only mode is on.
pub async fn middleware(request: Request, next: Next) -> Response {
    // A nested router (the admin API) sees its path without the prefix: match the path
    // as the client sent it.
    let path = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or(request.uri().path(), |original| original.0.path());
    // HEAD is answered by the GET handler: closed with it.
    let asked = if request.method() == Method::HEAD {
        &Method::GET
    } else {
        request.method()
    };
    let closed = LOCAL_PATHS
        .iter()
        .any(|(method, local)| method == asked && *local == path);
    if closed {
        return axum::response::IntoResponse::into_response(refusal());
    }
    next.run(request).await
}
