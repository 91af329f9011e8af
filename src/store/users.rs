//! User accounts: the records and [`UserStore`], the account's own changes (profile, role,
//! groups, disabling, password, sign-in accounting and lockout).
//!
//! Owns the `users` aggregate and the changes that start from it, including those that also
//! end or open the account's sessions or void its pending one-time tokens (each one method,
//! one transaction). It never sees a plaintext password (only argon2id PHC strings) and
//! never decides policy: thresholds, lifetimes and who may do what come from the caller.

use super::StoreError;
use super::sessions::SessionRecord;
use crate::auth::Role;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// A UUID, stable for the life of the account (what `{{ user.id }}` binds).
    pub id: String,
    /// Normalised (trimmed, lower-case); unique.
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub disabled: bool,
    /// The argon2id PHC string; `None` for accounts that never set one.
    pub password_hash: Option<String>,
    /// Consecutive failed logins since the last success or reset.
    pub failed_logins: u32,
    pub locked_until: Option<i64>,
    /// The TOTP secret sealed for `user/<id>/totp`; set at enrolment, before confirmation.
    pub totp_secret_sealed: Option<String>,
    /// True once enrolment was confirmed with a valid code.
    pub mfa_enabled: bool,
    /// The last TOTP time step accepted (replay guard).
    pub totp_last_step: Option<i64>,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// What `create_user` needs.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub password_hash: Option<String>,
    pub created_at: i64,
}

/// The outcome of recording a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub failed_logins: u32,
    /// Set when this failure locked the account.
    pub locked_until: Option<i64>,
}

/// What [`UserStore::complete_login`] and [`UserStore::complete_reauthentication`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// The success is recorded and the session opened (or marked authenticated).
    Admitted,
    /// The account is locked at the time of the success (failures raced the password
    /// check): nothing changed.
    Locked,
    /// The account is no longer as verified (disabled, gone, or its password hash, email or
    /// MFA flag changed since it was read): nothing changed.
    CredentialsChanged,
}

/// The [`StoreError::Conflict`] of an email taken by another account.
pub const EMAIL_TAKEN: &str = "user with this email";

/// Where user accounts live. Each method is atomic; those that also touch the account's
/// sessions or tokens say so, and do it in the same transaction.
pub trait UserStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] when the email is taken.
    fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError>;
    fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn count_users(&self) -> Result<u64, StoreError>;
    /// Sets the role and ends all the account's sessions (a privilege change never keeps an
    /// old session), in one transaction.
    fn set_role_and_end_sessions(&self, id: &str, role: Role) -> Result<(), StoreError>;
    /// Sets the groups and ends all the account's sessions, in one transaction.
    fn set_groups_and_end_sessions(&self, id: &str, groups: &[String]) -> Result<(), StoreError>;
    /// Sets the disabled flag. Disabling also ends all the account's sessions, in the same
    /// transaction; enabling leaves sessions alone.
    fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError>;
    fn set_display_name(&self, id: &str, name: &str) -> Result<(), StoreError>;
    /// An administrator's password change (the CLI's `user set-password`), in one
    /// transaction: sets the hash (clearing the failure count and any lock), voids the
    /// account's unused password-reset and email-change tokens (their `used_at` is `now`) and
    /// ends all its sessions.
    fn set_password_and_end_sessions(
        &self,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Deletes an account with everything that hangs off it (sessions, one-time tokens,
    /// API keys, recovery codes, app memberships), in one transaction. The audit log keeps
    /// its events.
    fn delete_user(&self, id: &str) -> Result<(), StoreError>;
    /// A signed-in user's password change, in one transaction: ends `old_session` (the
    /// caller's, which must still be one of the account's sessions, else
    /// [`StoreError::NotFound`]`("session")` and nothing changes), sets the hash (clearing
    /// the failure count and any lock), voids the account's unused email-change tokens
    /// (asked for under the old password), ends all its other sessions and opens `session`,
    /// the caller's new one.
    fn change_password(
        &self,
        id: &str,
        hash: &str,
        old_session: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError>;
    /// Adds one to the failure count in one statement; when it reaches `threshold`, locks
    /// the account until `now + lock_secs` and returns that time.
    fn record_login_failure(
        &self,
        id: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<FailureCount, StoreError>;
    /// A sign-in whose credentials checked out, in one transaction: clears the failure count
    /// and sets `last_login_at` with one conditional update that requires the account to be
    /// unlocked at `now` and still as `verified` (not disabled, same password hash, email and
    /// MFA flag as the record whose credentials were checked), opens `session` and ends
    /// `replacing` (the session the request came with), if given. A lock set by failures
    /// racing the password check wins ([`SignIn::Locked`]), and so does a password, email
    /// or MFA change or a disabling that committed meanwhile ([`SignIn::CredentialsChanged`]);
    /// then nothing changes.
    fn complete_login(
        &self,
        verified: &UserRecord,
        now: i64,
        session: &SessionRecord,
        replacing: Option<&str>,
    ) -> Result<SignIn, StoreError>;
    /// A re-authentication whose credentials checked out, in one transaction: the same
    /// conditional update as [`UserStore::complete_login`] (nothing changes unless
    /// [`SignIn::Admitted`]), and the session `token_hash` of the account marked
    /// authenticated at `now`. Fails with [`StoreError::NotFound`]`("session")` when the
    /// account has no such session any more (then nothing changes either).
    fn complete_reauthentication(
        &self,
        verified: &UserRecord,
        token_hash: &str,
        now: i64,
    ) -> Result<SignIn, StoreError>;
    /// Clears the failure count and any lock (an admin's unlock).
    fn clear_lockout(&self, id: &str) -> Result<(), StoreError>;
}
