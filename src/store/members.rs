//! App membership: [`MemberStore`], which users may run a private app's queries.
//!
//! Kept apart from the catalog, so a catalog apply (which replaces every app) does not drop
//! members; a membership names an app that may not exist (any more). Whether a private app
//! lets a caller in is decided by the view plane, not here.

use super::StoreError;

/// Where app members live. Each method is atomic.
pub trait MemberStore: Send + Sync {
    /// Adding a member twice is not an error; a missing user is
    /// [`StoreError::NotFound`]`("user")`.
    fn add_app_member(&self, app: &str, user_id: &str) -> Result<(), StoreError>;
    /// False if the user was not a member.
    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn app_members(&self, app: &str) -> Result<Vec<String>, StoreError>;
}
