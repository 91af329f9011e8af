//! The audit log as a service: builds events, appends them through the [`AuditStore`]
//! (which chains each to the one before), lists them, and runs the log's background work.
//!
//! Used by the auth service (every account event), the view plane's edge policy and the
//! admin plane (requests refused for their address, the admin API's log listing), and, when
//! `SLUICE_AUDIT_QUERY_RUNS` is on, the view plane for every query run ([`runs`]). It owns
//! the shape of an event (time from the injected clock, the client's address and user agent)
//! and what happens when writing one fails: the error is logged with the event's name and
//! never shown to the caller, and the change it records stands (events are appended after
//! the change committed, see [`crate::store::audit`]).
//!
//! Background work, in the instance's task set: [`export`] copies every entry to stdout, a
//! file or a webhook ([`webhook`]) by reading the log after a cursor, so a slow or dead sink
//! never touches a request; [`retention`] prunes old entries.
//!
//! It never logs or stores a password, token, code or param value: callers put only names,
//! ids and non-secret facts in an event, and a failure log names the event, not its content.
//! It does not import the planes, HTTP or the auth service.

pub mod alerts;
pub mod export;
pub mod retention;
pub mod runs;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::ClientInfo;
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::audit::{AuditEvent, AuditFilter, AuditRecord, AuditStore};

pub use runs::{QueryRun, QueryRuns};

/// Why the audit log could not be read or its background work set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A webhook cannot be set up (its address refused by the egress policy, or its
    /// client): the variable that names it, and why.
    #[error("{0}: {1}")]
    Webhook(&'static str, String),
    /// The export file cannot be opened for appending.
    #[error("SLUICE_AUDIT_EXPORT: {0}")]
    Export(String),
}

/// Runs `work` on `store` on the blocking pool (the stores are synchronous); a task that
/// could not finish is a [`StoreError::Io`]. What the background readers of the log (the
/// exports, the alerts) call the store through.
pub(crate) async fn on_store<T: Send + 'static>(
    store: &Arc<dyn AuditStore>,
    work: impl FnOnce(&dyn AuditStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(|error| StoreError::Io(std::io::Error::other(error.to_string())))?
}

/// Appends to and reads the audit log.
pub struct Audit {
    store: Arc<dyn AuditStore>,
    clock: SharedClock,
    /// The id of the newest entry this process appended: the exports wait on it.
    appended: Arc<watch::Sender<i64>>,
    runs: Option<Arc<QueryRuns>>,
}

impl Audit {
    pub fn new(store: Arc<dyn AuditStore>, clock: SharedClock) -> Audit {
        Audit {
            store,
            clock,
            appended: Arc::new(watch::Sender::new(0)),
            runs: None,
        }
    }

    /// Records query runs too, through a queue of `capacity` runs and a writer task that
    /// appends them in batches (see [`runs`]). Needs a Tokio runtime.
    pub fn with_query_runs(mut self, metrics: Arc<Metrics>, capacity: usize) -> Audit {
        self.runs = Some(QueryRuns::start(
            self.store.clone(),
            self.clock.clone(),
            self.appended.clone(),
            metrics,
            capacity,
        ));
        self
    }

    /// The query-run recorder, when `SLUICE_AUDIT_QUERY_RUNS` is on.
    pub fn query_runs(&self) -> Option<&Arc<QueryRuns>> {
        self.runs.as_ref()
    }

    /// The store the log is in.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.store
    }

    /// Changes whenever this process appends (the exports also poll, for entries other
    /// processes append).
    pub fn appended(&self) -> watch::Receiver<i64> {
        self.appended.subscribe()
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
        let result = tokio::task::spawn_blocking(move || {
            store.append_audit_batch(std::slice::from_ref(&event))
        })
        .await
        .map_err(AuditError::from)
        .and_then(|appended| Ok(appended?));
        match result {
            Ok(stored) => {
                if let Some(record) = stored.last() {
                    self.appended.send_replace(record.event.id);
                }
            }
            Err(error) => {
                tracing::error!(event = %name, error = %error, "Audit event not written");
            }
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

    /// Entries matching `filter`, newest first, with their hashes; `before` pages
    /// backwards by id.
    pub async fn search(
        &self,
        filter: AuditFilter,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let store = self.store.clone();
        Ok(
            tokio::task::spawn_blocking(move || store.search_audit(&filter, limit, before))
                .await??,
        )
    }
}
