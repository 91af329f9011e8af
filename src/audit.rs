//! The audit log as a service: builds events, appends them through the
//! [`AuditStore`] and lists them.
//!
//! Used by the auth service (every account event), the view plane's edge policy and the
//! admin plane (requests refused for their address, the admin API's log listing). It owns
//! the shape of an event (time from the injected clock, the client's address and user agent)
//! and what happens when writing one fails: the error is logged with the event's name and
//! never shown to the caller, and the change it records stands (events are appended after
//! the change committed, see [`crate::store::audit`]).
//!
//! It never logs or stores a password, token, code or param value: callers put only names,
//! ids and non-secret facts in an event, and a failure log names the event, not its content.
//! It does not import the planes, HTTP or the auth service.

use std::sync::Arc;

use crate::auth::ClientInfo;
use crate::clock::SharedClock;
use crate::store::StoreError;
use crate::store::audit::{AuditEvent, AuditStore};

/// Why the audit log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Appends to and reads the audit log.
pub struct Audit {
    store: Arc<dyn AuditStore>,
    clock: SharedClock,
}

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>, clock: SharedClock) -> Audit {
        Audit { store, clock }
    }

    /// An event named `name` about a request from `client`, stamped now; the caller fills
    /// in the rest (account, actor, reason, details).
    pub fn event(&self, name: &str, client: &ClientInfo) -> AuditEvent {
        AuditEvent {
            id: 0,
            at: self.clock.now(),
            event: name.to_string(),
            user_id: None,
            email: None,
            actor: None,
            ip: Some(client.ip.clone()).filter(|ip| !ip.is_empty()),
            user_agent: Some(client.stored_user_agent()).filter(|ua| !ua.is_empty()),
            reason: None,
            details: None,
        }
    }

    /// Appends an audit event; a failure to write it is logged, never shown to the caller.
    pub async fn append(&self, event: AuditEvent) {
        let name = event.event.clone();
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.append_audit(&event))
            .await
            .map_err(AuditError::from)
            .and_then(|appended| Ok(appended?));
        if let Err(error) = result {
            tracing::error!(event = %name, error = %error, "Audit event not written");
        }
    }

    /// Records a request refused at the edge because of its address (outside an app's or
    /// the admin API's IP allowlist), with `details` saying where (`{"app": ...}`,
    /// `{"plane": "admin"}`).
    pub async fn ip_refused(&self, client: &ClientInfo, details: serde_json::Value) {
        let mut event = self.event("ip_refused", client);
        event.details = Some(details.to_string());
        self.append(event).await;
    }

    /// Newest first; `before` pages backwards by id.
    pub async fn list(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.list_audit(limit, before)).await??)
    }
}
