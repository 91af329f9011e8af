//! Workspace API keys: [`ApiKeyRecord`] and [`ApiKeyStore`] (the scope type,
//! [`ApiKeyScope`], is caller data in `auth`).
//!
//! The key itself is shown to its creator once; the store keeps its public id and the
//! SHA-256 of the whole key, never the key. Checking a presented key (hash, expiry,
//! revocation, the owner's state) is the auth service's job.

use super::StoreError;
pub use crate::auth::ApiKeyScope;

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

/// Where API keys live. Each method is atomic.
pub trait ApiKeyStore: Send + Sync {
    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// All keys, or those of one user.
    fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;
    fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Returns false if the key does not exist or was already revoked.
    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError>;
}
