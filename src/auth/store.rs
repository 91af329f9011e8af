//! What authentication keeps in the metadata store, and the interface it keeps it through.
//!
//! [`AuthStore`] is implemented by the SQLite store (and later the PostgreSQL one). Calls are
//! blocking; async callers use `spawn_blocking`. Every secret-derived value here is already
//! hashed (passwords with argon2id, session ids, tokens, API keys and recovery codes with
//! SHA-256) or sealed (TOTP secrets, under the instance key): the store never sees a
//! plaintext credential. Times are Unix seconds.

use serde::{Deserialize, Serialize};

use super::{ApiKeyScope, Role};
use crate::store::StoreError;

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

/// A server-side session. The cookie holds the session token; only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    /// A short random id that names the session in listings and revocation (not a secret).
    pub public_id: String,
    pub user_id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// When the password (and MFA, if enabled) was last checked in this session.
    pub authenticated_at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// What a one-time token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    PasswordReset,
    Signup,
    EmailChange,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::Signup => "signup",
            TokenPurpose::EmailChange => "email_change",
        }
    }
}

/// A single-use token sent by mail (password reset, signup, email change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub purpose: TokenPurpose,
    /// The account it acts on (reset, email change); `None` for signup.
    pub user_id: Option<String>,
    /// The address it was sent to (signup, email change: the new address).
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A workspace API key. The key itself is shown once; only its SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The public part of the key (`slk_<id>_...`), used to find it.
    pub id: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The user who created it; the key runs queries as this user.
    pub user_id: String,
    pub name: String,
    pub scope: ApiKeyScope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

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

/// The outcome of recording a failed login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub failed_logins: u32,
    /// Set when this failure locked the account.
    pub locked_until: Option<i64>,
}

/// What [`AuthStore::complete_login`] and [`AuthStore::complete_reauthentication`] came to.
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

/// What an account change does to the account's sessions, in the same transaction.
#[derive(Debug, Clone, Copy)]
pub enum SessionChange<'a> {
    /// They stay as they are.
    Keep,
    /// All of them end.
    EndAll,
    /// The session with token hash `old` ends and `new` opens in its place (the caller's new
    /// id after a privilege change); the account's other sessions stay. `old` must still be
    /// one of the account's sessions, else [`StoreError::NotFound`]`("session")` and nothing
    /// changes (the caller was signed out meanwhile).
    Rotate {
        old: &'a str,
        new: &'a SessionRecord,
    },
}

/// Where authentication state lives.
///
/// Each method is atomic. An account operation that changes several rows (a role change and
/// the end of the account's sessions, a spent token and the change it pays for) is one
/// method, done in one transaction: a failure at any step — a taken email, a missing
/// account, a crash — leaves the store as it was, so a one-time token is spent only by the
/// change it authorises and a privilege change never survives without the sessions ending.
/// Steps that must not happen alone (a role change that keeps the sessions, a token spent
/// without its change) are deliberately not on this trait by themselves.
///
/// The audit log is not part of those transactions: [`AuthStore::append_audit`] is called
/// after the change has committed, as its own statement. The log is best-effort after the
/// fact (a failure to write it is logged and never undoes or refuses the change, see
/// `AuthService::audit`), and appending only after the commit means it never records a
/// change that was rolled back.
pub trait AuthStore: Send + Sync {
    // Users.
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
    /// conditional update as [`AuthStore::complete_login`] (nothing changes unless
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

    // MFA.
    /// Stores a new (unconfirmed) sealed TOTP secret; MFA stays off until
    /// [`AuthStore::enable_mfa`]. One conditional statement: only while MFA is off, so an
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

    // Sessions. They are opened only by the operations that need one (sign-in, signup,
    // password change, MFA changes), together with what those do to the other sessions.
    fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError>;
    fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Deletes the user's session with this public id; false if there is none.
    fn delete_session_by_public_id(
        &self,
        user_id: &str,
        public_id: &str,
    ) -> Result<bool, StoreError>;
    /// Deletes all of a user's sessions; returns how many there were.
    fn delete_user_sessions(&self, user_id: &str) -> Result<u64, StoreError>;
    fn list_user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// Deletes sessions idle since before `idle_before` or created before `created_before`.
    fn purge_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError>;

    // One-time tokens. A token is spent only by the operation it authorises (below), in the
    // same transaction as the change: a refused change leaves it unspent, and of two
    // requests racing with the same link exactly one gets it.
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Stores a token and voids its user's unused tokens of the same purpose (a new link
    /// voids older ones), in one transaction. A token without a user is only stored.
    fn replace_user_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token, if it exists, has this purpose, is unused and has not expired at `now`,
    /// without using it (to validate a form before spending the token).
    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Completes a password reset, in one transaction: spends the reset token (usable at
    /// `now` and issued for `user_id`), sets the password hash (clearing the failure count
    /// and any lock), voids the account's unused email-change tokens and ends all its
    /// sessions. Returns how many sessions ended, or `None` (nothing changed) when the token
    /// is not usable.
    fn complete_password_reset(
        &self,
        token_hash: &str,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Completes a signup, in one transaction: spends the signup token (usable at `now` and
    /// sent to `user.email`), creates the account and opens its first `session`. `None`
    /// (nothing changed) when the token is not usable; [`StoreError::Conflict`] with
    /// [`EMAIL_TAKEN`] when the email is taken, and then the token stays unspent.
    fn complete_signup(
        &self,
        token_hash: &str,
        now: i64,
        user: &NewUser,
        session: &SessionRecord,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Applies an email change, in one transaction: spends the email-change token (usable
    /// at `now`), sets its account's email to the token's address, voids the account's
    /// unused reset tokens (they went to the old address) and ends all its sessions.
    /// Returns the changed account, or `None` (nothing changed) when the token is not
    /// usable. [`StoreError::Conflict`] when the address is taken, and then the token stays
    /// unspent.
    fn confirm_email_change(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError>;

    // API keys.
    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// All keys, or those of one user.
    fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;
    fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Returns false if the key does not exist or was already revoked.
    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError>;

    // App members (for private apps). Kept apart from the catalog, so a catalog apply does
    // not drop them.
    fn add_app_member(&self, app: &str, user_id: &str) -> Result<(), StoreError>;
    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn app_members(&self, app: &str) -> Result<Vec<String>, StoreError>;

    // Audit log (append-only: the store refuses updates and deletes of past events).
    fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError>;
    /// Newest first; `before` pages backwards by id.
    fn list_audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditEvent>, StoreError>;
}
