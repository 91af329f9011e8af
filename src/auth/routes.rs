//! `/v1/auth/*`: sign-in, sessions, MFA, password reset, signup, email change, API keys;
//! the small pages mailed links open (`/auth/reset`, `/auth/signup`, `/auth/email`); and
//! [`caller`], which every plane uses to find who is asking.
//!
//! The session cookie is HttpOnly, SameSite (Lax by default), Secure whenever the public URL
//! is https or SameSite=None, and then named with the `__Host-` prefix. It is a browser
//! session cookie (no Max-Age): lifetimes are enforced on the server.

mod errors;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

use super::service::{AuthError, AuthService, Credentials, NewSession};
use super::{ApiKeyScope, Caller, CallerVia, ClientInfo, Role};
use crate::config::SameSite;
use crate::http::body::read_json;
use crate::http::{ApiError, json_response as json};
use crate::policy::client_ip::ClientIp;
use crate::store::api_keys::ApiKeyRecord;
use crate::store::sessions::SessionRecord;
use crate::store::users::UserRecord;

/// Cookie settings derived from the configuration.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub secure: bool,
    pub same_site: SameSite,
}

impl CookieSettings {
    pub fn name(&self) -> &'static str {
        if self.secure {
            "__Host-sluice_session"
        } else {
            "sluice_session"
        }
    }

    fn attributes(&self) -> String {
        let same_site = match self.same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!("Path=/; HttpOnly; SameSite={same_site}{secure}")
    }

    /// `Set-Cookie` for a new session.
    pub fn set(&self, session: &NewSession) -> HeaderValue {
        let value = format!(
            "{}={}; {}",
            self.name(),
            session.token.expose(),
            self.attributes()
        );
        HeaderValue::from_str(&value).expect("tokens are base64url")
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear(&self) -> HeaderValue {
        let value = format!("{}=; {}; Max-Age=0", self.name(), self.attributes());
        HeaderValue::from_str(&value).expect("static cookie text")
    }

    /// The session token the request carries, if any.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }
}

/// What the auth routes share.
pub struct AuthState {
    pub service: Arc<AuthService>,
    pub cookie: CookieSettings,
    pub max_body_bytes: usize,
}

/// Who is asking: an API key (`Authorization: Bearer slk_...`), else the session cookie.
/// A bearer credential that does not check out is an error (401); a stale cookie is treated
/// as no cookie, so public apps keep working for a browser with an old one.
pub async fn caller(state: &AuthState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        return match bearer {
            Some(key) if key.starts_with(super::token::API_KEY_PREFIX) => {
                Ok(Some(state.service.authenticate_api_key(key).await?))
            }
            _ => Err(ApiError::unauthenticated(
                "the Authorization header must be `Bearer slk_...` (a Sluice API key)",
            )),
        };
    }
    let Some(token) = state.cookie.read(headers) else {
        return Ok(None);
    };
    match state.service.authenticate_session(token).await {
        Ok(caller) => Ok(Some(caller)),
        Err(AuthError::Unauthenticated) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The client's address (as the edge resolved it) and user agent.
pub fn client_info(client: Option<&ClientIp>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: client.map(|c| c.0.to_string()).unwrap_or_default(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}

/// The router for `/v1/auth` (nested there) and the link pages (merged at the root).
pub fn router(state: Arc<AuthState>) -> Router {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/logout-everywhere", post(logout_everywhere))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/sessions", get(sessions))
        .route("/v1/auth/sessions/{id}", delete(end_session))
        .route("/v1/auth/reauth", post(reauth))
        .route("/v1/auth/password", post(change_password))
        .route("/v1/auth/email", post(change_email))
        .route("/v1/auth/email/confirm", post(confirm_email))
        .route("/v1/auth/password-reset", post(request_reset))
        .route("/v1/auth/password-reset/complete", post(complete_reset))
        .route("/v1/auth/signup", post(request_signup))
        .route("/v1/auth/signup/complete", post(complete_signup))
        .route("/v1/auth/mfa/enroll", post(mfa_enrol))
        .route("/v1/auth/mfa/confirm", post(mfa_confirm))
        .route("/v1/auth/mfa/disable", post(mfa_disable))
        .route("/v1/auth/mfa/recovery-codes", post(mfa_recovery_codes))
        .route("/v1/auth/api-keys", get(list_keys).post(create_key))
        .route("/v1/auth/api-keys/{id}", delete(revoke_key))
        .merge(super::pages::router())
        .with_state(state)
}

type Shared = State<Arc<AuthState>>;
type Peer = Option<Extension<ClientIp>>;

fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The signed-in caller of an account endpoint, or 401. `enrolment` allows an admin who has
/// yet to enrol in MFA. These endpoints manage the account (sessions, keys, MFA, password),
/// so an API key, which is scoped to running queries, gets 403: a leaked key must not list
/// the owner's sessions and their addresses, sign them out, or revoke their other keys.
async fn signed_in(
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
    if caller.must_enrol_mfa() && !enrolment {
        return Err(AuthError::MfaEnrolmentRequired.into());
    }
    Ok(caller)
}

/// `/v1/auth/me` and the login answer.
#[derive(Serialize)]
struct Me<'a> {
    id: &'a str,
    email: &'a str,
    display_name: &'a str,
    role: Role,
    groups: &'a [String],
    mfa_enabled: bool,
    /// True for an admin without MFA: only enrolment is allowed until it is done.
    mfa_enrolment_required: bool,
    created_at: i64,
    last_login_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<&'a str>,
}

#[derive(Serialize)]
struct SessionView {
    id: String,
    created_at: i64,
    last_seen_at: i64,
    authenticated_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    ip: String,
    user_agent: String,
    current: bool,
}

fn session_view(service: &AuthService, s: &SessionRecord, current: bool) -> SessionView {
    let settings = service.settings();
    SessionView {
        id: s.public_id.clone(),
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        authenticated_at: s.authenticated_at,
        idle_expires_at: s.last_seen_at + settings.session_idle_timeout.as_secs() as i64,
        absolute_expires_at: s.created_at + settings.session_absolute_timeout.as_secs() as i64,
        ip: s.ip.clone(),
        user_agent: s.user_agent.clone(),
        current,
    }
}

fn me_view<'a>(
    user: &'a UserRecord,
    session: Option<SessionView>,
    api_key_id: Option<&'a str>,
) -> Me<'a> {
    Me {
        id: &user.id,
        email: &user.email,
        display_name: &user.display_name,
        role: user.role,
        groups: &user.groups,
        mfa_enabled: user.mfa_enabled,
        mfa_enrolment_required: user.role == Role::Admin && !user.mfa_enabled,
        created_at: user.created_at,
        last_login_at: user.last_login_at,
        session,
        api_key_id,
    }
}

async fn login(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let credentials: Credentials = read_json(&headers, body, state.max_body_bytes).await?;
    let client = client_info(peer.as_deref(), &headers);
    let replaces = state.cookie.read(&headers).map(super::token::hash_token);
    let (user, session) = state.service.login(credentials, &client, replaces).await?;
    let view = session_view(&state.service, &session.record, true);
    let response = json(StatusCode::OK, &me_view(&user, Some(view), None));
    Ok(with_cookie(response, state.cookie.set(&session)))
}

async fn logout(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    state
        .service
        .logout(&caller, &client_info(peer.as_deref(), &headers))
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "signed_out" }),
    );
    Ok(with_cookie(response, state.cookie.clear()))
}

async fn logout_everywhere(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let ended = state
        .service
        .logout_everywhere(&caller, &client_info(peer.as_deref(), &headers))
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "signed_out", "sessions_ended": ended }),
    );
    Ok(with_cookie(response, state.cookie.clear()))
}

/// Who is asking: a session or an API key.
async fn me(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers)
        .await?
        .ok_or_else(|| ApiError::from(AuthError::Unauthenticated))?;
    let (session, key) = match &caller.via {
        CallerVia::Session { public_id, .. } => {
            let sessions = state.service.sessions(&caller).await?;
            let current = sessions
                .iter()
                .find(|s| &s.public_id == public_id)
                .map(|s| session_view(&state.service, s, true));
            (current, None)
        }
        CallerVia::ApiKey { id, .. } => (None, Some(id.as_str())),
    };
    // The caller carries only an identity; the profile (name, dates) comes from the store.
    let user = state.service.user_by_id(&caller.user.id).await?;
    Ok(json(StatusCode::OK, &me_view(&user, session, key)))
}

async fn sessions(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let current = match &caller.via {
        CallerVia::Session { public_id, .. } => Some(public_id.clone()),
        CallerVia::ApiKey { .. } => None,
    };
    let list: Vec<SessionView> = state
        .service
        .sessions(&caller)
        .await?
        .iter()
        .map(|s| session_view(&state.service, s, current.as_deref() == Some(&s.public_id)))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "sessions": list }),
    ))
}

async fn end_session(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    state
        .service
        .end_session(&caller, id, &client_info(peer.as_deref(), &headers))
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ended" }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reauth {
    password: String,
    #[serde(default)]
    totp_code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

async fn reauth(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let input: Reauth = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .reauthenticate(
            &caller,
            input.password,
            input.totp_code,
            input.recovery_code,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    let fresh_until = state.service.now() + state.service.settings().fresh_auth.as_secs() as i64;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "status": "confirmed", "fresh_until": fresh_until }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    new_password: String,
}

async fn change_password(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    let input: NewPassword = read_json(&headers, body, state.max_body_bytes).await?;
    let session = state
        .service
        .change_password(
            &caller,
            input.new_password,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "password_changed" }),
    );
    Ok(match session {
        Some(session) => with_cookie(response, state.cookie.set(&session)),
        None => response,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEmail {
    new_email: String,
}

async fn change_email(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    let input: NewEmail = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .request_email_change(
            &caller,
            &input.new_email,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "status": "accepted", "message": "a confirmation link was sent to the new address" }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenOnly {
    token: String,
}

async fn confirm_email(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: TokenOnly = read_json(&headers, body, state.max_body_bytes).await?;
    let user = state
        .service
        .confirm_email_change(&input.token, &client_info(peer.as_deref(), &headers))
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "email_changed", "email": user.email }),
    );
    Ok(with_cookie(response, state.cookie.clear()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailOnly {
    email: String,
}

/// The one answer of the reset and signup request endpoints, whatever the account.
fn accepted_for_mail() -> Response {
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "status": "accepted",
            "message": "if this address can receive it, a link is on its way",
        }),
    )
}

async fn request_reset(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: EmailOnly = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .request_password_reset(&input.email, &client_info(peer.as_deref(), &headers))?;
    Ok(accepted_for_mail())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteReset {
    token: String,
    new_password: String,
}

async fn complete_reset(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: CompleteReset = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .complete_password_reset(
            &input.token,
            input.new_password,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "password_changed" }),
    );
    Ok(with_cookie(response, state.cookie.clear()))
}

async fn request_signup(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: EmailOnly = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .request_signup(&input.email, &client_info(peer.as_deref(), &headers))?;
    Ok(accepted_for_mail())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteSignup {
    token: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

async fn complete_signup(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: CompleteSignup = read_json(&headers, body, state.max_body_bytes).await?;
    let (user, session) = state
        .service
        .complete_signup(
            &input.token,
            input.password,
            input.display_name,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    let view = session_view(&state.service, &session.record, true);
    let response = json(StatusCode::CREATED, &me_view(&user, Some(view), None));
    Ok(with_cookie(response, state.cookie.set(&session)))
}

async fn mfa_enrol(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let enrolment = state.service.enrol_mfa(&caller).await?;
    Ok(json(StatusCode::OK, &enrolment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

async fn mfa_confirm(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let input: Code = read_json(&headers, body, state.max_body_bytes).await?;
    let (codes, session) = state
        .service
        .confirm_mfa(
            &caller,
            &input.code,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "mfa_enabled", "recovery_codes": codes }),
    );
    Ok(match session {
        Some(session) => with_cookie(response, state.cookie.set(&session)),
        None => response,
    })
}

async fn mfa_disable(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let session = state
        .service
        .disable_mfa(&caller, &client_info(peer.as_deref(), &headers))
        .await?;
    let response = json(
        StatusCode::OK,
        &serde_json::json!({ "status": "mfa_disabled" }),
    );
    Ok(match session {
        Some(session) => with_cookie(response, state.cookie.set(&session)),
        None => response,
    })
}

async fn mfa_recovery_codes(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    let codes = state
        .service
        .regenerate_recovery_codes(&caller, &client_info(peer.as_deref(), &headers))
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "recovery_codes": codes }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    scope: ApiKeyScope,
    /// Unix seconds; absent for a key that does not expire.
    #[serde(default)]
    expires_at: Option<i64>,
}

async fn create_key(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    let input: NewKey = read_json(&headers, body, state.max_body_bytes).await?;
    let created = state
        .service
        .create_api_key(
            &caller,
            input.name,
            input.scope,
            input.expires_at,
            &client_info(peer.as_deref(), &headers),
        )
        .await?;
    Ok(json(StatusCode::CREATED, &created))
}

/// A key as listed: never the key or its hash.
#[derive(Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub scope: ApiKeyScope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<ApiKeyRecord> for KeyView {
    fn from(k: ApiKeyRecord) -> KeyView {
        KeyView {
            id: k.id,
            name: k.name,
            user_id: k.user_id,
            scope: k.scope,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Deserialize)]
struct ListKeys {
    #[serde(default)]
    all: bool,
}

async fn list_keys(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<ListKeys>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "`all` must be true or false",
        )
    })?;
    let caller = signed_in(&state, &headers, false).await?;
    let keys: Vec<KeyView> = state
        .service
        .api_keys(&caller, query.all)
        .await?
        .into_iter()
        .map(KeyView::from)
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "api_keys": keys }),
    ))
}

async fn revoke_key(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    state
        .service
        .revoke_api_key(&caller, id, &client_info(peer.as_deref(), &headers))
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "status": "revoked" }),
    ))
}
