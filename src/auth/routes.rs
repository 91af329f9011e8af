//! `/v1/auth/*`: sign-in, sessions, MFA, password reset, signup, email change, API keys;
//! the small pages mailed links open (`/auth/reset`, `/auth/signup`, `/auth/email`); and
//! [`caller`], which every plane uses to find who is asking.
//!
//! The session cookie is HttpOnly, SameSite (Lax by default), Secure whenever the public URL
//! is https or SameSite=None, and then named with the `__Host-` prefix. It is a browser
//! session cookie (no Max-Age): lifetimes are enforced on the server.
//!
//! The handlers live by concern: `sessions` (sign-in and sessions), `account` (password,
//! email, reset, signup), `mfa_keys` (two-factor and API keys), `sso` (OpenID Connect
//! sign-in and linked providers); the cookies and [`caller`] in `caller`; `errors` turns an `AuthError` into an answer. This file keeps the shared
//! state, the route table and the signed-in check the handlers share.

mod account;
mod caller;
mod errors;
mod mfa_keys;
mod sessions;
mod sso;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};

pub use caller::{CookieSettings, caller, client_info};
pub use mfa_keys::KeyView;

use super::Caller;
use super::service::{AuthError, AuthService};
use crate::http::ApiError;
use crate::policy::client_ip::ClientIp;
use crate::sso::Sso;

/// What the auth routes share.
pub struct AuthState {
    pub service: Arc<AuthService>,
    pub cookie: CookieSettings,
    pub max_body_bytes: usize,
    /// OpenID Connect providers and bearer JWT issuers ([`Sso::disabled`] without an SSO
    /// file).
    pub sso: Arc<Sso>,
    /// `SLUICE_PUBLIC_URL`, without a trailing `/`: the base of SSO callback URLs.
    pub public_url: Option<String>,
}

/// The router for `/v1/auth` (nested there) and the link pages (merged at the root).
pub fn router(state: Arc<AuthState>) -> Router {
    Router::new()
        .route("/v1/auth/login", post(sessions::login))
        .route("/v1/auth/logout", post(sessions::logout))
        .route(
            "/v1/auth/logout-everywhere",
            post(sessions::logout_everywhere),
        )
        .route("/v1/auth/me", get(sessions::me))
        .route("/v1/auth/sessions", get(sessions::sessions))
        .route("/v1/auth/sessions/{id}", delete(sessions::end_session))
        .route("/v1/auth/reauth", post(sessions::reauth))
        .route("/v1/auth/password", post(account::change_password))
        .route("/v1/auth/email", post(account::change_email))
        .route("/v1/auth/email/confirm", post(account::confirm_email))
        .route("/v1/auth/password-reset", post(account::request_reset))
        .route(
            "/v1/auth/password-reset/complete",
            post(account::complete_reset),
        )
        .route("/v1/auth/signup", post(account::request_signup))
        .route("/v1/auth/signup/complete", post(account::complete_signup))
        .route("/v1/auth/mfa/enroll", post(mfa_keys::mfa_enrol))
        .route("/v1/auth/mfa/confirm", post(mfa_keys::mfa_confirm))
        .route("/v1/auth/mfa/disable", post(mfa_keys::mfa_disable))
        .route(
            "/v1/auth/mfa/recovery-codes",
            post(mfa_keys::mfa_recovery_codes),
        )
        .route(
            "/v1/auth/api-keys",
            get(mfa_keys::list_keys).post(mfa_keys::create_key),
        )
        .route("/v1/auth/api-keys/{id}", delete(mfa_keys::revoke_key))
        .route("/v1/auth/sso", get(sso::providers))
        .route("/v1/auth/oidc/{provider}/start", get(sso::start))
        .route("/v1/auth/oidc/{provider}/callback", get(sso::callback))
        .route("/v1/auth/oidc/{provider}/link", post(sso::link))
        .route("/v1/auth/identities", get(sso::identities))
        .route("/v1/auth/identities/{provider}", delete(sso::unlink))
        .merge(super::pages::router())
        .with_state(state)
}

pub(super) type Shared = State<Arc<AuthState>>;
pub(super) type Peer = Option<Extension<ClientIp>>;

pub(super) fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The signed-in caller of an account endpoint, or 401. `enrolment` allows an admin who has
/// yet to enrol in MFA. These endpoints manage the account (sessions, keys, MFA, password),
/// so an API key, which is scoped to running queries, gets 403: a leaked key must not list
/// the owner's sessions and their addresses, sign them out, or revoke their other keys.
pub(super) async fn signed_in(
    state: &AuthState,
    headers: &HeaderMap,
    enrolment: bool,
) -> Result<Caller, ApiError> {
    let caller = caller(state, headers)
        .await?
        .ok_or_else(|| ApiError::from(AuthError::Unauthenticated))?;
    if caller.api_key_scope().is_some() {
        return Err(AuthError::Forbidden(
            "this endpoint needs a signed-in session, not an API key",
        )
        .into());
    }
    if caller.session_hash().is_none() {
        return Err(AuthError::Forbidden(
            "this endpoint needs a signed-in session, not a bearer token",
        )
        .into());
    }
    if caller.must_enrol_mfa() && !enrolment {
        return Err(AuthError::MfaEnrolmentRequired.into());
    }
    Ok(caller)
}
