//! Sign-in and sessions: `/v1/auth/login`, `logout`, `logout-everywhere`, `me`,
//! `sessions` (list, end one) and `reauth`, with the views they answer (`Me`, `SessionView`).
//!
//! Owns what a caller sees of their own account and sessions. Must never answer a session
//! token, a password hash or a TOTP secret, and never give a signed-in answer without the
//! new session's cookie.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{Peer, Shared, caller, client_info, signed_in, with_cookie};
use crate::auth::service::{AuthError, AuthService, Credentials};
use crate::auth::{CallerVia, Role};
use crate::http::body::read_json;
use crate::http::{ApiError, json_response as json};
use crate::store::sessions::SessionRecord;
use crate::store::users::UserRecord;

/// `/v1/auth/me` and the login answer.
#[derive(Serialize)]
pub(super) struct Me<'a> {
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
pub(super) struct SessionView {
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

pub(super) fn session_view(service: &AuthService, s: &SessionRecord, current: bool) -> SessionView {
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

pub(super) fn me_view<'a>(
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

pub(super) async fn login(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let credentials: Credentials = read_json(&headers, body, state.max_body_bytes).await?;
    let client = client_info(peer.as_deref(), &headers);
    let replaces = state
        .cookie
        .read(&headers)
        .map(crate::auth::token::hash_token);
    let (user, session) = state.service.login(credentials, &client, replaces).await?;
    let view = session_view(&state.service, &session.record, true);
    let response = json(StatusCode::OK, &me_view(&user, Some(view), None));
    Ok(with_cookie(response, state.cookie.set(&session)))
}

pub(super) async fn logout(
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

pub(super) async fn logout_everywhere(
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
pub(super) async fn me(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
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
        // Not a stored account: who the token says, and which issuer vouched for it.
        CallerVia::Token { issuer } => {
            let user = &caller.user;
            return Ok(json(
                StatusCode::OK,
                &serde_json::json!({
                    "id": user.id,
                    "email": (!user.email.is_empty()).then_some(&user.email),
                    "role": user.role,
                    "groups": user.groups,
                    "claims": user.claims,
                    "token": { "issuer": issuer },
                }),
            ));
        }
    };
    // The caller carries only an identity; the profile (name, dates) comes from the store.
    let user = state.service.user_by_id(&caller.user.id).await?;
    Ok(json(StatusCode::OK, &me_view(&user, session, key)))
}

pub(super) async fn sessions(
    State(state): Shared,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let current = match &caller.via {
        CallerVia::Session { public_id, .. } => Some(public_id.clone()),
        CallerVia::ApiKey { .. } | CallerVia::Token { .. } => None,
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

pub(super) async fn end_session(
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

pub(super) async fn reauth(
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
