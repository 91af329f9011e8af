//! [`UserStore`] for the PostgreSQL store: the `users` table.
//!
//! Lockout counting and the success of a checked sign-in are each one conditional UPDATE:
//! PostgreSQL re-checks the condition on the row a concurrent writer just changed, so two
//! replicas counting failures at once both count, and a lock set meanwhile wins over a
//! success. The changes that also end or open sessions or void tokens run their steps (from
//! `sessions` and `tokens`) in one transaction.

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::rows::{Db, constraint, decode_name, encode_json, failure, to_u32};
use super::sessions::{
    delete_session, delete_user_sessions, end_own_session, insert_session,
    set_session_authenticated,
};
use super::tokens::revoke_user_tokens;
use super::{Finish, PostgresStore, decode, pg};
use crate::auth::Role;
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::TokenPurpose;
use crate::store::users::{EMAIL_TAKEN, FailureCount, NewUser, SignIn, UserRecord, UserStore};

const USER_COLUMNS: &str = "id, email, display_name, role, \"groups\", disabled, password_hash, \
     failed_logins, locked_until, totp_secret, mfa_enabled, totp_last_step, created_at, \
     last_login_at";

/// An email taken by another account is a conflict; so is a taken id.
fn email_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| {
        if source.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            if constraint(&source) == Some("users_pkey") {
                StoreError::Conflict("user")
            } else {
                StoreError::Conflict(EMAIL_TAKEN)
            }
        } else {
            failure(context, source)
        }
    }
}

fn one_user(changed: u64) -> Result<(), StoreError> {
    if changed == 0 {
        Err(StoreError::NotFound("user"))
    } else {
        Ok(())
    }
}

fn user_from_row(row: &Row) -> Result<UserRecord, StoreError> {
    let id: String = row.get("id");
    let role = decode_name::<Role>("user", &id, row.get("role"))?;
    let groups = decode::<Vec<String>>("user", &id, row.get::<_, &str>("groups"))?;
    Ok(UserRecord {
        email: row.get("email"),
        display_name: row.get("display_name"),
        role,
        groups,
        disabled: row.get("disabled"),
        password_hash: row.get("password_hash"),
        failed_logins: to_u32(row.get("failed_logins")),
        locked_until: row.get("locked_until"),
        totp_secret_sealed: row.get("totp_secret"),
        mfa_enabled: row.get("mfa_enabled"),
        totp_last_step: row.get("totp_last_step"),
        created_at: row.get("created_at"),
        last_login_at: row.get("last_login_at"),
        id,
    })
}

pub(super) async fn user_by_id(db: &impl Db, id: &str) -> Result<Option<UserRecord>, StoreError> {
    db.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
        &[&id],
    )
    .await
    .map_err(pg("reading a user"))?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

/// Runs an UPDATE of one user's row, where `$1` is the user id.
pub(super) async fn update_user(
    db: &impl Db,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    context: &'static str,
) -> Result<(), StoreError> {
    let changed = db.execute(sql, params).await.map_err(pg(context))?;
    one_user(changed)
}

pub(super) async fn insert_user(db: &impl Db, user: &NewUser) -> Result<UserRecord, StoreError> {
    db.execute(
        "INSERT INTO users (id, email, display_name, role, \"groups\", password_hash, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &user.id,
            &user.email,
            &user.display_name,
            &user.role.as_str(),
            &encode_json(&user.groups),
            &user.password_hash,
            &user.created_at,
        ],
    )
    .await
    .map_err(email_error("creating a user"))?;
    Ok(UserRecord {
        id: user.id.clone(),
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role: user.role,
        groups: user.groups.clone(),
        disabled: false,
        password_hash: user.password_hash.clone(),
        failed_logins: 0,
        locked_until: None,
        totp_secret_sealed: None,
        mfa_enabled: false,
        totp_last_step: None,
        created_at: user.created_at,
        last_login_at: None,
    })
}

/// Fails with [`StoreError::Conflict`] when the email is taken.
pub(super) async fn set_email(db: &impl Db, id: &str, email: &str) -> Result<(), StoreError> {
    let changed = db
        .execute("UPDATE users SET email = $2 WHERE id = $1", &[&id, &email])
        .await
        .map_err(email_error("changing an email"))?;
    one_user(changed)
}

/// Sets the password hash and clears the failure count and any lock.
pub(super) async fn set_password(db: &impl Db, id: &str, hash: &str) -> Result<(), StoreError> {
    update_user(
        db,
        "UPDATE users SET password_hash = $2, failed_logins = 0, locked_until = NULL \
         WHERE id = $1",
        &[&id, &hash],
        "setting a password",
    )
    .await
}

/// The SQLite store's `record_login_success`: one conditional UPDATE, then why not.
pub(super) async fn record_login_success(
    db: &impl Db,
    verified: &UserRecord,
    now: i64,
) -> Result<SignIn, StoreError> {
    let changed = db
        .execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = $2 \
             WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2) \
             AND NOT disabled AND mfa_enabled = $3 \
             AND password_hash IS NOT DISTINCT FROM $4 AND email = $5",
            &[
                &verified.id,
                &now,
                &verified.mfa_enabled,
                &verified.password_hash,
                &verified.email,
            ],
        )
        .await
        .map_err(pg("recording a login"))?;
    if changed == 1 {
        return Ok(SignIn::Admitted);
    }
    let locked_until: Option<Option<i64>> = db
        .query_opt(
            "SELECT locked_until FROM users WHERE id = $1",
            &[&verified.id],
        )
        .await
        .map_err(pg("recording a login"))?
        .map(|row| row.get(0));
    Ok(match locked_until {
        Some(Some(until)) if until > now => SignIn::Locked,
        _ => SignIn::CredentialsChanged,
    })
}

impl UserStore for PostgresStore {
    fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        self.with_client(async |db| insert_user(db, user).await)
    }

    fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with_client(async |db| user_by_id(db, id).await)
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        self.with_client(async |db| {
            db.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"),
                &[&email],
            )
            .await
            .map_err(pg("reading a user"))?
            .as_ref()
            .map(user_from_row)
            .transpose()
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with_client(async |db| {
            db.query(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY email COLLATE \"C\""),
                &[],
            )
            .await
            .map_err(pg("listing users"))?
            .iter()
            .map(user_from_row)
            .collect()
        })
    }

    fn count_users(&self) -> Result<u64, StoreError> {
        self.with_client(async |db| {
            let count: i64 = db
                .query_one("SELECT count(*) FROM users", &[])
                .await
                .map_err(pg("counting users"))?
                .get(0);
            Ok(u64::try_from(count).unwrap_or(0))
        })
    }

    fn set_role_and_end_sessions(&self, id: &str, role: Role) -> Result<(), StoreError> {
        self.write("committing a role change", async |tx| {
            update_user(
                tx,
                "UPDATE users SET role = $2 WHERE id = $1",
                &[&id, &role.as_str()],
                "changing a role",
            )
            .await?;
            delete_user_sessions(tx, id).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn set_groups_and_end_sessions(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        self.write("committing a group change", async |tx| {
            update_user(
                tx,
                "UPDATE users SET \"groups\" = $2 WHERE id = $1",
                &[&id, &encode_json(&groups)],
                "changing groups",
            )
            .await?;
            delete_user_sessions(tx, id).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        self.write("committing a disabled flag", async |tx| {
            update_user(
                tx,
                "UPDATE users SET disabled = $2 WHERE id = $1",
                &[&id, &disabled],
                "disabling a user",
            )
            .await?;
            if disabled {
                delete_user_sessions(tx, id).await?;
            }
            Ok(Finish::Commit(()))
        })
    }

    fn set_display_name(&self, id: &str, name: &str) -> Result<(), StoreError> {
        self.with_client(async |db| {
            update_user(
                db,
                "UPDATE users SET display_name = $2 WHERE id = $1",
                &[&id, &name],
                "renaming a user",
            )
            .await
        })
    }

    fn set_password_and_end_sessions(
        &self,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write("committing a password change", async |tx| {
            set_password(tx, id, hash).await?;
            revoke_user_tokens(tx, id, TokenPurpose::PasswordReset, now).await?;
            revoke_user_tokens(tx, id, TokenPurpose::EmailChange, now).await?;
            delete_user_sessions(tx, id).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        // Sessions, tokens, keys, recovery codes and memberships go with the row (ON DELETE
        // CASCADE); the audit log has no foreign key and keeps its rows.
        self.with_client(async |db| {
            let changed = db
                .execute("DELETE FROM users WHERE id = $1", &[&id])
                .await
                .map_err(pg("deleting a user"))?;
            one_user(changed)
        })
    }

    /// The voided tokens' `used_at` records `session.created_at`, the time of the change.
    fn change_password(
        &self,
        id: &str,
        hash: &str,
        old_session: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.write("committing a password change", async |tx| {
            end_own_session(tx, id, old_session).await?;
            set_password(tx, id, hash).await?;
            revoke_user_tokens(tx, id, TokenPurpose::EmailChange, session.created_at).await?;
            delete_user_sessions(tx, id).await?;
            insert_session(tx, session).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn record_login_failure(
        &self,
        id: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<FailureCount, StoreError> {
        // One statement, as on SQLite: SET sees the old row, RETURNING the new one, and a
        // concurrent failure on another replica is counted on top (the UPDATE waits for it
        // and re-reads the row).
        let until = now.saturating_add(lock_secs);
        let threshold = i64::from(threshold);
        self.with_client(async |db| {
            db.query_opt(
                "UPDATE users SET \
                 failed_logins = CASE WHEN locked_until <= $4 THEN 1 ELSE failed_logins + 1 END, \
                 locked_until = CASE \
                   WHEN (CASE WHEN locked_until <= $4 THEN 1 ELSE failed_logins + 1 END) >= $2 THEN $3 \
                   WHEN locked_until <= $4 THEN NULL \
                   ELSE locked_until END \
                 WHERE id = $1 \
                 RETURNING failed_logins, CASE WHEN failed_logins >= $2 THEN locked_until END",
                &[&id, &threshold, &until, &now],
            )
            .await
            .map_err(pg("recording a failed login"))?
            .map(|row| FailureCount {
                failed_logins: to_u32(row.get(0)),
                locked_until: row.get(1),
            })
            .ok_or(StoreError::NotFound("user"))
        })
    }

    fn complete_login(
        &self,
        verified: &UserRecord,
        now: i64,
        session: &SessionRecord,
        replacing: Option<&str>,
    ) -> Result<SignIn, StoreError> {
        self.write("committing a login", async |tx| {
            let outcome = record_login_success(tx, verified, now).await?;
            if outcome != SignIn::Admitted {
                return Ok(Finish::Rollback(outcome));
            }
            insert_session(tx, session).await?;
            if let Some(old) = replacing {
                delete_session(tx, old).await?;
            }
            Ok(Finish::Commit(outcome))
        })
    }

    fn complete_reauthentication(
        &self,
        verified: &UserRecord,
        token_hash: &str,
        now: i64,
    ) -> Result<SignIn, StoreError> {
        self.write("committing a re-authentication", async |tx| {
            let outcome = record_login_success(tx, verified, now).await?;
            if outcome != SignIn::Admitted {
                return Ok(Finish::Rollback(outcome));
            }
            set_session_authenticated(tx, &verified.id, token_hash, now).await?;
            Ok(Finish::Commit(outcome))
        })
    }

    fn clear_lockout(&self, id: &str) -> Result<(), StoreError> {
        self.with_client(async |db| {
            update_user(
                db,
                "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1",
                &[&id],
                "clearing a lockout",
            )
            .await
        })
    }
}
