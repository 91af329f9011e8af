//! Accounts as the CLI and the admin API manage them: users (create, look up, list),
//! roles, groups, disabling, and the members of private apps.
//!
//! Owns the checks on account input (email, display name, groups). Must never keep a
//! session alive across a privilege change (role, groups, disabling end the account's
//! sessions in the same store operation) and never store a password other than hashed.

use super::{AuthError, AuthService};
use crate::auth::{ClientInfo, Role, normalize_email, password};
use crate::store::StoreError;
use crate::store::members::AppMember;
use crate::store::users::{NewUser, UserRecord};

impl AuthService {
    // ----- Users (CLI and admin API) ---------------------------------------------------

    /// Creates an account. `password` is checked against the policy and hashed.
    pub async fn create_user(
        &self,
        email: &str,
        display_name: &str,
        role: Role,
        groups: Vec<String>,
        password: Option<String>,
        actor: &str,
    ) -> Result<UserRecord, AuthError> {
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        let display_name = display_name.trim();
        if display_name.chars().count() > 200 || display_name.chars().any(char::is_control) {
            return Err(AuthError::InvalidInput(
                "`display_name` must be at most 200 characters without control characters".into(),
            ));
        }
        check_groups(&groups)?;
        let password_hash = match password {
            Some(password) => {
                password::check_policy(&password, &email, self.settings.password_min_length)?;
                Some(self.hash_off_thread(password).await?)
            }
            None => None,
        };
        let user = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.clone(),
            display_name: if display_name.is_empty() {
                email.clone()
            } else {
                display_name.to_string()
            },
            role,
            groups,
            password_hash,
            created_at: self.now(),
        };
        let created = self
            .run(move |store| match store.create_user(&user) {
                Err(StoreError::Conflict(_)) => Err(AuthError::Conflict(
                    "an account with this email already exists",
                )),
                other => Ok(other?),
            })
            .await?;
        let mut event = self.audit.event("user_created", &ClientInfo::default());
        event.user_id = Some(created.id.clone());
        event.email = Some(created.email.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "role": role.as_str() }).to_string());
        self.audit.append(event).await;
        Ok(created)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<UserRecord, AuthError> {
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        self.run(move |store| {
            store
                .user_by_email(&email)?
                .ok_or(AuthError::NotFound("user"))
        })
        .await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<UserRecord, AuthError> {
        let id = id.to_string();
        self.run(move |store| store.user_by_id(&id)?.ok_or(AuthError::NotFound("user")))
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, AuthError> {
        self.run(|store| Ok(store.list_users()?)).await
    }

    /// Changes a role. The account's sessions end (a privilege change never keeps an old
    /// session id), so the new role starts with a new sign-in. `fresh_auth`: the actor is
    /// an admin's session that passed the fresh-auth check (the audit entry says so; the
    /// role-change alert reports changes made without it).
    pub async fn set_role(
        &self,
        user_id: &str,
        role: Role,
        actor: &str,
        fresh_auth: bool,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let (before, after) = self
            .run(move |store| {
                let before = store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                store.set_role_and_end_sessions(&id, role)?;
                let after = store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                Ok((before, after))
            })
            .await?;
        let mut event = self.audit.event("role_changed", client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(
            serde_json::json!({
                "from": before.role.as_str(),
                "to": role.as_str(),
                "fresh_auth": fresh_auth,
            })
            .to_string(),
        );
        self.audit.append(event).await;
        Ok(after)
    }

    pub async fn set_groups(
        &self,
        user_id: &str,
        groups: Vec<String>,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        check_groups(&groups)?;
        let id = user_id.to_string();
        let logged = groups.clone();
        let after = self
            .run(move |store| {
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                store.set_groups_and_end_sessions(&id, &groups)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let mut event = self.audit.event("groups_changed", client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "groups": logged }).to_string());
        self.audit.append(event).await;
        Ok(after)
    }

    /// Disables (or re-enables) an account; disabling ends its sessions and stops its keys
    /// working.
    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let after = self
            .run(move |store| {
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                // Disabling ends the account's sessions in the same store operation.
                store.set_disabled(&id, disabled)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let name = if disabled {
            "user_disabled"
        } else {
            "user_enabled"
        };
        let mut event = self.audit.event(name, client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        self.audit.append(event).await;
        Ok(after)
    }

    /// Sets a user's password as an administrator (`sluice user set-password`, the
    /// break-glass path when no reset mail can be sent). The password is checked against
    /// the policy; the account's sessions end, its pending reset and email-change links stop
    /// working, and any lockout is lifted, in one store operation.
    pub async fn set_password(
        &self,
        user_id: &str,
        password: String,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let user = self.user_by_id(user_id).await?;
        password::check_policy(&password, &user.email, self.settings.password_min_length)?;
        let hash = self.hash_off_thread(password).await?;
        let (id, now) = (user.id.clone(), self.now());
        let after = self
            .run(move |store| {
                store.set_password_and_end_sessions(&id, &hash, now)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let mut event = self.audit.event("password_set", client);
        event.user_id = Some(after.id.clone());
        event.email = Some(after.email.clone());
        event.actor = Some(actor.to_string());
        self.audit.append(event).await;
        Ok(after)
    }

    /// Deletes an account with its sessions, API keys, MFA state and memberships. The audit
    /// log keeps its events (with the email, so they stay readable). The last enabled admin
    /// is not deleted: add or enable another admin first.
    pub async fn delete_user(
        &self,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let deleted = self
            .run(move |store| {
                let user = store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                if user.role == Role::Admin && !user.disabled {
                    let admins = store
                        .list_users()?
                        .iter()
                        .filter(|u| u.role == Role::Admin && !u.disabled)
                        .count();
                    if admins <= 1 {
                        return Err(AuthError::Conflict(
                            "this is the last enabled admin: add or enable another admin first",
                        ));
                    }
                }
                store.delete_user(&id)?;
                Ok(user)
            })
            .await?;
        let mut event = self.audit.event("user_deleted", client);
        event.user_id = Some(deleted.id.clone());
        event.email = Some(deleted.email.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "role": deleted.role.as_str() }).to_string());
        self.audit.append(event).await;
        Ok(deleted)
    }

    // ----- App membership --------------------------------------------------------------

    pub async fn is_member(&self, app: &str, user_id: &str) -> Result<bool, AuthError> {
        let (app, id) = (app.to_string(), user_id.to_string());
        self.run(move |store| Ok(store.is_app_member(&app, &id)?))
            .await
    }

    /// Whether `user_id` may edit `app` through the catalog API as a member (see
    /// [`MemberStore::is_app_editor`](crate::store::members::MemberStore::is_app_editor)).
    pub async fn is_editor(&self, app: &str, user_id: &str) -> Result<bool, AuthError> {
        let (app, id) = (app.to_string(), user_id.to_string());
        self.run(move |store| Ok(store.is_app_editor(&app, &id)?))
            .await
    }

    /// Makes `user_id` a member of `app` (an editor or not; adding again sets the flag).
    pub async fn add_member(
        &self,
        app: &str,
        user_id: &str,
        editor: bool,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (a, id) = (app.to_string(), user_id.to_string());
        self.run(move |store| {
            store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
            Ok(store.add_app_member(&a, &id, editor)?)
        })
        .await?;
        let mut event = self.audit.event("member_added", client);
        event.user_id = Some(user_id.to_string());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "app": app, "editor": editor }).to_string());
        self.audit.append(event).await;
        Ok(())
    }

    pub async fn remove_member(
        &self,
        app: &str,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (a, id) = (app.to_string(), user_id.to_string());
        let removed = self
            .run(move |store| Ok(store.remove_app_member(&a, &id)?))
            .await?;
        if !removed {
            return Err(AuthError::NotFound("member"));
        }
        let mut event = self.audit.event("member_removed", client);
        event.user_id = Some(user_id.to_string());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "app": app }).to_string());
        self.audit.append(event).await;
        Ok(())
    }

    /// The ids of `app`'s members.
    pub async fn members(&self, app: &str) -> Result<Vec<String>, AuthError> {
        let members = self.member_list(app).await?;
        Ok(members.into_iter().map(|m| m.user_id).collect())
    }

    /// `app`'s members with their editor flag.
    pub async fn member_list(&self, app: &str) -> Result<Vec<AppMember>, AuthError> {
        let app = app.to_string();
        self.run(move |store| Ok(store.app_members(&app)?)).await
    }
}

fn check_groups(groups: &[String]) -> Result<(), AuthError> {
    let valid = groups.len() <= 100
        && groups.iter().all(|g| {
            (1..=64).contains(&g.len())
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
    if valid {
        Ok(())
    } else {
        Err(AuthError::InvalidInput(
            "`groups` must be at most 100 names of 1 to 64 characters of [A-Za-z0-9_.-]".into(),
        ))
    }
}
