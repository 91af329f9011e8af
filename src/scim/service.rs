//! The SCIM rules over the metadata store: list with a filter and pagination, create,
//! replace, patch (the patched JSON read as a replacement), deactivate and delete users and
//! groups. Each change is one store transaction, audited after it commits (actor `scim`).
//!
//! Never deactivates or deletes the last enabled admin (the CLI stays the way out). No
//! HTTP here: errors are [`ScimError`]s, which `routes` answers.

use std::sync::Arc;

use serde_json::Value;

use super::filter::{self, Filter, FilterAttribute};
use super::resource::{self, GroupInput, UserInput};
use super::{MAX_COUNT, ScimError, patch};
use crate::audit::Audit;
use crate::auth::{ClientInfo, Role};
use crate::clock::SharedClock;
use crate::store::scim::{
    EXTERNAL_ID_TAKEN, GROUP_NAME_TAKEN, ScimGroup, ScimUser, ScimUserUpdate,
};
use crate::store::users::{EMAIL_TAKEN, NewUser};
use crate::store::{Store, StoreError};

/// One page of a list.
#[derive(Debug)]
pub struct Page<T> {
    pub total_results: usize,
    /// 1-based index of the first item.
    pub start_index: usize,
    pub resources: Vec<T>,
}

/// One resource of a search at the root (`POST /.search`): Users first, then Groups.
#[derive(Debug)]
pub enum Found {
    User(Box<ScimUser>),
    Group(ScimGroup),
}

/// SCIM provisioning over the instance's store.
pub struct ScimService {
    store: Arc<dyn Store>,
    audit: Arc<Audit>,
    clock: SharedClock,
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> ScimError {
        match error {
            StoreError::Conflict(what) if what == EMAIL_TAKEN => {
                ScimError::Uniqueness("another user has this userName or email".into())
            }
            StoreError::Conflict(what) if what == EXTERNAL_ID_TAKEN => {
                ScimError::Uniqueness("another resource has this externalId".into())
            }
            StoreError::Conflict(what) if what == GROUP_NAME_TAKEN => ScimError::Uniqueness(
                "another group has this displayName (or one that makes the same group name)".into(),
            ),
            StoreError::NotFound("user") => ScimError::NotFound("no such User".into()),
            StoreError::NotFound("group") => ScimError::NotFound("no such Group".into()),
            other => {
                tracing::error!(error = %other, "SCIM store operation failed");
                ScimError::Internal
            }
        }
    }
}

/// Applies `startIndex` (1-based; below 1 reads as 1) and `count` (default and maximum
/// [`MAX_COUNT`]; 0 gives only the total).
fn paginate<T>(items: Vec<T>, start: Option<i64>, count: Option<i64>) -> Page<T> {
    let total_results = items.len();
    let start_index = start.unwrap_or(1).max(1) as usize;
    let count = count.unwrap_or(MAX_COUNT as i64).clamp(0, MAX_COUNT as i64) as usize;
    let resources = items
        .into_iter()
        .skip(start_index - 1)
        .take(count)
        .collect();
    Page {
        total_results,
        start_index,
        resources,
    }
}

impl ScimService {
    pub fn new(store: Arc<dyn Store>, audit: Arc<Audit>, clock: SharedClock) -> ScimService {
        ScimService {
            store,
            audit,
            clock,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Store) -> Result<T, ScimError> + Send + 'static,
    ) -> Result<T, ScimError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|_| ScimError::Internal)?
    }

    async fn audit(&self, name: &str, user_id: Option<&str>, client: &ClientInfo, details: Value) {
        let mut event = self.audit.event(name, client);
        event.user_id = user_id.map(str::to_string);
        event.actor = Some("scim".into());
        event.details = Some(details.to_string());
        self.audit.append(event).await;
    }

    // ----- Users -----------------------------------------------------------------------

    pub async fn list_users(
        &self,
        filter: Option<&str>,
        start: Option<i64>,
        count: Option<i64>,
    ) -> Result<Page<ScimUser>, ScimError> {
        let filter = filter
            .map(|text| {
                filter::parse(
                    text,
                    &[
                        FilterAttribute::UserName,
                        FilterAttribute::ExternalId,
                        FilterAttribute::Id,
                    ],
                )
            })
            .transpose()?;
        let users = self.run(|store| Ok(store.scim_users()?)).await?;
        let users = users
            .into_iter()
            .filter(|user| filter.as_ref().is_none_or(|f| user_matches(f, user)))
            .collect();
        Ok(paginate(users, start, count))
    }

    pub async fn user(&self, id: &str) -> Result<ScimUser, ScimError> {
        let id = id.to_string();
        self.run(move |store| {
            store
                .scim_user(&id)?
                .ok_or_else(|| ScimError::NotFound("no such User".into()))
        })
        .await
    }

    pub async fn create_user(
        &self,
        body: &Value,
        client: &ClientInfo,
    ) -> Result<ScimUser, ScimError> {
        let mut input = resource::read_user(body)?;
        // A new User without `active` is an enabled account, shown as `active: true`.
        let active = input.active.unwrap_or(true);
        input.profile.active_removed = false;
        let id = uuid::Uuid::new_v4().to_string();
        let new = NewUser {
            email: input
                .email
                .clone()
                .unwrap_or_else(|| resource::placeholder_email(&id)),
            id,
            display_name: input.display_name.clone(),
            role: Role::Viewer,
            groups: Vec::new(),
            password_hash: None,
            created_at: self.clock.now(),
        };
        let profile = input.profile.clone();
        let created = self
            .run(move |store| Ok(store.create_scim_user(&new, &profile, active)?))
            .await?;
        self.audit(
            "scim_user_created",
            Some(&created.user.id),
            client,
            serde_json::json!({ "active": active }),
        )
        .await;
        Ok(created)
    }

    pub async fn replace_user(
        &self,
        id: &str,
        body: &Value,
        client: &ClientInfo,
    ) -> Result<ScimUser, ScimError> {
        let input = resource::read_user(body)?;
        self.write_user(id, input, client).await
    }

    pub async fn patch_user(
        &self,
        id: &str,
        message: &Value,
        client: &ClientInfo,
    ) -> Result<ScimUser, ScimError> {
        let current = self.user(id).await?;
        let mut document = resource::render_user(&current, "");
        patch::apply(&mut document, message)?;
        let input = resource::read_user(&document)?;
        self.write_user(id, input, client).await
    }

    async fn write_user(
        &self,
        id: &str,
        input: UserInput,
        client: &ClientInfo,
    ) -> Result<ScimUser, ScimError> {
        let (id, now) = (id.to_string(), self.clock.now());
        let update = ScimUserUpdate {
            email: input
                .email
                .unwrap_or_else(|| resource::placeholder_email(&id)),
            display_name: input.display_name,
            profile: input.profile,
            active: input.active,
        };
        let (before, after) = self
            .run(move |store| {
                let before = store
                    .scim_user(&id)?
                    .ok_or_else(|| ScimError::NotFound("no such User".into()))?;
                if update.active == Some(false) && !before.user.disabled {
                    refuse_last_admin(store, &before)?;
                }
                // A password reset goes to the account's email: moving the email of an
                // account with a password (or of an admin) would hand that account to
                // whoever holds the new address.
                if update.email != before.user.email
                    && (before.user.password_hash.is_some() || before.user.role == Role::Admin)
                {
                    return Err(ScimError::Mutability(
                        "the email of an admin or of an account with a password is changed \
                         by its owner (or `sluice user`), not by SCIM"
                            .into(),
                    ));
                }
                let after = store.update_scim_user(&id, &update, now)?;
                Ok((before, after))
            })
            .await?;
        let name = match (before.user.disabled, after.user.disabled) {
            (false, true) => "scim_user_deactivated",
            (true, false) => "scim_user_reactivated",
            _ => "scim_user_updated",
        };
        self.audit(
            name,
            Some(&after.user.id),
            client,
            serde_json::json!({ "email_changed": before.user.email != after.user.email }),
        )
        .await;
        Ok(after)
    }

    /// SCIM's delete: the account is disabled, its sessions end and its API keys are
    /// revoked, it leaves its SCIM groups, and SCIM answers 404 for it from then on.
    pub async fn delete_user(&self, id: &str, client: &ClientInfo) -> Result<(), ScimError> {
        let (user_id, now) = (id.to_string(), self.clock.now());
        self.run(move |store| {
            let user = store
                .scim_user(&user_id)?
                .ok_or_else(|| ScimError::NotFound("no such User".into()))?;
            if !user.user.disabled {
                refuse_last_admin(store, &user)?;
            }
            Ok(store.delete_scim_user(&user_id, now)?)
        })
        .await?;
        self.audit("scim_user_deleted", Some(id), client, serde_json::json!({}))
            .await;
        Ok(())
    }

    // ----- Groups ----------------------------------------------------------------------

    pub async fn list_groups(
        &self,
        filter: Option<&str>,
        start: Option<i64>,
        count: Option<i64>,
    ) -> Result<Page<ScimGroup>, ScimError> {
        let filter = filter
            .map(|text| {
                filter::parse(
                    text,
                    &[
                        FilterAttribute::DisplayName,
                        FilterAttribute::ExternalId,
                        FilterAttribute::Id,
                    ],
                )
            })
            .transpose()?;
        let groups = self.run(|store| Ok(store.scim_groups()?)).await?;
        let groups = groups
            .into_iter()
            .filter(|group| filter.as_ref().is_none_or(|f| group_matches(f, group)))
            .collect();
        Ok(paginate(groups, start, count))
    }

    /// A search at the root (RFC 7644 3.4.3): Users and Groups, in that order, with one
    /// filter over both (`userName` matches no Group; `displayName` matches either).
    pub async fn search(
        &self,
        filter: Option<&str>,
        start: Option<i64>,
        count: Option<i64>,
    ) -> Result<Page<Found>, ScimError> {
        let filter = filter
            .map(|text| {
                filter::parse(
                    text,
                    &[
                        FilterAttribute::UserName,
                        FilterAttribute::DisplayName,
                        FilterAttribute::ExternalId,
                        FilterAttribute::Id,
                    ],
                )
            })
            .transpose()?;
        let (users, groups) = self
            .run(|store| Ok((store.scim_users()?, store.scim_groups()?)))
            .await?;
        let mut found: Vec<Found> = users
            .into_iter()
            .filter(|user| filter.as_ref().is_none_or(|f| user_matches(f, user)))
            .map(|user| Found::User(Box::new(user)))
            .collect();
        found.extend(
            groups
                .into_iter()
                .filter(|group| filter.as_ref().is_none_or(|f| group_matches(f, group)))
                .map(Found::Group),
        );
        Ok(paginate(found, start, count))
    }

    pub async fn group(&self, id: &str) -> Result<ScimGroup, ScimError> {
        let id = id.to_string();
        self.run(move |store| {
            store
                .scim_group(&id)?
                .ok_or_else(|| ScimError::NotFound("no such Group".into()))
        })
        .await
    }

    pub async fn create_group(
        &self,
        body: &Value,
        client: &ClientInfo,
    ) -> Result<ScimGroup, ScimError> {
        let input = resource::read_group(body)?;
        let now = self.clock.now();
        let group = ScimGroup {
            id: uuid::Uuid::new_v4().to_string(),
            display_name: input.display_name,
            group_name: input.group_name,
            external_id: input.external_id,
            members: input.members,
            created_at: now,
            updated_at: now,
        };
        let stored = group.clone();
        self.run(move |store| Ok(store.put_scim_group(&stored, true)?))
            .await
            .map_err(member_not_found)?;
        self.audit_group("scim_group_created", &group, client).await;
        Ok(group)
    }

    pub async fn replace_group(
        &self,
        id: &str,
        body: &Value,
        client: &ClientInfo,
    ) -> Result<ScimGroup, ScimError> {
        let input = resource::read_group(body)?;
        self.write_group(id, input, client).await
    }

    pub async fn patch_group(
        &self,
        id: &str,
        message: &Value,
        client: &ClientInfo,
    ) -> Result<ScimGroup, ScimError> {
        let current = self.group(id).await?;
        let mut document = resource::render_group(&current, "");
        patch::apply(&mut document, message)?;
        let input = resource::read_group(&document)?;
        self.write_group(id, input, client).await
    }

    async fn write_group(
        &self,
        id: &str,
        input: GroupInput,
        client: &ClientInfo,
    ) -> Result<ScimGroup, ScimError> {
        let current = self.group(id).await?;
        let group = ScimGroup {
            display_name: input.display_name,
            group_name: input.group_name,
            external_id: input.external_id,
            members: input.members,
            updated_at: self.clock.now(),
            ..current
        };
        let stored = group.clone();
        self.run(move |store| Ok(store.put_scim_group(&stored, false)?))
            .await
            .map_err(member_not_found)?;
        self.audit_group("scim_group_updated", &group, client).await;
        Ok(group)
    }

    pub async fn delete_group(&self, id: &str, client: &ClientInfo) -> Result<(), ScimError> {
        let group = self.group(id).await?;
        let group_id = group.id.clone();
        self.run(move |store| Ok(store.delete_scim_group(&group_id)?))
            .await?;
        self.audit_group("scim_group_deleted", &group, client).await;
        Ok(())
    }

    async fn audit_group(&self, name: &str, group: &ScimGroup, client: &ClientInfo) {
        let details = serde_json::json!({
            "group_id": group.id,
            "group": group.group_name,
            "members": group.members.len(),
        });
        self.audit(name, None, client, details).await;
    }
}

fn user_matches(filter: &Filter, user: &ScimUser) -> bool {
    let profile = user.profile.as_ref();
    match filter.attribute {
        FilterAttribute::UserName => filter.matches(Some(
            profile.map_or(user.user.email.as_str(), |p| p.user_name.as_str()),
        )),
        FilterAttribute::ExternalId => {
            filter.matches(profile.and_then(|p| p.external_id.as_deref()))
        }
        FilterAttribute::Id => filter.matches(Some(&user.user.id)),
        // Only a search at the root filters Users by `displayName`: the SCIM one shown.
        FilterAttribute::DisplayName => filter.matches(match profile {
            Some(profile) => profile.display_name.as_deref(),
            None => Some(user.user.display_name.as_str()),
        }),
    }
}

fn group_matches(filter: &Filter, group: &ScimGroup) -> bool {
    match filter.attribute {
        FilterAttribute::DisplayName => filter.matches(Some(&group.display_name)),
        FilterAttribute::ExternalId => filter.matches(group.external_id.as_deref()),
        FilterAttribute::Id => filter.matches(Some(&group.id)),
        FilterAttribute::UserName => false,
    }
}

/// A group member that is not a (live) user is a bad value, not a missing group.
fn member_not_found(error: ScimError) -> ScimError {
    match error {
        ScimError::NotFound(what) if what.contains("User") => {
            ScimError::InvalidValue("a member's `value` is not the id of a User".into())
        }
        other => other,
    }
}

/// Refuses to disable the last enabled admin.
fn refuse_last_admin(store: &dyn Store, user: &ScimUser) -> Result<(), ScimError> {
    if user.user.role != Role::Admin {
        return Ok(());
    }
    let admins = store
        .list_users()?
        .iter()
        .filter(|u| u.role == Role::Admin && !u.disabled)
        .count();
    if admins <= 1 {
        return Err(ScimError::Mutability(
            "this is the last enabled admin: add or enable another admin first".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        let page = paginate((1..=5).collect(), Some(2), Some(2));
        assert_eq!((page.total_results, page.start_index), (5, 2));
        assert_eq!(page.resources, vec![2, 3]);
        let page = paginate((1..=5).collect::<Vec<i32>>(), Some(0), Some(0));
        assert_eq!((page.total_results, page.start_index), (5, 1));
        assert!(page.resources.is_empty());
        let page = paginate((1..=5).collect::<Vec<i32>>(), Some(9), None);
        assert!(page.resources.is_empty());
        let page = paginate((1..=500).collect::<Vec<i32>>(), None, Some(1000));
        assert_eq!(page.resources.len(), MAX_COUNT);
    }
}
