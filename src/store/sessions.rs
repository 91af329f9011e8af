//! Server-side sessions: [`SessionRecord`], [`SessionChange`] and [`SessionStore`], and
//! [`AuthChange`], the notice a shared store sends when a session, account or API key
//! changes (for the per-replica cache of sessions and keys).
//!
//! A session is found by the SHA-256 of the token in its cookie; the token itself never
//! reaches the store. Sessions are opened only by the account operations that need one
//! (sign-in, signup, password change, MFA changes), together with what those do to the
//! account's other sessions, so there is no method here that opens one alone.

use super::StoreError;

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

/// Where sessions live: reading, renewing and ending them. Each method is atomic.
pub trait SessionStore: Send + Sync {
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

    /// Notices of changed sessions, accounts and API keys, whoever made them, for a store
    /// several processes serve from at once (PostgreSQL). `None`: the store announces
    /// nothing (SQLite), and nothing may be cached from it.
    fn auth_changes(&self) -> Option<AuthChanges> {
        None
    }
}

/// A change announced by the store ([`SessionStore::auth_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    /// Listening (again): whatever changed while nobody listened went unannounced.
    Listening,
    /// The listening connection is lost: changes go unannounced until [`AuthChange::Listening`].
    Lost,
    /// The session with this token hash ended.
    Session(String),
    /// The account with this id changed (role, groups, disabled, password, ...) or was deleted.
    User(String),
    /// The API key with this id was revoked, changed or deleted.
    ApiKey(String),
}

/// A receiver of [`AuthChange`]s. A receiver that falls behind gets `Lagged` and must
/// forget everything it cached.
pub type AuthChanges = tokio::sync::broadcast::Receiver<AuthChange>;
