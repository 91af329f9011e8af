//! Federated identities: [`IdentityStore`], which provider accounts (provider, `sub`) sign
//! in as which user, and the pending OpenID Connect sign-ins ([`SsoFlow`]).
//!
//! Owns the `user_identities` and `sso_flows` tables. A flow is taken exactly once
//! ([`IdentityStore::take_sso_flow`] deletes it in the same statement that reads it), so a
//! replayed `state` finds nothing, on any replica. The store never sees a flow's PKCE
//! verifier (only its SHA-256) and decides no policy: who may link what is the auth
//! service's.

use super::StoreError;
use super::users::{NewUser, UserRecord};

/// A provider account linked to a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkedIdentity {
    pub provider: String,
    pub subject: String,
    pub user_id: String,
    /// The email the provider gave when linked (for the owner's list), if any.
    pub email: Option<String>,
    pub linked_at: i64,
    pub last_sign_in_at: Option<i64>,
}

/// A sign-in started with a provider and not finished yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoFlow {
    /// Hex SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    pub provider: String,
    pub nonce: String,
    /// Hex SHA-256 of the PKCE verifier kept in the browser's flow cookie.
    pub verifier_hash: String,
    /// Where the browser goes after signing in (a path on this instance).
    pub return_to: String,
    /// A signed-in user linking this provider to their account, else a sign-in.
    pub link_user: Option<String>,
    pub expires_at: i64,
}

/// Where federated identities live. Each method is atomic.
pub trait IdentityStore: Send + Sync {
    fn begin_sso_flow(&self, flow: &SsoFlow) -> Result<(), StoreError>;
    /// Removes and returns the flow with this state, if it exists and has not expired at
    /// `now` (an expired one is removed as well). Flows nobody finishes are removed a day
    /// after they expire, as new ones begin.
    fn take_sso_flow(&self, state_hash: &str, now: i64) -> Result<Option<SsoFlow>, StoreError>;
    /// The user a provider account signs in as.
    fn user_for_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Links a provider account to an existing user. An account already linked (to anyone)
    /// is [`StoreError::Conflict`]`("identity")`; a missing user `NotFound("user")`.
    fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), StoreError>;
    /// Creates a user and links the provider account to it, in one transaction (a taken
    /// email is `Conflict(EMAIL_TAKEN)` and nothing is written).
    fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &LinkedIdentity,
    ) -> Result<UserRecord, StoreError>;
    fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, StoreError>;
    /// False if no such link.
    fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<bool, StoreError>;
    fn record_identity_sign_in(
        &self,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<(), StoreError>;
}
