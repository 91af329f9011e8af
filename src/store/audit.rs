//! The audit log: [`AuditEvent`] and [`AuditStore`].
//!
//! Append-only: past events are never updated or deleted (the SQLite store refuses it with
//! triggers). The log is not part of any account transaction: an event is appended after
//! the change it records has committed, as its own statement, so it never records a change
//! that was rolled back; writing it is best-effort after the fact (see [`crate::audit`]).
//! An event never holds a password, token, code or param value; the store writes what it is
//! given and never logs it.

use serde::Serialize;

use super::StoreError;

/// One entry of the append-only audit log. Never holds a password, token or code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Assigned by the store; 0 when appending.
    pub id: i64,
    pub at: i64,
    /// `login_succeeded`, `login_failed`, `account_locked`, ... (see docs/AUTH.md).
    pub event: String,
    /// The account concerned, when there is one.
    pub user_id: Option<String>,
    /// The normalised email the event is about (for failures on unknown accounts too).
    pub email: Option<String>,
    /// Who did it, when not the account itself (an admin, `cli`, `system`).
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Why, for failures and refusals (`wrong_password`, `unknown_account`, `locked`, ...).
    pub reason: Option<String>,
    /// Extra non-secret facts as JSON (new role, API key id, ...).
    pub details: Option<String>,
}

/// Where the audit log lives.
pub trait AuditStore: Send + Sync {
    /// Appends `event` (its `id` is ignored) and returns the id the store assigned.
    fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError>;
    /// Newest first; `before` pages backwards by id.
    fn list_audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditEvent>, StoreError>;
}
