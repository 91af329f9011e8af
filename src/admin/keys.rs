//! Admin routes for the instance key: `POST /v1/admin/key/rotate` re-seals every secret under
//! the old key (`SLUICE_ENCRYPTION_PASSWORD_OLD`/`_SALT_OLD`) with the current one, as
//! `sluice key rotate` does (`rotation::rotate`), and `GET /v1/admin/key/status` counts the
//! sealed values per key id.
//!
//! Rotation needs fresh auth when called from a session, and is audited (`key_rotated`,
//! with counts). Neither route returns or audits a secret or a ciphertext: only key ids,
//! counts, and the owners of values that could not be re-sealed.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{AdminActor, AdminState};
use crate::auth::routes::client_info;
use crate::http::{ApiError, json_response};
use crate::policy::client_ip::ClientIp;
use crate::rotation::{self, RotateOptions};

/// Re-seals under the current key; 200 with the report (`complete: false` and the owners
/// of the values left when some could not be re-sealed).
pub(super) async fn rotate(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    peer: Option<Extension<ClientIp>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let store = state.store.clone();
    let keys = state.keys.clone();
    let report = tokio::task::spawn_blocking(move || {
        rotation::rotate(
            store.as_ref(),
            &keys,
            &RotateOptions::default(),
            &mut |_| {},
        )
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|error| {
        tracing::error!(error = %error, "Key rotation failed");
        ApiError::internal()
    })?;
    let client = client_info(peer.as_deref(), &headers);
    let mut event = state.gateway.audit.event("key_rotated", &client);
    event.actor = Some(actor.id.clone());
    event.details = Some(
        serde_json::json!({
            "current_key": report.current_key,
            "old_key": report.old_key,
            "resealed": report.resealed,
            "already_current": report.already_current,
            "failed": report.failed.len(),
        })
        .to_string(),
    );
    state.gateway.audit.append(event).await;
    tracing::info!(
        actor = %actor.id,
        resealed = report.resealed.total(),
        failed = report.failed.len(),
        "Key rotation ran"
    );
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "complete": report.is_complete(),
            "current_key": report.current_key,
            "old_key": report.old_key,
            "resealed": report.resealed,
            "already_current": report.already_current,
            "references": report.references,
            "failed": report.failed,
        }),
    ))
}

/// Sealed values per key id, and the values that do not open.
pub(super) async fn status(State(state): State<Arc<AdminState>>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let keys = state.keys.clone();
    let status = tokio::task::spawn_blocking(move || rotation::status(store.as_ref(), &keys))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|error| {
            tracing::error!(error = %error, "Key status failed");
            ApiError::internal()
        })?;
    Ok(json_response(StatusCode::OK, &status))
}
