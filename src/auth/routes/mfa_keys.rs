//! Two-factor authentication (`/v1/auth/mfa/*`: enrol, confirm, disable, new recovery
//! codes) and workspace API keys (`/v1/auth/api-keys`: create, list, revoke).
//!
//! Owns these request and answer shapes ([`KeyView`]). Must never show a key or a recovery
//! code after the answer that creates it, nor a key's hash or a TOTP secret.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{Peer, Shared, client_info, signed_in, with_cookie};
use crate::auth::ApiKeyScope;
use crate::http::body::read_json;
use crate::http::{ApiError, json_response as json};
use crate::store::api_keys::ApiKeyRecord;

pub(super) async fn mfa_enrol(
    State(state): Shared,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let enrolment = state.service.enrol_mfa(&caller).await?;
    Ok(json(StatusCode::OK, &enrolment))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

pub(super) async fn mfa_confirm(
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

pub(super) async fn mfa_disable(
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

pub(super) async fn mfa_recovery_codes(
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

pub(super) async fn create_key(
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
pub(super) struct ListKeys {
    #[serde(default)]
    all: bool,
}

pub(super) async fn list_keys(
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

pub(super) async fn revoke_key(
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
