//! [`ScimStore`] for the SQLite store: `scim_users`, `scim_groups` and
//! `scim_group_members`, beside `users`.
//!
//! Every write is one IMMEDIATE transaction that also does what follows from it: a
//! deactivation ends the account's sessions and revokes its API keys; a group change
//! rewrites its members' `groups` lists (their SCIM group names, kept after any group an
//! administrator set by hand).

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{constraint, encode_json, immediate};
use super::sessions::delete_user_sessions;
use super::users::{insert_user, user_where};
use super::{SqliteStore, decode, sqlite};
use crate::store::StoreError;
use crate::store::scim::{
    EXTERNAL_ID_TAKEN, GROUP_NAME_TAKEN, ScimGroup, ScimProfile, ScimStore, ScimUser,
    ScimUserUpdate,
};
use crate::store::users::{EMAIL_TAKEN, NewUser};

/// A taken unique value: the email (`users`), the external id or the group name.
fn unique_error(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| {
        let text = source.to_string();
        match constraint(&source) {
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) if text.contains("external_id") => {
                StoreError::Conflict(EXTERNAL_ID_TAKEN)
            }
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) if text.contains("group_name") => {
                StoreError::Conflict(GROUP_NAME_TAKEN)
            }
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => StoreError::Conflict(EMAIL_TAKEN),
            Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::NotFound("user"),
            _ => StoreError::Sqlite { context, source },
        }
    }
}

/// The profile row of an account: `(profile, updated_at, deleted)`.
type ProfileRow = (ScimProfile, i64, bool);

fn profile_of(conn: &Connection, id: &str) -> Result<Option<ProfileRow>, StoreError> {
    conn.query_row(
        "SELECT external_id, user_name, given_name, family_name, formatted, updated_at, \
         deleted_at IS NOT NULL, display_name, emails, active_removed \
         FROM scim_users WHERE user_id = ?1",
        [id],
        |row| {
            Ok((
                ScimProfile {
                    external_id: row.get(0)?,
                    user_name: row.get(1)?,
                    given_name: row.get(2)?,
                    family_name: row.get(3)?,
                    formatted: row.get(4)?,
                    display_name: row.get(7)?,
                    emails: None,
                    active_removed: row.get(9)?,
                },
                row.get::<_, Option<String>>(8)?,
                row.get(5)?,
                row.get(6)?,
            ))
        },
    )
    .optional()
    .map_err(sqlite("reading a SCIM profile"))?
    .map(|(mut profile, emails, updated_at, deleted)| {
        profile.emails = emails
            .map(|json| decode("SCIM profile", id, &json))
            .transpose()?;
        Ok((profile, updated_at, deleted))
    })
    .transpose()
}

fn live_user(conn: &Connection, id: &str) -> Result<Option<ScimUser>, StoreError> {
    let Some(user) = user_where(conn, "id = ?1", id, "reading a user")? else {
        return Ok(None);
    };
    match profile_of(conn, id)? {
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

fn upsert_profile(
    conn: &Connection,
    id: &str,
    profile: &ScimProfile,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO scim_users (user_id, external_id, user_name, given_name, family_name, \
         formatted, deleted_at, updated_at, display_name, emails, active_removed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?10) \
         ON CONFLICT (user_id) DO UPDATE SET external_id = ?2, user_name = ?3, given_name = ?4, \
         family_name = ?5, formatted = ?6, deleted_at = NULL, updated_at = ?7, \
         display_name = ?8, emails = ?9, active_removed = ?10",
        params![
            id,
            profile.external_id,
            profile.user_name,
            profile.given_name,
            profile.family_name,
            profile.formatted,
            now,
            profile.display_name,
            profile.emails.as_ref().map(encode_json),
            profile.active_removed,
        ],
    )
    .map_err(unique_error("writing a SCIM profile"))?;
    Ok(())
}

/// Disables an account and ends what it holds: sessions deleted, API keys revoked.
fn deactivate(conn: &Connection, id: &str, now: i64) -> Result<(), StoreError> {
    conn.execute("UPDATE users SET disabled = 1 WHERE id = ?1", [id])
        .map_err(sqlite("disabling a user"))?;
    delete_user_sessions(conn, id)?;
    conn.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )
    .map_err(sqlite("revoking API keys"))?;
    Ok(())
}

fn group_names(conn: &Connection) -> Result<BTreeSet<String>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT group_name FROM scim_groups")
        .map_err(sqlite("reading SCIM groups"))?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(sqlite("reading SCIM groups"))?
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(sqlite("reading SCIM groups"))?;
    Ok(names)
}

/// Rewrites `user_ids`' `groups`: the groups no SCIM group had before this change
/// (`scim_before`) nor has now, then the SCIM groups each is a member of now.
fn sync_groups(
    conn: &Connection,
    user_ids: &BTreeSet<String>,
    scim_before: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let scim_now = group_names(conn)?;
    for id in user_ids {
        let stored: Option<String> = conn
            .query_row("SELECT \"groups\" FROM users WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sqlite("reading a user's groups"))?;
        let Some(stored) = stored else { continue };
        let current: Vec<String> = decode("user", id, &stored)?;
        let mut groups: Vec<String> = current
            .into_iter()
            .filter(|g| !scim_before.contains(g) && !scim_now.contains(g))
            .collect();
        let mut stmt = conn
            .prepare(
                "SELECT g.group_name FROM scim_group_members m JOIN scim_groups g \
                 ON g.id = m.group_id WHERE m.user_id = ?1 ORDER BY g.group_name",
            )
            .map_err(sqlite("reading a user's SCIM groups"))?;
        let member_of = stmt
            .query_map([id], |row| row.get::<_, String>(0))
            .map_err(sqlite("reading a user's SCIM groups"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("reading a user's SCIM groups"))?;
        groups.extend(member_of);
        conn.execute(
            "UPDATE users SET \"groups\" = ?2 WHERE id = ?1",
            params![id, encode_json(&groups)],
        )
        .map_err(sqlite("writing a user's groups"))?;
    }
    Ok(())
}

fn members_of(conn: &Connection, group_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT user_id FROM scim_group_members WHERE group_id = ?1 ORDER BY user_id")
        .map_err(sqlite("reading group members"))?;
    let members = stmt
        .query_map([group_id], |row| row.get::<_, String>(0))
        .map_err(sqlite("reading group members"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite("reading group members"))?;
    Ok(members)
}

fn group_where(conn: &Connection, id: Option<&str>) -> Result<Vec<ScimGroup>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, display_name, group_name, external_id, created_at, updated_at \
             FROM scim_groups WHERE ?1 IS NULL OR id = ?1 ORDER BY created_at, rowid",
        )
        .map_err(sqlite("reading SCIM groups"))?;
    let groups = stmt
        .query_map([id], |row| {
            Ok(ScimGroup {
                id: row.get(0)?,
                display_name: row.get(1)?,
                group_name: row.get(2)?,
                external_id: row.get(3)?,
                members: Vec::new(),
                created_at: row.get(4)?,
                updated_at: row.get(5)?,
            })
        })
        .map_err(sqlite("reading SCIM groups"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite("reading SCIM groups"))?;
    groups
        .into_iter()
        .map(|mut group| {
            group.members = members_of(conn, &group.id)?;
            Ok(group)
        })
        .collect()
}

impl ScimStore for SqliteStore {
    fn scim_user(&self, id: &str) -> Result<Option<ScimUser>, StoreError> {
        live_user(&self.lock(), id)
    }

    fn scim_users(&self) -> Result<Vec<ScimUser>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id FROM users ORDER BY created_at, rowid")
            .map_err(sqlite("listing users"))?;
        let ids = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(sqlite("listing users"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sqlite("listing users"))?;
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(user) = live_user(&conn, &id)? {
                users.push(user);
            }
        }
        Ok(users)
    }

    fn create_scim_user(
        &self,
        user: &NewUser,
        profile: &ScimProfile,
        active: bool,
    ) -> Result<ScimUser, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let existing = user_where(&tx, "email = ?1", &user.email, "reading a user")?;
        let id = match existing {
            Some(found) => match profile_of(&tx, &found.id)? {
                // Revived: the IdP provisions again an account it deleted.
                Some((_, _, true)) => {
                    tx.execute(
                        "UPDATE users SET display_name = ?2 WHERE id = ?1",
                        params![found.id, user.display_name],
                    )
                    .map_err(sqlite("reviving a user"))?;
                    found.id
                }
                _ => return Err(StoreError::Conflict(EMAIL_TAKEN)),
            },
            None => insert_user(&tx, user)?.id,
        };
        upsert_profile(&tx, &id, profile, user.created_at)?;
        tx.execute(
            "UPDATE users SET disabled = ?2 WHERE id = ?1",
            params![id, !active],
        )
        .map_err(sqlite("creating a user"))?;
        let created = live_user(&tx, &id)?.ok_or(StoreError::NotFound("user"))?;
        tx.commit().map_err(sqlite("committing a SCIM user"))?;
        Ok(created)
    }

    fn update_scim_user(
        &self,
        id: &str,
        update: &ScimUserUpdate,
        now: i64,
    ) -> Result<ScimUser, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        if live_user(&tx, id)?.is_none() {
            return Err(StoreError::NotFound("user"));
        }
        tx.execute(
            "UPDATE users SET email = ?2, display_name = ?3 WHERE id = ?1",
            params![id, update.email, update.display_name],
        )
        .map_err(unique_error("updating a user"))?;
        upsert_profile(&tx, id, &update.profile, now)?;
        match update.active {
            Some(true) => {
                tx.execute("UPDATE users SET disabled = 0 WHERE id = ?1", [id])
                    .map_err(sqlite("enabling a user"))?;
            }
            Some(false) => deactivate(&tx, id, now)?,
            None => {}
        }
        let updated = live_user(&tx, id)?.ok_or(StoreError::NotFound("user"))?;
        tx.commit().map_err(sqlite("committing a SCIM user"))?;
        Ok(updated)
    }

    fn delete_scim_user(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let Some(user) = live_user(&tx, id)? else {
            return Err(StoreError::NotFound("user"));
        };
        deactivate(&tx, id, now)?;
        let before = group_names(&tx)?;
        tx.execute("DELETE FROM scim_group_members WHERE user_id = ?1", [id])
            .map_err(sqlite("leaving SCIM groups"))?;
        sync_groups(&tx, &BTreeSet::from([id.to_string()]), &before)?;
        let profile = user.profile.unwrap_or_else(|| ScimProfile {
            user_name: user.user.email.clone(),
            ..ScimProfile::default()
        });
        upsert_profile(&tx, id, &profile, now)?;
        tx.execute(
            "UPDATE scim_users SET deleted_at = ?2 WHERE user_id = ?1",
            params![id, now],
        )
        .map_err(sqlite("deleting a SCIM user"))?;
        tx.commit().map_err(sqlite("committing a SCIM delete"))
    }

    fn scim_group(&self, id: &str) -> Result<Option<ScimGroup>, StoreError> {
        Ok(group_where(&self.lock(), Some(id))?.into_iter().next())
    }

    fn scim_groups(&self) -> Result<Vec<ScimGroup>, StoreError> {
        group_where(&self.lock(), None)
    }

    fn put_scim_group(&self, group: &ScimGroup, create: bool) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let before = group_names(&tx)?;
        let mut touched: BTreeSet<String> = group.members.iter().cloned().collect();
        if create {
            tx.execute(
                "INSERT INTO scim_groups (id, display_name, group_name, external_id, \
                 created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    group.id,
                    group.display_name,
                    group.group_name,
                    group.external_id,
                    group.created_at,
                    group.updated_at
                ],
            )
            .map_err(unique_error("creating a SCIM group"))?;
        } else {
            touched.extend(members_of(&tx, &group.id)?);
            let changed = tx
                .execute(
                    "UPDATE scim_groups SET display_name = ?2, group_name = ?3, \
                     external_id = ?4, updated_at = ?5 WHERE id = ?1",
                    params![
                        group.id,
                        group.display_name,
                        group.group_name,
                        group.external_id,
                        group.updated_at
                    ],
                )
                .map_err(unique_error("replacing a SCIM group"))?;
            if changed == 0 {
                return Err(StoreError::NotFound("group"));
            }
            tx.execute(
                "DELETE FROM scim_group_members WHERE group_id = ?1",
                [&group.id],
            )
            .map_err(sqlite("replacing group members"))?;
        }
        for member in &group.members {
            if live_user(&tx, member)?.is_none() {
                return Err(StoreError::NotFound("user"));
            }
            tx.execute(
                "INSERT INTO scim_group_members (group_id, user_id) VALUES (?1, ?2)",
                params![group.id, member],
            )
            .map_err(unique_error("adding a group member"))?;
        }
        sync_groups(&tx, &touched, &before)?;
        tx.commit().map_err(sqlite("committing a SCIM group"))
    }

    fn delete_scim_group(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let before = group_names(&tx)?;
        let touched: BTreeSet<String> = members_of(&tx, id)?.into_iter().collect();
        let changed = tx
            .execute("DELETE FROM scim_groups WHERE id = ?1", [id])
            .map_err(sqlite("deleting a SCIM group"))?;
        if changed == 0 {
            return Err(StoreError::NotFound("group"));
        }
        sync_groups(&tx, &touched, &before)?;
        tx.commit()
            .map_err(sqlite("committing a SCIM group delete"))
    }
}
