//! Two-factor authentication state: [`MfaStore`], the account's sealed TOTP secret, its
//! replay guard and its recovery codes, and turning MFA on and off.
//!
//! The secret and the flags live on the account's record
//! ([`UserRecord`](super::users::UserRecord) shows them); recovery codes are their own rows.
//! The store only ever sees the secret sealed under the instance key and each recovery code
//! as its SHA-256; it never checks a code itself (the auth service does) and never logs one.

use super::StoreError;
use super::sessions::{SessionChange, SessionRecord};

/// Where MFA state lives. Each method is atomic; turning MFA on or off also changes the
/// account's sessions, in the same transaction.
pub trait MfaStore: Send + Sync {
    /// Stores a new (unconfirmed) sealed TOTP secret; MFA stays off until
    /// [`MfaStore::enable_mfa`]. One conditional statement: only while MFA is off, so an
    /// enrolment racing a confirmation never turns MFA off; [`StoreError::Conflict`] (and
    /// nothing changes) when it is on.
    fn set_totp_secret(&self, id: &str, sealed: &str) -> Result<(), StoreError>;
    /// Confirms enrolment, in one transaction: replaces the recovery codes with `hashes`
    /// (hex SHA-256 of each), turns MFA on, ends all the account's sessions (none opened
    /// with the password alone becomes an MFA session) and, if given `(old, new)`, opens
    /// `new` in their place. `old` is the caller's session, ended first: it must still be one
    /// of the account's sessions, else [`StoreError::NotFound`]`("session")` and nothing
    /// changes.
    fn enable_mfa(
        &self,
        id: &str,
        hashes: &[String],
        session: Option<(&str, &SessionRecord)>,
    ) -> Result<(), StoreError>;
    /// Clears MFA entirely (secret, enabled flag, last step and recovery codes) and applies
    /// `sessions`, in one transaction.
    fn disable_mfa(&self, id: &str, sessions: SessionChange<'_>) -> Result<(), StoreError>;
    /// Accepts `step` only if it is later than the last accepted one (compare-and-set);
    /// returns false for a replay.
    fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes (hex SHA-256 of each).
    fn replace_recovery_codes(&self, id: &str, hashes: &[String]) -> Result<(), StoreError>;
    /// Marks a recovery code used; false if it is unknown or already used.
    fn use_recovery_code(&self, id: &str, hash: &str, now: i64) -> Result<bool, StoreError>;
    fn remaining_recovery_codes(&self, id: &str) -> Result<u32, StoreError>;
}
