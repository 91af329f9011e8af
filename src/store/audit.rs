//! The audit log: [`AuditEvent`], the stored [`AuditRecord`] with its place in the hash chain,
//! and [`AuditStore`].
//!
//! Append-only and tamper-evident: each entry carries the hash of the one before it
//! ([`chain`]), appends are serialised by the store so the chain never forks, and past
//! entries are never updated; the only deletion is retention's pruning of the oldest entries,
//! which moves the chain's anchor forward ([`AuditStore::prune_audit`]). The log is not part
//! of any account transaction: an event is appended after the change it records has
//! committed, as its own transaction, so it never records a change that was rolled back;
//! writing it is best-effort after the fact (see [`crate::audit`]). An event never holds a
//! password, token, code or param value; the store writes what it is given and never logs it.
//!
//! The hashing and the verification are pure ([`chain`]) and the walk over a store
//! ([`verify`]) uses only this trait, so every store implementation gets the same chain.

use serde::Serialize;

use super::StoreError;

pub mod chain;

pub use chain::{ChainBreak, ChainState, Verified};

/// One entry of the append-only audit log. Never holds a password, token or code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Assigned by the store; 0 when appending.
    pub id: i64,
    pub at: i64,
    /// `login_succeeded`, `login_failed`, `account_locked`, ... (see docs/AUDIT.md).
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

/// An entry as stored: the event (with its id) and its link in the hash chain. Serialised
/// flat: the event's fields, then `prev_hash` and `hash` (the admin API and the exports
/// show this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The hash of the entry before (or of the anchor the chain starts from).
    pub prev_hash: String,
    /// [`chain::entry_hash`] of `prev_hash` and the event.
    pub hash: String,
}

/// Which entries a listing returns; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub event: Option<String>,
    pub user_id: Option<String>,
    pub actor: Option<String>,
    /// At or after this time (Unix seconds).
    pub since: Option<i64>,
    /// At or before this time (Unix seconds).
    pub until: Option<i64>,
}

/// Where the audit log lives.
pub trait AuditStore: Send + Sync {
    /// Appends `events` in order in one transaction, each chained to the one before, and
    /// returns them as stored (ids assigned, hashes computed). Appends are serialised: two
    /// concurrent calls never chain to the same predecessor.
    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError>;

    /// Entries matching `filter`, newest first, `limit` at most, only ids below `before`
    /// when it is set.
    fn search_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError>;

    /// Entries with an id above `after`, oldest first, `limit` at most (what the exports
    /// read).
    fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// Where the chain starts (the pruning anchor) and ends (the head).
    fn audit_chain(&self) -> Result<ChainState, StoreError>;

    /// Reads the chain's state and then every entry, oldest first, in one consistent read,
    /// handing each to `visit` until it returns `false`; returns the state read.
    fn walk_audit(
        &self,
        visit: &mut dyn FnMut(&ChainState, AuditRecord) -> bool,
    ) -> Result<ChainState, StoreError>;

    /// Deletes the oldest entries, up to `max` of them, as long as each is older than
    /// `before` (Unix seconds); the chain's anchor moves to the last one deleted, so the
    /// entries left still verify. Stops at the first entry that is not old enough, so what
    /// remains is always a contiguous tail. Returns how many were deleted.
    fn prune_audit(&self, before: i64, now: i64, max: u32) -> Result<u64, StoreError>;

    /// The last entry an export named `sink` delivered; `None` for a sink never seen.
    fn audit_export_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError>;

    /// Records that the export `sink` delivered everything up to `id`.
    fn set_audit_export_cursor(&self, sink: &str, id: i64) -> Result<(), StoreError>;

    /// Appends `events` and moves the cursor named `cursor` from `from` (`None`: never
    /// set) to `to`, in one transaction, only if the cursor is still at `from`. Returns the
    /// entries as stored, or `None` when another process moved the cursor first (then
    /// nothing is appended). What lets several replicas that read the same log append what
    /// they derive from it (the alerts, [`crate::audit::alerts`]) exactly once.
    fn append_audit_at_cursor(
        &self,
        cursor: &str,
        from: Option<i64>,
        to: i64,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<AuditRecord>>, StoreError>;

    /// Appends one event (its `id` is ignored) and returns the id the store assigned.
    fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let stored = self.append_audit_batch(std::slice::from_ref(event))?;
        Ok(stored.first().map_or(0, |record| record.event.id))
    }

    /// Newest first; `before` pages backwards by id.
    fn list_audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .search_audit(&AuditFilter::default(), limit, before)?
            .into_iter()
            .map(|record| record.event)
            .collect())
    }
}

/// Why a chain did not verify: the store could not be read, or a link is broken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broken(#[from] ChainBreak),
}

/// Walks the whole log of `store` and checks every link ([`chain::Verifier`]).
pub fn verify(store: &dyn AuditStore) -> Result<Verified, VerifyError> {
    let mut verifier: Option<chain::Verifier> = None;
    let mut broken = None;
    let state = store.walk_audit(&mut |state, record| {
        let verifier = verifier.get_or_insert_with(|| chain::Verifier::new(state));
        match verifier.check(&record) {
            Ok(()) => true,
            Err(error) => {
                broken = Some(error);
                false
            }
        }
    })?;
    if let Some(error) = broken {
        return Err(error.into());
    }
    let verifier = verifier.unwrap_or_else(|| chain::Verifier::new(&state));
    Ok(verifier.finish()?)
}
