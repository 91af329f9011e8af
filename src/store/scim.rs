//! SCIM 2.0 provisioning records and [`ScimStore`]: what an identity provider pushed about
//! an account (its `externalId`, `userName`, name parts) and its groups with their members.
//!
//! A SCIM user *is* a Sluice account (`users`); the SCIM profile sits beside it
//! (`scim_users`). A SCIM group (`scim_groups`, `scim_group_members`) is mirrored into its
//! members' `groups` list under its `group_name`, in the same transaction as every change
//! to it, so `{{ user.groups }}` and the grants see it at once. Deactivating an account
//! ends its sessions and revokes its API keys in the same transaction as the flag.
//!
//! The profile keeps what the IdP set as it set it (the SCIM `displayName`, every email,
//! whether it removed `active`); the account keeps what Sluice runs on (one login email, a
//! display name, the disabled flag). Only the account's email signs in or receives mail.

use super::StoreError;
use super::users::{NewUser, UserRecord};

/// What an identity provider keeps about a user besides the account's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScimProfile {
    /// The IdP's own id for the user; unique when set.
    pub external_id: Option<String>,
    /// `userName` as the IdP sent it (the account's email is its normalised form, or the
    /// primary email when `userName` is not an address).
    pub user_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub formatted: Option<String>,
    /// The SCIM `displayName` as the IdP set it; `None` when it set none or removed it (the
    /// account still has a display name, derived from the other attributes).
    pub display_name: Option<String>,
    /// Every email the IdP set, as it set them. `None` for a profile written before they
    /// were kept (SCIM then shows the account's email). Only the account's own email (one
    /// of these, or `userName`) signs in or receives mail; the others are only returned.
    pub emails: Option<Vec<ScimEmail>>,
    /// The IdP removed `active` (or replaced the User without it): SCIM returns no
    /// `active`, and the account keeps the state it had.
    pub active_removed: bool,
}

/// One of a User's `emails`, as the IdP set it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScimEmail {
    pub value: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// An account as SCIM sees it. `profile` is `None` for an account made outside SCIM (the
/// CLI, signup), which SCIM lists with its email as `userName` and may then manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub user: UserRecord,
    pub profile: Option<ScimProfile>,
    /// When the SCIM profile last changed (else the account's creation).
    pub updated_at: i64,
}

/// The changes one SCIM write makes to an account, all in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserUpdate {
    pub email: String,
    pub display_name: String,
    pub profile: ScimProfile,
    /// `Some(false)` disables the account, ends its sessions and revokes its API keys;
    /// `Some(true)` enables it; `None` leaves it as it is.
    pub active: Option<bool>,
}

/// A SCIM group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    pub id: String,
    pub display_name: String,
    /// The name in the members' `groups` lists (`displayName` made a valid group name).
    pub group_name: String,
    pub external_id: Option<String>,
    /// Member account ids, sorted.
    pub members: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The [`StoreError::Conflict`] names of SCIM's unique values.
pub const EXTERNAL_ID_TAKEN: &str = "resource with this externalId";
pub const GROUP_NAME_TAKEN: &str = "group with this name";

/// Where SCIM provisioning lives. Each method is one transaction.
pub trait ScimStore: Send + Sync {
    /// An account that SCIM has not deleted.
    fn scim_user(&self, id: &str) -> Result<Option<ScimUser>, StoreError>;
    /// Every account SCIM has not deleted, oldest first.
    fn scim_users(&self) -> Result<Vec<ScimUser>, StoreError>;
    /// Creates an account with its profile; an account SCIM deleted with this email is
    /// revived instead (same id) with `user`'s fields. [`StoreError::Conflict`] when the
    /// email belongs to a live account or the external id is taken.
    fn create_scim_user(
        &self,
        user: &NewUser,
        profile: &ScimProfile,
        active: bool,
    ) -> Result<ScimUser, StoreError>;
    /// Applies `update` to a live account: email, display name, profile, and the disabled
    /// flag (unless `update.active` is `None`); disabling also ends every session and
    /// revokes every API key (at `now`).
    fn update_scim_user(
        &self,
        id: &str,
        update: &ScimUserUpdate,
        now: i64,
    ) -> Result<ScimUser, StoreError>;
    /// SCIM's delete: disables the account, ends its sessions, revokes its API keys,
    /// removes it from SCIM groups and marks it deleted (SCIM answers 404 for it after).
    /// The account row stays, for the audit log and the data keyed by its id.
    fn delete_scim_user(&self, id: &str, now: i64) -> Result<(), StoreError>;
    fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>, StoreError>;
    fn scim_groups(&self) -> Result<Vec<ScimGroup>, StoreError>;
    /// Creates (`create`) or replaces a group with its members and brings every member's
    /// (old and new) `groups` list in line. [`StoreError::NotFound`]`("user")` for an
    /// unknown member, [`StoreError::Conflict`] for a taken name or external id.
    fn put_scim_group(&self, group: &ScimGroup, create: bool) -> Result<(), StoreError>;
    /// Deletes a group and takes its name out of its members' `groups`.
    fn delete_scim_group(&self, id: &str) -> Result<(), StoreError>;
}
