//! What authentication keeps in the metadata store, and the interface it keeps it through.
//!
//! [`AuthStore`] is implemented by the SQLite store (and later the PostgreSQL one). Calls are
//! blocking; async callers use `spawn_blocking`. Every secret-derived value here is already
//! hashed (passwords with argon2id, session ids, tokens, API keys and recovery codes with
//! SHA-256) or sealed (TOTP secrets, under the instance key): the store never sees a
//! plaintext credential. Times are Unix seconds.

use serde::{Deserialize, Serialize};

use super::Role;
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

/// The apps and queries an API key may run. Empty lists mean nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyScope {
    /// Whole apps: every query in them.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Single queries, as `app/query`.
    #[serde(default)]
    pub queries: Vec<String>,
}

impl ApiKeyScope {
    pub fn allows(&self, app: &str, query: &str) -> bool {
        self.apps.iter().any(|a| a == app)
            || self.queries.iter().any(|q| {
                q.split_once('/')
                    .is_some_and(|(qa, qq)| qa == app && qq == query)
            })
    }
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

/// Where authentication state lives.
pub trait AuthStore: Send + Sync {
    // Users.
    /// Fails with [`StoreError::Conflict`] when the email is taken.
    fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError>;
    fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn count_users(&self) -> Result<u64, StoreError>;
    fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError>;
    fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError>;
    fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError>;
    fn set_display_name(&self, id: &str, name: &str) -> Result<(), StoreError>;
    /// Fails with [`StoreError::Conflict`] when the email is taken.
    fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError>;
    /// Sets the password hash and clears the failure count and any lock.
    fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError>;
    /// Adds one to the failure count in one statement; when it reaches `threshold`, locks
    /// the account until `now + lock_secs` and returns that time.
    fn record_login_failure(
        &self,
        id: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<FailureCount, StoreError>;
    /// Clears the failure count and sets `last_login_at`, unless the account is locked at
    /// `now` (then nothing changes and the answer is false).
    fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// Clears the failure count and any lock (an admin's unlock).
    fn clear_lockout(&self, id: &str) -> Result<(), StoreError>;

    // MFA.
    /// Stores a new (unconfirmed) sealed TOTP secret, or clears MFA entirely with `None`
    /// (secret, enabled flag, last step and recovery codes).
    fn set_totp_secret(&self, id: &str, sealed: Option<&str>) -> Result<(), StoreError>;
    fn set_mfa_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError>;
    /// Accepts `step` only if it is later than the last accepted one (compare-and-set);
    /// returns false for a replay.
    fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError>;
    /// Replaces the user's recovery codes (hex SHA-256 of each).
    fn replace_recovery_codes(&self, id: &str, hashes: &[String]) -> Result<(), StoreError>;
    /// Marks a recovery code used; false if it is unknown or already used.
    fn use_recovery_code(&self, id: &str, hash: &str, now: i64) -> Result<bool, StoreError>;
    fn remaining_recovery_codes(&self, id: &str) -> Result<u32, StoreError>;

    // Sessions.
    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;
    fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;
    fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError>;
    fn set_session_authenticated(&self, token_hash: &str, now: i64) -> Result<(), StoreError>;
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

    // One-time tokens.
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token, if it exists, has this purpose, is unused and has not expired at `now`,
    /// without using it (to validate a form before spending the token).
    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks the token used and returns it, if it exists, has this purpose, is unused and
    /// has not expired at `now` — all in one transaction, so a token works exactly once.
    fn consume_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Invalidates a user's unused tokens of one purpose (a new reset voids older links).
    fn revoke_user_tokens(&self, user_id: &str, purpose: TokenPurpose) -> Result<(), StoreError>;

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
