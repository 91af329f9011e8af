//! App membership: [`MemberStore`], which users may run a private app's queries.
//!
//! Kept apart from the catalog, so a catalog apply (which replaces every app) does not drop
//! members; a membership names an app that may not exist (any more). Whether a private app
//! lets a caller in is decided by the view plane, not here.

use super::StoreError;

/// One member of an app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppMember {
    pub user_id: String,
    /// May edit the app's settings and queries through the catalog API (a developer; an
    /// admin edits every app anyway, a viewer none).
    pub editor: bool,
}

/// Where app members live. Each method is atomic.
pub trait MemberStore: Send + Sync {
    /// Makes `user_id` a member of `app`, an editor or not; adding a member again sets the
    /// editor flag. A missing user is [`StoreError::NotFound`]`("user")`.
    fn add_app_member(&self, app: &str, user_id: &str, editor: bool) -> Result<(), StoreError>;
    /// False if the user was not a member.
    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Whether `user_id` is a member of `app` marked as an editor.
    fn is_app_editor(&self, app: &str, user_id: &str) -> Result<bool, StoreError>;
    fn app_members(&self, app: &str) -> Result<Vec<AppMember>, StoreError>;
    /// Removes every member of `app` (the app was deleted); returns how many.
    fn remove_app_members(&self, app: &str) -> Result<usize, StoreError>;
}
