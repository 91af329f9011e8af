//! [`UserStore`] for the SQLite store: the `users` table.
//!
//! Lockout counting and the success of a checked sign-in are each one conditional
//! statement, so two concurrent logins cannot both pass the check. The changes that also end
//! or open sessions or void tokens run their steps (from `sessions` and `tokens`) in one
//! IMMEDIATE transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{collect_decoded, constraint, decode_name, encode_json, immediate};
use super::sessions::{
    delete_session, delete_user_sessions, end_own_session, insert_session,
    set_session_authenticated,
};
use super::tokens::revoke_user_tokens;
use super::{SqliteStore, decode, sqlite};
use crate::auth::Role;
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::TokenPurpose;
use crate::store::users::{EMAIL_TAKEN, FailureCount, NewUser, SignIn, UserRecord, UserStore};

const USER_COLUMNS: &str = "id, email, display_name, role, \"groups\", disabled, password_hash, \
     failed_logins, locked_until, totp_secret, mfa_enabled, totp_last_step, created_at, \
     last_login_at";

/// An email taken by another account (the only UNIQUE column of `users`) is a conflict.
fn email_error(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| match constraint(&source) {
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) => StoreError::Conflict(EMAIL_TAKEN),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => StoreError::Conflict("user"),
        _ => StoreError::Sqlite { context, source },
    }
}

/// Turns an UPDATE's changed-row count into "not found" when it touched no user.
fn one_user(changed: usize) -> Result<(), StoreError> {
    if changed == 0 {
        Err(StoreError::NotFound("user"))
    } else {
        Ok(())
    }
}

/// Reads a user row; the outer error is SQLite's, the inner one a column that does not decode.
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<Result<UserRecord, StoreError>> {
    let id: String = row.get("id")?;
    let role = match decode_name::<Role>("user", &id, row.get("role")?) {
        Ok(role) => role,
        Err(e) => return Ok(Err(e)),
    };
    let groups = match decode::<Vec<String>>("user", &id, &row.get::<_, String>("groups")?) {
        Ok(groups) => groups,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(UserRecord {
        email: row.get("email")?,
        display_name: row.get("display_name")?,
        role,
        groups,
        disabled: row.get("disabled")?,
        password_hash: row.get("password_hash")?,
        failed_logins: row.get("failed_logins")?,
        locked_until: row.get("locked_until")?,
        totp_secret_sealed: row.get("totp_secret")?,
        mfa_enabled: row.get("mfa_enabled")?,
        totp_last_step: row.get("totp_last_step")?,
        created_at: row.get("created_at")?,
        last_login_at: row.get("last_login_at")?,
        id,
    }))
}

pub(super) fn user_where(
    conn: &Connection,
    condition: &str,
    value: &str,
    context: &'static str,
) -> Result<Option<UserRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE {condition}"),
        [value],
        user_from_row,
    )
    .optional()
    .map_err(sqlite(context))?
    .transpose()
}

/// Runs an UPDATE of one user's row, bound to `params`, where `?1` is the user id.
pub(super) fn update_user(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<(), StoreError> {
    let changed = conn.execute(sql, params).map_err(sqlite(context))?;
    one_user(changed)
}

pub(super) fn insert_user(conn: &Connection, user: &NewUser) -> Result<UserRecord, StoreError> {
    conn.execute(
        "INSERT INTO users (id, email, display_name, role, \"groups\", password_hash, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            user.id,
            user.email,
            user.display_name,
            user.role.as_str(),
            encode_json(&user.groups),
            user.password_hash,
            user.created_at,
        ],
    )
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

pub(super) fn set_role(conn: &Connection, id: &str, role: Role) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET role = ?2 WHERE id = ?1",
        params![id, role.as_str()],
        "changing a role",
    )
}

pub(super) fn set_groups(conn: &Connection, id: &str, groups: &[String]) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET \"groups\" = ?2 WHERE id = ?1",
        params![id, encode_json(&groups)],
        "changing groups",
    )
}

fn set_disabled(conn: &Connection, id: &str, disabled: bool) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET disabled = ?2 WHERE id = ?1",
        params![id, disabled],
        "disabling a user",
    )
}

/// Fails with [`StoreError::Conflict`] when the email is taken.
pub(super) fn set_email(conn: &Connection, id: &str, email: &str) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE users SET email = ?2 WHERE id = ?1",
            params![id, email],
        )
        .map_err(email_error("changing an email"))?;
    one_user(changed)
}

/// Sets the password hash and clears the failure count and any lock.
pub(super) fn set_password(conn: &Connection, id: &str, hash: &str) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET password_hash = ?2, failed_logins = 0, locked_until = NULL \
         WHERE id = ?1",
        params![id, hash],
        "setting a password",
    )
}

/// Clears the failure count and sets `last_login_at`, unless the account is locked at `now`
/// or no longer as `verified` (disabled, or another password hash, email or MFA flag than
/// the record whose credentials were checked); then nothing changes. One conditional
/// statement: a lock set by failures, or a password, email or MFA change, that raced this
/// sign-in's password check wins.
pub(super) fn record_login_success(
    conn: &Connection,
    verified: &UserRecord,
    now: i64,
) -> Result<SignIn, StoreError> {
    let changed = conn
        .execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?2 \
             WHERE id = ?1 AND (locked_until IS NULL OR locked_until <= ?2) \
             AND disabled = 0 AND mfa_enabled = ?3 AND password_hash IS ?4 AND email = ?5",
            params![
                verified.id,
                now,
                verified.mfa_enabled,
                verified.password_hash,
                verified.email,
            ],
        )
        .map_err(sqlite("recording a login"))?;
    if changed == 1 {
        return Ok(SignIn::Admitted);
    }
    // Why not: a lock keeps its own answer; anything else is a changed account.
    let locked_until: Option<Option<i64>> = conn
        .query_row(
            "SELECT locked_until FROM users WHERE id = ?1",
            [&verified.id],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite("recording a login"))?;
    Ok(match locked_until {
        Some(Some(until)) if until > now => SignIn::Locked,
        _ => SignIn::CredentialsChanged,
    })
}

impl UserStore for SqliteStore {
    fn create_user(&self, user: &NewUser) -> Result<UserRecord, StoreError> {
        insert_user(&self.lock(), user)
    }

    fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        user_where(&self.lock(), "id = ?1", id, "reading a user")
    }

    fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        user_where(&self.lock(), "email = ?1", email, "reading a user")
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"))
            .map_err(sqlite("listing users"))?;
        let rows = stmt
            .query_map([], user_from_row)
            .map_err(sqlite("listing users"))?;
        collect_decoded(rows, "listing users")
    }

    fn count_users(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .lock()
            .query_row("SELECT count(*) FROM users", [], |row| row.get(0))
            .map_err(sqlite("counting users"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn set_role_and_end_sessions(&self, id: &str, role: Role) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        set_role(&tx, id, role)?;
        delete_user_sessions(&tx, id)?;
        tx.commit().map_err(sqlite("committing a role change"))
    }

    fn set_groups_and_end_sessions(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        set_groups(&tx, id, groups)?;
        delete_user_sessions(&tx, id)?;
        tx.commit().map_err(sqlite("committing a group change"))
    }

    fn set_disabled(&self, id: &str, disabled: bool) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        set_disabled(&tx, id, disabled)?;
        if disabled {
            delete_user_sessions(&tx, id)?;
        }
        tx.commit().map_err(sqlite("committing a disabled flag"))
    }

    fn set_display_name(&self, id: &str, name: &str) -> Result<(), StoreError> {
        update_user(
            &self.lock(),
            "UPDATE users SET display_name = ?2 WHERE id = ?1",
            params![id, name],
            "renaming a user",
        )
    }

    fn set_password_and_end_sessions(
        &self,
        id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        set_password(&tx, id, hash)?;
        revoke_user_tokens(&tx, id, TokenPurpose::PasswordReset, now)?;
        revoke_user_tokens(&tx, id, TokenPurpose::EmailChange, now)?;
        delete_user_sessions(&tx, id)?;
        tx.commit().map_err(sqlite("committing a password change"))
    }

    fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        // Sessions, tokens, keys, recovery codes and memberships go with the row (ON DELETE
        // CASCADE, with foreign keys on); the audit log has no foreign key and keeps its rows.
        let changed = self
            .lock()
            .execute("DELETE FROM users WHERE id = ?1", [id])
            .map_err(sqlite("deleting a user"))?;
        one_user(changed)
    }

    /// The voided tokens' `used_at` records `session.created_at`, the time of the change.
    fn change_password(
        &self,
        id: &str,
        hash: &str,
        old_session: &str,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        end_own_session(&tx, id, old_session)?;
        set_password(&tx, id, hash)?;
        revoke_user_tokens(&tx, id, TokenPurpose::EmailChange, session.created_at)?;
        delete_user_sessions(&tx, id)?;
        insert_session(&tx, session)?;
        tx.commit().map_err(sqlite("committing a password change"))
    }

    fn record_login_failure(
        &self,
        id: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<FailureCount, StoreError> {
        // One statement: two failures at once both count, and the one that reaches the
        // threshold sets the lock. SET sees the old row, RETURNING the new one. A lock that
        // has run out starts a new count (the first failure after it does not re-lock).
        let until = now.saturating_add(lock_secs);
        self.lock()
            .query_row(
                "UPDATE users SET \
                 failed_logins = CASE WHEN locked_until <= ?4 THEN 1 ELSE failed_logins + 1 END, \
                 locked_until = CASE \
                   WHEN (CASE WHEN locked_until <= ?4 THEN 1 ELSE failed_logins + 1 END) >= ?2 THEN ?3 \
                   WHEN locked_until <= ?4 THEN NULL \
                   ELSE locked_until END \
                 WHERE id = ?1 \
                 RETURNING failed_logins, CASE WHEN failed_logins >= ?2 THEN locked_until END",
                params![id, threshold, until, now],
                |row| {
                    Ok(FailureCount {
                        failed_logins: row.get(0)?,
                        locked_until: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(sqlite("recording a failed login"))?
            .ok_or(StoreError::NotFound("user"))
    }

    fn complete_login(
        &self,
        verified: &UserRecord,
        now: i64,
        session: &SessionRecord,
        replacing: Option<&str>,
    ) -> Result<SignIn, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let outcome = record_login_success(&tx, verified, now)?;
        if outcome != SignIn::Admitted {
            return Ok(outcome);
        }
        insert_session(&tx, session)?;
        if let Some(old) = replacing {
            delete_session(&tx, old)?;
        }
        tx.commit().map_err(sqlite("committing a login"))?;
        Ok(outcome)
    }

    fn complete_reauthentication(
        &self,
        verified: &UserRecord,
        token_hash: &str,
        now: i64,
    ) -> Result<SignIn, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let outcome = record_login_success(&tx, verified, now)?;
        if outcome != SignIn::Admitted {
            return Ok(outcome);
        }
        set_session_authenticated(&tx, &verified.id, token_hash, now)?;
        tx.commit()
            .map_err(sqlite("committing a re-authentication"))?;
        Ok(outcome)
    }

    fn clear_lockout(&self, id: &str) -> Result<(), StoreError> {
        update_user(
            &self.lock(),
            "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1",
            params![id],
            "clearing a lockout",
        )
    }
}
