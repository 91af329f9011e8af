//! [`ScimStore`] for the PostgreSQL store: `scim_users`, `scim_groups` and
//! `scim_group_members`, beside `users`.
//!
//! Every write is one transaction that also does what follows from it, as on SQLite: a
//! deactivation ends the account's sessions and revokes its API keys; a group change
//! rewrites its members' `groups` lists. SCIM writes take one advisory transaction lock
//! ([`SCIM_LOCK`]), so two replicas' group changes never interleave their rewrites of the
//! same members' lists (SQLite gets the same from its IMMEDIATE transactions).

use std::collections::BTreeSet;

use tokio_postgres::error::SqlState;

use super::rows::{Db, constraint, encode_json, failure};
use super::sessions::delete_user_sessions;
use super::users::{insert_user, user_by_id};
use super::{Finish, PostgresStore, decode, pg};
use crate::store::StoreError;
use crate::store::scim::{
    EXTERNAL_ID_TAKEN, GROUP_NAME_TAKEN, ScimGroup, ScimProfile, ScimStore, ScimUser,
    ScimUserUpdate,
};
use crate::store::users::{EMAIL_TAKEN, NewUser};

/// The advisory lock every SCIM write holds for its transaction.
const SCIM_LOCK: i64 = 0x0005_c1ce_5c13;

/// A taken unique value: the email (`users`), the external id or the group name.
fn unique_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| match source.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
            let name = constraint(&source).unwrap_or("");
            if name.contains("external_id") {
                StoreError::Conflict(EXTERNAL_ID_TAKEN)
            } else if name.contains("group_name") {
                StoreError::Conflict(GROUP_NAME_TAKEN)
            } else {
                StoreError::Conflict(EMAIL_TAKEN)
            }
        }
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound("user"),
        _ => failure(context, source),
    }
}

async fn lock(db: &impl Db) -> Result<(), StoreError> {
    db.query_one("SELECT pg_advisory_xact_lock($1)", &[&SCIM_LOCK])
        .await
        .map_err(pg("locking SCIM"))?;
    Ok(())
}

/// The profile row of an account: `(profile, updated_at, deleted)`.
type ProfileRow = (ScimProfile, i64, bool);

async fn profile_of(db: &impl Db, id: &str) -> Result<Option<ProfileRow>, StoreError> {
    db.query_opt(
        "SELECT external_id, user_name, given_name, family_name, formatted, updated_at, \
             deleted_at IS NOT NULL, display_name, emails, active_removed \
             FROM scim_users WHERE user_id = $1",
        &[&id],
    )
    .await
    .map_err(pg("reading a SCIM profile"))?
    .map(|row| -> Result<ProfileRow, StoreError> {
        let emails: Option<String> = row.get(8);
        Ok((
            ScimProfile {
                external_id: row.get(0),
                user_name: row.get(1),
                given_name: row.get(2),
                family_name: row.get(3),
                formatted: row.get(4),
                display_name: row.get(7),
                emails: emails
                    .map(|json| decode("SCIM profile", id, &json))
                    .transpose()?,
                active_removed: row.get(9),
            },
            row.get(5),
            row.get(6),
        ))
    })
    .transpose()
}

async fn live_user(db: &impl Db, id: &str) -> Result<Option<ScimUser>, StoreError> {
    let Some(user) = user_by_id(db, id).await? else {
        return Ok(None);
    };
    match profile_of(db, id).await? {
        Some((_, _, true)) => Ok(None),
        Some((profile, updated_at, false)) => Ok(Some(ScimUser {
            user,
            profile: Some(profile),
            updated_at,
        })),
        None => Ok(Some(ScimUser {
            updated_at: user.created_at,
            user,
            profile: None,
        })),
    }
}

async fn upsert_profile(
    db: &impl Db,
    id: &str,
    profile: &ScimProfile,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO scim_users (user_id, external_id, user_name, given_name, family_name, \
         formatted, deleted_at, updated_at, display_name, emails, active_removed) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10) \
         ON CONFLICT (user_id) DO UPDATE SET external_id = $2, user_name = $3, given_name = $4, \
         family_name = $5, formatted = $6, deleted_at = NULL, updated_at = $7, \
         display_name = $8, emails = $9, active_removed = $10",
        &[
            &id,
            &profile.external_id,
            &profile.user_name,
            &profile.given_name,
            &profile.family_name,
            &profile.formatted,
            &now,
            &profile.display_name,
            &profile.emails.as_ref().map(encode_json),
            &profile.active_removed,
        ],
    )
    .await
    .map_err(unique_error("writing a SCIM profile"))?;
    Ok(())
}

/// Disables an account and ends what it holds: sessions deleted, API keys revoked.
async fn deactivate(db: &impl Db, id: &str, now: i64) -> Result<(), StoreError> {
    db.execute("UPDATE users SET disabled = TRUE WHERE id = $1", &[&id])
        .await
        .map_err(pg("disabling a user"))?;
    delete_user_sessions(db, id).await?;
    db.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        &[&id, &now],
    )
    .await
    .map_err(pg("revoking API keys"))?;
    Ok(())
}

async fn group_names(db: &impl Db) -> Result<BTreeSet<String>, StoreError> {
    Ok(db
        .query("SELECT group_name FROM scim_groups", &[])
        .await
        .map_err(pg("reading SCIM groups"))?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Rewrites `user_ids`' `groups`: the groups no SCIM group had before this change
/// (`scim_before`) nor has now, then the SCIM groups each is a member of now.
async fn sync_groups(
    db: &impl Db,
    user_ids: &BTreeSet<String>,
    scim_before: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let scim_now = group_names(db).await?;
    for id in user_ids {
        let stored: Option<String> = db
            .query_opt("SELECT \"groups\" FROM users WHERE id = $1", &[id])
            .await
            .map_err(pg("reading a user's groups"))?
            .map(|row| row.get(0));
        let Some(stored) = stored else { continue };
        let current: Vec<String> = decode("user", id, &stored)?;
        let mut groups: Vec<String> = current
            .into_iter()
            .filter(|g| !scim_before.contains(g) && !scim_now.contains(g))
            .collect();
        let member_of = db
            .query(
                "SELECT g.group_name FROM scim_group_members m JOIN scim_groups g \
                 ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY g.group_name COLLATE \"C\"",
                &[id],
            )
            .await
            .map_err(pg("reading a user's SCIM groups"))?;
        groups.extend(member_of.iter().map(|row| row.get::<_, String>(0)));
        db.execute(
            "UPDATE users SET \"groups\" = $2 WHERE id = $1",
            &[id, &encode_json(&groups)],
        )
        .await
        .map_err(pg("writing a user's groups"))?;
    }
    Ok(())
}

async fn members_of(db: &impl Db, group_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(db
        .query(
            "SELECT user_id FROM scim_group_members WHERE group_id = $1 \
             ORDER BY user_id COLLATE \"C\"",
            &[&group_id],
        )
        .await
        .map_err(pg("reading group members"))?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

async fn group_where(db: &impl Db, id: Option<&str>) -> Result<Vec<ScimGroup>, StoreError> {
    let rows = db
        .query(
            "SELECT id, display_name, group_name, external_id, created_at, updated_at \
             FROM scim_groups WHERE $1::text IS NULL OR id = $1 \
             ORDER BY created_at, id COLLATE \"C\"",
            &[&id],
        )
        .await
        .map_err(pg("reading SCIM groups"))?;
    let mut groups = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.get(0);
        groups.push(ScimGroup {
            members: members_of(db, &id).await?,
            id,
            display_name: row.get(1),
            group_name: row.get(2),
            external_id: row.get(3),
            created_at: row.get(4),
            updated_at: row.get(5),
        });
    }
    Ok(groups)
}

impl ScimStore for PostgresStore {
    fn scim_user(&self, id: &str) -> Result<Option<ScimUser>, StoreError> {
        self.read("reading a SCIM user", async |tx| live_user(tx, id).await)
    }

    fn scim_users(&self) -> Result<Vec<ScimUser>, StoreError> {
        self.read("listing SCIM users", async |tx| {
            let ids: Vec<String> = tx
                .query(
                    "SELECT id FROM users ORDER BY created_at, id COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(pg("listing users"))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let mut users = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(user) = live_user(tx, &id).await? {
                    users.push(user);
                }
            }
            Ok(users)
        })
    }

    fn create_scim_user(
        &self,
        user: &NewUser,
        profile: &ScimProfile,
        active: bool,
    ) -> Result<ScimUser, StoreError> {
        self.write("creating a SCIM user", async |tx| {
            lock(tx).await?;
            let existing: Option<String> = tx
                .query_opt("SELECT id FROM users WHERE email = $1", &[&user.email])
                .await
                .map_err(pg("reading a user"))?
                .map(|row| row.get(0));
            let id = match existing {
                Some(found) => match profile_of(tx, &found).await? {
                    // Revived: the IdP provisions again an account it deleted.
                    Some((_, _, true)) => {
                        tx.execute(
                            "UPDATE users SET display_name = $2 WHERE id = $1",
                            &[&found, &user.display_name],
                        )
                        .await
                        .map_err(pg("reviving a user"))?;
                        found
                    }
                    _ => return Err(StoreError::Conflict(EMAIL_TAKEN)),
                },
                None => insert_user(tx, user).await?.id,
            };
            upsert_profile(tx, &id, profile, user.created_at).await?;
            tx.execute(
                "UPDATE users SET disabled = $2 WHERE id = $1",
                &[&id, &!active],
            )
            .await
            .map_err(pg("creating a user"))?;
            let created = live_user(tx, &id)
                .await?
                .ok_or(StoreError::NotFound("user"))?;
            Ok(Finish::Commit(created))
        })
    }

    fn update_scim_user(
        &self,
        id: &str,
        update: &ScimUserUpdate,
        now: i64,
    ) -> Result<ScimUser, StoreError> {
        self.write("updating a SCIM user", async |tx| {
            lock(tx).await?;
            if live_user(tx, id).await?.is_none() {
                return Err(StoreError::NotFound("user"));
            }
            tx.execute(
                "UPDATE users SET email = $2, display_name = $3 WHERE id = $1",
                &[&id, &update.email, &update.display_name],
            )
            .await
            .map_err(unique_error("updating a user"))?;
            upsert_profile(tx, id, &update.profile, now).await?;
            match update.active {
                Some(true) => {
                    tx.execute("UPDATE users SET disabled = FALSE WHERE id = $1", &[&id])
                        .await
                        .map_err(pg("enabling a user"))?;
                }
                Some(false) => deactivate(tx, id, now).await?,
                None => {}
            }
            let updated = live_user(tx, id)
                .await?
                .ok_or(StoreError::NotFound("user"))?;
            Ok(Finish::Commit(updated))
        })
    }

    fn delete_scim_user(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.write("deleting a SCIM user", async |tx| {
            lock(tx).await?;
            let Some(user) = live_user(tx, id).await? else {
                return Err(StoreError::NotFound("user"));
            };
            deactivate(tx, id, now).await?;
            let before = group_names(tx).await?;
            tx.execute("DELETE FROM scim_group_members WHERE user_id = $1", &[&id])
                .await
                .map_err(pg("leaving SCIM groups"))?;
            sync_groups(tx, &BTreeSet::from([id.to_string()]), &before).await?;
            let profile = user.profile.unwrap_or_else(|| ScimProfile {
                user_name: user.user.email.clone(),
                ..ScimProfile::default()
            });
            upsert_profile(tx, id, &profile, now).await?;
            tx.execute(
                "UPDATE scim_users SET deleted_at = $2 WHERE user_id = $1",
                &[&id, &now],
            )
            .await
            .map_err(pg("deleting a SCIM user"))?;
            Ok(Finish::Commit(()))
        })
    }

    fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>, StoreError> {
        self.read("reading a SCIM group", async |tx| {
            Ok(group_where(tx, Some(id)).await?.into_iter().next())
        })
    }

    fn scim_groups(&self) -> Result<Vec<ScimGroup>, StoreError> {
        self.read("listing SCIM groups", async |tx| {
            group_where(tx, None).await
        })
    }

    fn put_scim_group(&self, group: &ScimGroup, create: bool) -> Result<(), StoreError> {
        self.write("writing a SCIM group", async |tx| {
            lock(tx).await?;
            let before = group_names(tx).await?;
            let mut touched: BTreeSet<String> = group.members.iter().cloned().collect();
            if create {
                tx.execute(
                    "INSERT INTO scim_groups (id, display_name, group_name, external_id, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &group.id,
                        &group.display_name,
                        &group.group_name,
                        &group.external_id,
                        &group.created_at,
                        &group.updated_at,
                    ],
                )
                .await
                .map_err(unique_error("creating a SCIM group"))?;
            } else {
                touched.extend(members_of(tx, &group.id).await?);
                let changed = tx
                    .execute(
                        "UPDATE scim_groups SET display_name = $2, group_name = $3, \
                         external_id = $4, updated_at = $5 WHERE id = $1",
                        &[
                            &group.id,
                            &group.display_name,
                            &group.group_name,
                            &group.external_id,
                            &group.updated_at,
                        ],
                    )
                    .await
                    .map_err(unique_error("replacing a SCIM group"))?;
                if changed == 0 {
                    return Err(StoreError::NotFound("group"));
                }
                tx.execute(
                    "DELETE FROM scim_group_members WHERE group_id = $1",
                    &[&group.id],
                )
                .await
                .map_err(pg("replacing group members"))?;
            }
            for member in &group.members {
                if live_user(tx, member).await?.is_none() {
                    return Err(StoreError::NotFound("user"));
                }
                tx.execute(
                    "INSERT INTO scim_group_members (group_id, user_id) VALUES ($1, $2)",
                    &[&group.id, member],
                )
                .await
                .map_err(unique_error("adding a group member"))?;
            }
            sync_groups(tx, &touched, &before).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn delete_scim_group(&self, id: &str) -> Result<(), StoreError> {
        self.write("deleting a SCIM group", async |tx| {
            lock(tx).await?;
            let before = group_names(tx).await?;
            let touched: BTreeSet<String> = members_of(tx, id).await?.into_iter().collect();
            let changed = tx
                .execute("DELETE FROM scim_groups WHERE id = $1", &[&id])
                .await
                .map_err(pg("deleting a SCIM group"))?;
            if changed == 0 {
                return Err(StoreError::NotFound("group"));
            }
            sync_groups(tx, &touched, &before).await?;
            Ok(Finish::Commit(()))
        })
    }
}
