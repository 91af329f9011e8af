//! Account management by the account holder: password change, email change and its
//! confirmation, password reset and signup (requested, then completed from a mailed link).
//!
//! Owns these request and answer shapes. Must never answer differently (bytes, status,
//! timing) whether an account exists when a reset or signup is requested, and never echo a
//! password or a token.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::sessions::{me_view, session_view};
use super::{Peer, Shared, client_info, signed_in, with_cookie};
use crate::http::body::read_json;
use crate::http::{ApiError, json_response as json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    new_password: String,
}

pub(super) async fn change_password(
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

pub(super) async fn change_email(
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

pub(super) async fn confirm_email(
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

pub(super) async fn request_reset(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: EmailOnly = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .request_password_reset(&input.email, &client_info(peer.as_deref(), &headers))
        .await?;
    Ok(accepted_for_mail())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteReset {
    token: String,
    new_password: String,
}

pub(super) async fn complete_reset(
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

pub(super) async fn request_signup(
    State(state): Shared,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: EmailOnly = read_json(&headers, body, state.max_body_bytes).await?;
    state
        .service
        .request_signup(&input.email, &client_info(peer.as_deref(), &headers))
        .await?;
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

pub(super) async fn complete_signup(
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
