//! [`AuthStore`] for the SQLite store: users, MFA, sessions, one-time tokens, API keys, app
//! members and the audit log (tables from migration 2).
//!
//! Every value arriving here is already hashed or sealed; this module stores and compares
//! them and never logs them. Operations that must not race (lockout counting, the success
//! of a checked sign-in, starting MFA enrolment, the TOTP replay guard, single-use tokens and
//! recovery codes) are each one conditional statement, so two concurrent logins cannot both
//! pass the check. A rotation ends the caller's own session first and requires that it
//! still exists, so it never re-opens a session ended meanwhile. Account operations that change
//! several rows (see [`AuthStore`]) run their steps in one IMMEDIATE transaction.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::de::DeserializeOwned;

use super::{SqliteStore, decode, sqlite};
use crate::auth::store::{
    ApiKeyRecord, AuditEvent, AuthStore, EMAIL_TAKEN, FailureCount, NewUser, SessionChange,
    SessionRecord, SignIn, TokenPurpose, TokenRecord, UserRecord,
};
use crate::auth::{ApiKeyScope, Role};
use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;

const USER_COLUMNS: &str = "id, email, display_name, role, \"groups\", disabled, password_hash, \
     failed_logins, locked_until, totp_secret, mfa_enabled, totp_last_step, created_at, \
     last_login_at";

const SESSION_COLUMNS: &str =
    "token_hash, public_id, user_id, created_at, last_seen_at, authenticated_at, ip, user_agent";

const API_KEY_COLUMNS: &str = "id, key_hash, user_id, name, scope, created_at, expires_at, \
     last_used_at, revoked_at";

const AUDIT_COLUMNS: &str = "id, at, event, user_id, email, actor, ip, user_agent, reason, details";

const TOKEN_COLUMNS: &str = "token_hash, purpose, user_id, email, created_at, expires_at";

/// A one-time token that can still be used: `?1` its hash, `?2` its purpose, `?3` now.
const USABLE_TOKEN: &str =
    "token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3";

/// Decodes a stored enum name (`admin`, `password_reset`) through its serde form, so a bad
/// value is reported as [`StoreError::Corrupt`] like any other undecodable column.
fn decode_name<T: DeserializeOwned>(
    what: &'static str,
    name: &str,
    value: String,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(value)).map_err(|source| StoreError::Corrupt {
        what,
        name: name.to_string(),
        source,
    })
}

fn encode_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("string lists and scopes serialise")
}

/// Maps a failed insert: a taken primary or unique key is a conflict, a missing referenced
/// user is "not found", anything else keeps its cause.
fn insert_error(
    context: &'static str,
    conflict: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| match constraint(&source) {
        Some(
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
        ) => StoreError::Conflict(conflict),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::NotFound("user"),
        _ => StoreError::Sqlite { context, source },
    }
}

/// The extended result code of a constraint violation.
fn constraint(error: &rusqlite::Error) -> Option<i32> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(failure.extended_code)
        }
        _ => None,
    }
}

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

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        token_hash: row.get("token_hash")?,
        public_id: row.get("public_id")?,
        user_id: row.get("user_id")?,
        created_at: row.get("created_at")?,
        last_seen_at: row.get("last_seen_at")?,
        authenticated_at: row.get("authenticated_at")?,
        ip: row.get("ip")?,
        user_agent: row.get("user_agent")?,
    })
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, StoreError>> {
    let token_hash: String = row.get("token_hash")?;
    // The hash names the token in the error: it is not the token, and nothing else does.
    let purpose = match decode_name::<TokenPurpose>("token", &token_hash, row.get("purpose")?) {
        Ok(purpose) => purpose,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(TokenRecord {
        purpose,
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        token_hash,
    }))
}

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let id: String = row.get("id")?;
    let scope = match decode::<ApiKeyScope>("api key", &id, &row.get::<_, String>("scope")?) {
        Ok(scope) => scope,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(ApiKeyRecord {
        key_hash: row.get("key_hash")?,
        user_id: row.get("user_id")?,
        name: row.get("name")?,
        scope,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        last_used_at: row.get("last_used_at")?,
        revoked_at: row.get("revoked_at")?,
        id,
    }))
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.get("id")?,
        at: row.get("at")?,
        event: row.get("event")?,
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        actor: row.get("actor")?,
        ip: row.get("ip")?,
        user_agent: row.get("user_agent")?,
        reason: row.get("reason")?,
        details: row.get("details")?,
    })
}

/// Collects rows whose columns may fail to decode.
fn collect_decoded<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
    context: &'static str,
) -> Result<Vec<T>, StoreError> {
    rows.map(|row| row.map_err(sqlite(context)).and_then(|decoded| decoded))
        .collect()
}

/// Begins a write transaction; dropping it without [`Transaction::commit`] rolls it back.
/// IMMEDIATE takes the write lock at once (waiting out the busy timeout while another
/// process, such as the CLI, writes), so a transaction that reads before it writes cannot
/// fail half-way on a lock upgrade.
fn immediate(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("starting a transaction"))
}

// ----- Single steps ----------------------------------------------------------------------
//
// Each runs on the connection or transaction it is given. The trait methods run one alone,
// or several in one transaction when an operation needs them all to happen or none.

fn user_where(
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
fn update_user(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    context: &'static str,
) -> Result<(), StoreError> {
    let changed = conn.execute(sql, params).map_err(sqlite(context))?;
    one_user(changed)
}

fn insert_user(conn: &Connection, user: &NewUser) -> Result<UserRecord, StoreError> {
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

fn set_role(conn: &Connection, id: &str, role: Role) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET role = ?2 WHERE id = ?1",
        params![id, role.as_str()],
        "changing a role",
    )
}

fn set_groups(conn: &Connection, id: &str, groups: &[String]) -> Result<(), StoreError> {
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
fn set_email(conn: &Connection, id: &str, email: &str) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE users SET email = ?2 WHERE id = ?1",
            params![id, email],
        )
        .map_err(email_error("changing an email"))?;
    one_user(changed)
}

/// Sets the password hash and clears the failure count and any lock.
fn set_password(conn: &Connection, id: &str, hash: &str) -> Result<(), StoreError> {
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
fn record_login_success(
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

/// Stores a new (unconfirmed) sealed secret while MFA is off. A new secret starts
/// unconfirmed, and the replay guard belongs to the old one. Conditional on MFA being off in
/// the same statement, so an enrolment racing a confirmation cannot turn MFA off again:
/// [`StoreError::Conflict`] when it is on.
fn set_totp_secret(conn: &Connection, id: &str, sealed: &str) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE users SET totp_secret = ?2, mfa_enabled = 0, totp_last_step = NULL \
             WHERE id = ?1 AND mfa_enabled = 0",
            params![id, sealed],
        )
        .map_err(sqlite("setting a TOTP secret"))?;
    if changed == 1 {
        return Ok(());
    }
    let exists = conn
        .query_row("SELECT 1 FROM users WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map_err(sqlite("setting a TOTP secret"))?;
    match exists {
        Some(()) => Err(StoreError::Conflict("enabled two-factor authentication")),
        None => Err(StoreError::NotFound("user")),
    }
}

/// Clears the secret, the enabled flag and the replay guard.
fn clear_totp(conn: &Connection, id: &str) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET totp_secret = NULL, mfa_enabled = 0, totp_last_step = NULL \
         WHERE id = ?1",
        params![id],
        "clearing a TOTP secret",
    )
}

/// Turns MFA on (it is turned off only with the secret, by [`clear_totp`]).
fn turn_mfa_on(conn: &Connection, id: &str) -> Result<(), StoreError> {
    update_user(
        conn,
        "UPDATE users SET mfa_enabled = 1 WHERE id = ?1",
        params![id],
        "enabling MFA",
    )
}

/// Replaces the user's recovery codes; several statements, so run it in a transaction.
fn write_recovery_codes(conn: &Connection, id: &str, hashes: &[String]) -> Result<(), StoreError> {
    let exists = conn
        .query_row("SELECT 1 FROM users WHERE id = ?1", [id], |_| Ok(()))
        .optional()
        .map_err(sqlite("reading a user"))?;
    if exists.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    delete_recovery_codes(conn, id)?;
    let mut insert = conn
        .prepare(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING",
        )
        .map_err(sqlite("writing recovery codes"))?;
    for hash in hashes {
        insert
            .execute(params![id, hash])
            .map_err(sqlite("writing recovery codes"))?;
    }
    Ok(())
}

fn delete_recovery_codes(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [id])
        .map_err(sqlite("deleting recovery codes"))?;
    Ok(())
}

fn insert_session(conn: &Connection, session: &SessionRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        params![
            session.token_hash,
            session.public_id,
            session.user_id,
            session.created_at,
            session.last_seen_at,
            session.authenticated_at,
            session.ip,
            session.user_agent,
        ],
    )
    .map_err(insert_error("creating a session", "session"))?;
    Ok(())
}

fn delete_session(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
        .map_err(sqlite("deleting a session"))?;
    Ok(())
}

fn delete_user_sessions(conn: &Connection, user_id: &str) -> Result<u64, StoreError> {
    let deleted = conn
        .execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])
        .map_err(sqlite("deleting sessions"))?;
    Ok(deleted as u64)
}

/// Fails with [`StoreError::NotFound`] when the user has no such session (any more), so a
/// re-authentication is never reported as done for a session that no longer exists.
fn set_session_authenticated(
    conn: &Connection,
    user_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let changed = conn
        .execute(
            "UPDATE sessions SET authenticated_at = ?3 WHERE token_hash = ?1 AND user_id = ?2",
            params![token_hash, user_id, now],
        )
        .map_err(sqlite("re-authenticating a session"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(())
}

/// Ends the caller's own session before it is replaced. Fails with [`StoreError::NotFound`]
/// when the user has no such session any more (signed out, or all sessions ended, since the
/// request was authenticated): the transaction then rolls back, so a rotation never
/// re-opens a session for a caller who was signed out meanwhile.
fn end_own_session(conn: &Connection, user_id: &str, token_hash: &str) -> Result<(), StoreError> {
    let deleted = conn
        .execute(
            "DELETE FROM sessions WHERE token_hash = ?1 AND user_id = ?2",
            params![token_hash, user_id],
        )
        .map_err(sqlite("deleting a session"))?;
    if deleted != 1 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(())
}

fn change_sessions(
    conn: &Connection,
    user_id: &str,
    change: SessionChange<'_>,
) -> Result<(), StoreError> {
    match change {
        SessionChange::Keep => Ok(()),
        SessionChange::EndAll => delete_user_sessions(conn, user_id).map(drop),
        SessionChange::Rotate { old, new } => {
            end_own_session(conn, user_id, old)?;
            insert_session(conn, new)
        }
    }
}

fn insert_token(conn: &Connection, token: &TokenRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO one_time_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            token.token_hash,
            token.purpose.as_str(),
            token.user_id,
            token.email,
            token.created_at,
            token.expires_at,
        ],
    )
    .map_err(insert_error("creating a token", "token"))?;
    Ok(())
}

/// Marks the token used and returns it, if it exists, has this purpose, is unused and has
/// not expired at `now`. Check and mark are one statement: of two requests racing with the
/// same link, exactly one gets the record. Spent for good only when the transaction it
/// runs in commits.
fn consume_token(
    conn: &Connection,
    token_hash: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<Option<TokenRecord>, StoreError> {
    conn.query_row(
        &format!(
            "UPDATE one_time_tokens SET used_at = ?3 WHERE {USABLE_TOKEN} \
             RETURNING {TOKEN_COLUMNS}"
        ),
        params![token_hash, purpose.as_str(), now],
        token_from_row,
    )
    .optional()
    .map_err(sqlite("consuming a token"))?
    .transpose()
}

/// Voids a user's unused tokens of one purpose. `now` is only a record: the token is void
/// because `used_at` is set at all.
fn revoke_user_tokens(
    conn: &Connection,
    user_id: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE one_time_tokens SET used_at = ?3 \
         WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
        params![user_id, purpose.as_str(), now],
    )
    .map_err(sqlite("revoking tokens"))?;
    Ok(())
}

impl AuthStore for SqliteStore {
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

    fn set_totp_secret(&self, id: &str, sealed: &str) -> Result<(), StoreError> {
        set_totp_secret(&self.lock(), id, sealed)
    }

    fn enable_mfa(
        &self,
        id: &str,
        hashes: &[String],
        session: Option<(&str, &SessionRecord)>,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        if let Some((old, _)) = session {
            end_own_session(&tx, id, old)?;
        }
        write_recovery_codes(&tx, id, hashes)?;
        turn_mfa_on(&tx, id)?;
        delete_user_sessions(&tx, id)?;
        if let Some((_, new)) = session {
            insert_session(&tx, new)?;
        }
        tx.commit().map_err(sqlite("committing an MFA change"))
    }

    fn disable_mfa(&self, id: &str, sessions: SessionChange<'_>) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        clear_totp(&tx, id)?;
        delete_recovery_codes(&tx, id)?;
        change_sessions(&tx, id, sessions)?;
        tx.commit().map_err(sqlite("committing an MFA change"))
    }

    fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE users SET totp_last_step = ?2 \
                 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                params![id, step],
            )
            .map_err(sqlite("accepting a TOTP code"))?;
        Ok(changed == 1)
    }

    fn replace_recovery_codes(&self, id: &str, hashes: &[String]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        write_recovery_codes(&tx, id, hashes)?;
        tx.commit()
            .map_err(sqlite("committing a recovery code change"))
    }

    fn use_recovery_code(&self, id: &str, hash: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE recovery_codes SET used_at = ?3 \
                 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
                params![id, hash, now],
            )
            .map_err(sqlite("using a recovery code"))?;
        Ok(changed == 1)
    }

    fn remaining_recovery_codes(&self, id: &str) -> Result<u32, StoreError> {
        self.lock()
            .query_row(
                "SELECT count(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
                [id],
                |row| row.get(0),
            )
            .map_err(sqlite("counting recovery codes"))
    }

    fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?1"),
                [token_hash],
                session_from_row,
            )
            .optional()
            .map_err(sqlite("reading a session"))
    }

    /// A session deleted meanwhile (logout in another tab) is not an error here.
    fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1",
                params![token_hash, now],
            )
            .map_err(sqlite("touching a session"))?;
        Ok(())
    }

    fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        delete_session(&self.lock(), token_hash)
    }

    fn delete_session_by_public_id(
        &self,
        user_id: &str,
        public_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND public_id = ?2",
                params![user_id, public_id],
            )
            .map_err(sqlite("deleting a session"))?;
        Ok(deleted > 0)
    }

    fn delete_user_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
        delete_user_sessions(&self.lock(), user_id)
    }

    fn list_user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ?1 \
                 ORDER BY created_at DESC, public_id"
            ))
            .map_err(sqlite("listing sessions"))?;
        stmt.query_map([user_id], session_from_row)
            .map_err(sqlite("listing sessions"))?
            .collect::<Result<_, _>>()
            .map_err(sqlite("listing sessions"))
    }

    fn purge_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
                params![idle_before, created_before],
            )
            .map_err(sqlite("purging sessions"))?;
        Ok(deleted as u64)
    }

    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        insert_token(&self.lock(), token)
    }

    /// The voided tokens' `used_at` records the new token's `created_at`.
    fn replace_user_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        if let Some(user_id) = &token.user_id {
            revoke_user_tokens(&tx, user_id, token.purpose, token.created_at)?;
        }
        insert_token(&tx, token)?;
        tx.commit().map_err(sqlite("committing a new token"))
    }

    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM one_time_tokens WHERE {USABLE_TOKEN}"),
                params![token_hash, purpose.as_str(), now],
                token_from_row,
            )
            .optional()
            .map_err(sqlite("reading a token"))?
            .transpose()
    }

    fn complete_password_reset(
        &self,
        token_hash: &str,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        // Returning early drops the transaction: the token stays unspent.
        match consume_token(&tx, token_hash, TokenPurpose::PasswordReset, now)? {
            Some(token) if token.user_id.as_deref() == Some(user_id) => {}
            _ => return Ok(None),
        }
        set_password(&tx, user_id, hash)?;
        // A pending email change was asked for by someone who had the old password (maybe
        // not the owner): it must not outlive the reset that locks them out.
        revoke_user_tokens(&tx, user_id, TokenPurpose::EmailChange, now)?;
        let ended = delete_user_sessions(&tx, user_id)?;
        tx.commit().map_err(sqlite("committing a password reset"))?;
        Ok(Some(ended))
    }

    fn complete_signup(
        &self,
        token_hash: &str,
        now: i64,
        user: &NewUser,
        session: &SessionRecord,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        match consume_token(&tx, token_hash, TokenPurpose::Signup, now)? {
            Some(token) if token.email == user.email => {}
            _ => return Ok(None),
        }
        let created = insert_user(&tx, user)?;
        insert_session(&tx, session)?;
        tx.commit().map_err(sqlite("committing a signup"))?;
        Ok(Some(created))
    }

    fn confirm_email_change(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let Some(TokenRecord {
            user_id: Some(id),
            email,
            ..
        }) = consume_token(&tx, token_hash, TokenPurpose::EmailChange, now)?
        else {
            return Ok(None);
        };
        set_email(&tx, &id, &email)?;
        // Reset links went to the previous address, which no longer speaks for the account
        // (people change address because they lost the old one).
        revoke_user_tokens(&tx, &id, TokenPurpose::PasswordReset, now)?;
        delete_user_sessions(&tx, &id)?;
        let user = user_where(&tx, "id = ?1", &id, "reading a user")?
            .ok_or(StoreError::NotFound("user"))?;
        tx.commit().map_err(sqlite("committing an email change"))?;
        Ok(Some(user))
    }

    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.lock()
            .execute(
                &format!(
                    "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    key.id,
                    key.key_hash,
                    key.user_id,
                    key.name,
                    encode_json(&key.scope),
                    key.created_at,
                    key.expires_at,
                    key.last_used_at,
                    key.revoked_at,
                ],
            )
            .map_err(insert_error("creating an API key", "API key"))?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                api_key_from_row,
            )
            .optional()
            .map_err(sqlite("reading an API key"))?
            .transpose()
    }

    fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR user_id = ?1 \
                 ORDER BY created_at DESC, id"
            ))
            .map_err(sqlite("listing API keys"))?;
        let rows = stmt
            .query_map([user_id], api_key_from_row)
            .map_err(sqlite("listing API keys"))?;
        collect_decoded(rows, "listing API keys")
    }

    fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(sqlite("touching an API key"))?;
        Ok(())
    }

    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(sqlite("revoking an API key"))?;
        Ok(changed == 1)
    }

    /// Adding a member twice is not an error. `added_at` takes the wall clock (the trait
    /// passes no time); it is only a record.
    fn add_app_member(&self, app: &str, user_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO app_members (app, user_id, added_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
                params![app, user_id, SystemClock.now()],
            )
            .map_err(insert_error("adding an app member", "app member"))?;
        Ok(())
    }

    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM app_members WHERE app = ?1 AND user_id = ?2",
                params![app, user_id],
            )
            .map_err(sqlite("removing an app member"))?;
        Ok(deleted > 0)
    }

    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.lock()
            .query_row(
                "SELECT 1 FROM app_members WHERE app = ?1 AND user_id = ?2",
                params![app, user_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(sqlite("reading app members"))
    }

    fn app_members(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT user_id FROM app_members WHERE app = ?1 ORDER BY added_at, user_id")
            .map_err(sqlite("reading app members"))?;
        stmt.query_map([app], |row| row.get(0))
            .map_err(sqlite("reading app members"))?
            .collect::<Result<_, _>>()
            .map_err(sqlite("reading app members"))
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO audit_events \
             (at, event, user_id, email, actor, ip, user_agent, reason, details) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                event.at,
                event.event,
                event.user_id,
                event.email,
                event.actor,
                event.ip,
                event.user_agent,
                event.reason,
                event.details,
            ],
        )
        .map_err(sqlite("appending to the audit log"))?;
        Ok(conn.last_insert_rowid())
    }

    fn list_audit(&self, limit: u32, before: Option<i64>) -> Result<Vec<AuditEvent>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE ?2 IS NULL OR id < ?2 \
                 ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(sqlite("reading the audit log"))?;
        stmt.query_map(params![limit, before], audit_from_row)
            .map_err(sqlite("reading the audit log"))?
            .collect::<Result<_, _>>()
            .map_err(sqlite("reading the audit log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CatalogSpec;
    use crate::spec::yaml;
    use crate::store::MetadataStore;

    const NOW: i64 = 1_700_000_000;

    const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: private\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n";

    /// The single steps the trait's operations are made of, for tests that pin each
    /// statement's own semantics (the trait offers them only combined).
    impl SqliteStore {
        fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError> {
            set_role(&self.lock(), id, role)
        }

        fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
            set_groups(&self.lock(), id, groups)
        }

        fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError> {
            set_email(&self.lock(), id, email)
        }

        fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError> {
            set_password(&self.lock(), id, hash)
        }

        /// A success for the account as it is now; false unless admitted.
        fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError> {
            let Some(verified) = self.user_by_id(id)? else {
                return Ok(false);
            };
            Ok(record_login_success(&self.lock(), &verified, now)? == SignIn::Admitted)
        }

        fn turn_mfa_on(&self, id: &str) -> Result<(), StoreError> {
            turn_mfa_on(&self.lock(), id)
        }

        fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
            insert_session(&self.lock(), session)
        }

        fn set_session_authenticated(
            &self,
            user_id: &str,
            token_hash: &str,
            now: i64,
        ) -> Result<(), StoreError> {
            set_session_authenticated(&self.lock(), user_id, token_hash, now)
        }

        fn consume_token(
            &self,
            token_hash: &str,
            purpose: TokenPurpose,
            now: i64,
        ) -> Result<Option<TokenRecord>, StoreError> {
            consume_token(&self.lock(), token_hash, purpose, now)
        }

        fn revoke_user_tokens(
            &self,
            user_id: &str,
            purpose: TokenPurpose,
        ) -> Result<(), StoreError> {
            revoke_user_tokens(&self.lock(), user_id, purpose, NOW)
        }
    }

    fn store() -> SqliteStore {
        SqliteStore::in_memory().unwrap()
    }

    fn new_user(id: &str, email: &str) -> NewUser {
        NewUser {
            id: id.into(),
            email: email.into(),
            display_name: format!("User {id}"),
            role: Role::Developer,
            groups: vec!["eng".into(), "ops".into()],
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            created_at: NOW,
        }
    }

    fn with_user(id: &str) -> SqliteStore {
        let store = store();
        store
            .create_user(&new_user(id, &format!("{id}@example.com")))
            .unwrap();
        store
    }

    fn session(token_hash: &str, public_id: &str, user_id: &str, at: i64) -> SessionRecord {
        SessionRecord {
            token_hash: token_hash.into(),
            public_id: public_id.into(),
            user_id: user_id.into(),
            created_at: at,
            last_seen_at: at,
            authenticated_at: at,
            ip: "192.0.2.1".into(),
            user_agent: "test".into(),
        }
    }

    fn token(hash: &str, purpose: TokenPurpose, user_id: Option<&str>) -> TokenRecord {
        TokenRecord {
            token_hash: hash.into(),
            purpose,
            user_id: user_id.map(Into::into),
            email: "new@example.com".into(),
            created_at: NOW,
            expires_at: NOW + 3600,
        }
    }

    fn api_key(id: &str, user_id: &str, created_at: i64) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            key_hash: format!("hash-{id}"),
            user_id: user_id.into(),
            name: format!("key {id}"),
            scope: ApiKeyScope {
                apps: vec!["shop".into()],
                queries: vec!["billing/invoices".into()],
            },
            created_at,
            expires_at: Some(created_at + 86_400),
            last_used_at: None,
            revoked_at: None,
        }
    }

    fn audit(event: &str, at: i64) -> AuditEvent {
        AuditEvent {
            id: 0,
            at,
            event: event.into(),
            user_id: Some("u1".into()),
            email: Some("u1@example.com".into()),
            actor: Some("cli".into()),
            ip: Some("192.0.2.1".into()),
            user_agent: Some("test".into()),
            reason: Some("wrong_password".into()),
            details: Some(r#"{"role":"admin"}"#.into()),
        }
    }

    #[test]
    fn users_round_trip_and_change() {
        let store = store();
        let created = store
            .create_user(&new_user("u1", "u1@example.com"))
            .unwrap();
        assert_eq!(store.user_by_id("u1").unwrap(), Some(created.clone()));
        assert_eq!(
            store.user_by_email("u1@example.com").unwrap(),
            Some(created.clone())
        );
        assert_eq!(store.user_by_id("nobody").unwrap(), None);
        assert_eq!(store.user_by_email("nobody@example.com").unwrap(), None);

        store.set_role("u1", Role::Admin).unwrap();
        store.set_groups("u1", &["finance".into()]).unwrap();
        assert!(store.record_login_success("u1", NOW + 5).unwrap());
        store.set_disabled("u1", true).unwrap();
        store.set_display_name("u1", "Alice").unwrap();
        store.set_email("u1", "alice@example.com").unwrap();
        store.set_password("u1", "new-hash").unwrap();
        store.set_totp_secret("u1", "sealed").unwrap();
        store.turn_mfa_on("u1").unwrap();
        assert!(store.accept_totp_step("u1", 42).unwrap());
        let expected = UserRecord {
            email: "alice@example.com".into(),
            display_name: "Alice".into(),
            role: Role::Admin,
            groups: vec!["finance".into()],
            disabled: true,
            password_hash: Some("new-hash".into()),
            totp_secret_sealed: Some("sealed".into()),
            mfa_enabled: true,
            totp_last_step: Some(42),
            last_login_at: Some(NOW + 5),
            ..created
        };
        assert_eq!(store.user_by_id("u1").unwrap(), Some(expected.clone()));
        assert_eq!(store.user_by_email("u1@example.com").unwrap(), None);

        store
            .create_user(&NewUser {
                password_hash: None,
                groups: vec![],
                ..new_user("u2", "aaron@example.com")
            })
            .unwrap();
        assert_eq!(store.count_users().unwrap(), 2);
        let listed = store.list_users().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, "u2");
        assert_eq!(listed[0].password_hash, None);
        assert_eq!(listed[1], expected);
    }

    #[test]
    fn changing_a_missing_user_is_not_found() {
        let store = store();
        let missing = |result: Result<(), StoreError>| {
            assert!(
                matches!(result, Err(StoreError::NotFound("user"))),
                "{result:?}"
            );
        };
        missing(store.set_role("nobody", Role::Viewer));
        missing(store.set_groups("nobody", &[]));
        missing(store.set_disabled("nobody", true));
        missing(store.set_display_name("nobody", "x"));
        missing(store.set_email("nobody", "x@example.com"));
        missing(store.set_password("nobody", "hash"));
        assert!(!store.record_login_success("nobody", NOW).unwrap());
        missing(store.clear_lockout("nobody"));
        missing(store.record_login_failure("nobody", NOW, 5, 60).map(|_| ()));
        missing(store.set_totp_secret("nobody", "sealed"));
        missing(store.disable_mfa("nobody", SessionChange::Keep));
        missing(store.turn_mfa_on("nobody"));
        missing(store.replace_recovery_codes("nobody", &["c".into()]));
        missing(store.create_session(&session("t", "p", "nobody", NOW)));
        missing(store.create_token(&token("t", TokenPurpose::PasswordReset, Some("nobody"))));
        missing(store.create_api_key(&api_key("k", "nobody", NOW)));
        missing(store.add_app_member("shop", "nobody"));
        missing(store.set_role_and_end_sessions("nobody", Role::Viewer));
        missing(store.set_groups_and_end_sessions("nobody", &[]));
        assert!(matches!(
            store.change_password("nobody", "hash", "t", &session("t", "p", "nobody", NOW)),
            Err(StoreError::NotFound("session"))
        ));
        missing(store.enable_mfa("nobody", &[], None));
        let nobody = UserRecord {
            id: "nobody".into(),
            email: "nobody@example.com".into(),
            display_name: "Nobody".into(),
            role: Role::Viewer,
            groups: vec![],
            disabled: false,
            password_hash: Some("hash".into()),
            failed_logins: 0,
            locked_until: None,
            totp_secret_sealed: None,
            mfa_enabled: false,
            totp_last_step: None,
            created_at: NOW,
            last_login_at: None,
        };
        assert_eq!(
            store
                .complete_login(&nobody, NOW, &session("t", "p", "nobody", NOW), None)
                .unwrap(),
            SignIn::CredentialsChanged
        );
        assert!(!store.accept_totp_step("nobody", 1).unwrap());
        assert!(!store.use_recovery_code("nobody", "c", NOW).unwrap());
    }

    #[test]
    fn taken_emails_conflict() {
        let store = store();
        store
            .create_user(&new_user("u1", "u1@example.com"))
            .unwrap();
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        let result = store.create_user(&new_user("u3", "u1@example.com"));
        assert!(
            matches!(result, Err(StoreError::Conflict("user with this email"))),
            "{result:?}"
        );
        let result = store.set_email("u2", "u1@example.com");
        assert!(
            matches!(result, Err(StoreError::Conflict("user with this email"))),
            "{result:?}"
        );
        let result = store.create_user(&new_user("u1", "other@example.com"));
        assert!(
            matches!(result, Err(StoreError::Conflict("user"))),
            "{result:?}"
        );
        assert_eq!(store.count_users().unwrap(), 2);
        // Setting one's own email again is not a conflict.
        store.set_email("u2", "u2@example.com").unwrap();
    }

    #[test]
    fn lockout_starts_at_the_threshold_and_success_resets() {
        let store = with_user("u1");
        for attempt in 1..=4 {
            let count = store.record_login_failure("u1", NOW, 5, 900).unwrap();
            assert_eq!(
                count,
                FailureCount {
                    failed_logins: attempt,
                    locked_until: None
                }
            );
        }
        assert_eq!(store.user_by_id("u1").unwrap().unwrap().locked_until, None);
        let count = store.record_login_failure("u1", NOW + 1, 5, 900).unwrap();
        assert_eq!(
            count,
            FailureCount {
                failed_logins: 5,
                locked_until: Some(NOW + 901)
            }
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(
            (user.failed_logins, user.locked_until),
            (5, Some(NOW + 901))
        );

        // While locked, a success changes nothing; after the lock it resets the count.
        assert!(!store.record_login_success("u1", NOW + 900).unwrap());
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (5, None));
        assert!(store.record_login_success("u1", NOW + 2000).unwrap());
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(
            (user.failed_logins, user.locked_until, user.last_login_at),
            (0, None, Some(NOW + 2000))
        );
        store
            .record_login_failure("u1", NOW + 2001, 1, 900)
            .unwrap();
        store.clear_lockout("u1").unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.locked_until), (0, None));
        let count = store.record_login_failure("u1", NOW, 5, 900).unwrap();
        assert_eq!(count.failed_logins, 1);
    }

    #[test]
    fn an_expired_lock_starts_a_new_count() {
        let store = SqliteStore::in_memory().unwrap();
        let user = store
            .create_user(&new_user("u-lapsed", "lapsed@example.com"))
            .unwrap();
        for n in 0..5 {
            store
                .record_login_failure(&user.id, 1_000 + n, 5, 60)
                .unwrap();
        }
        let locked = store.user_by_id(&user.id).unwrap().unwrap();
        assert_eq!(locked.locked_until, Some(1_064));
        // After the lock runs out, one failure counts as the first of a new series.
        let after = store.record_login_failure(&user.id, 2_000, 5, 60).unwrap();
        assert_eq!(
            after,
            FailureCount {
                failed_logins: 1,
                locked_until: None
            }
        );
        assert_eq!(
            store.user_by_id(&user.id).unwrap().unwrap().locked_until,
            None
        );
        for n in 1..4 {
            let count = store
                .record_login_failure(&user.id, 2_000 + n, 5, 60)
                .unwrap();
            assert_eq!(count.locked_until, None);
        }
        let relocked = store.record_login_failure(&user.id, 2_010, 5, 60).unwrap();
        assert_eq!(
            relocked,
            FailureCount {
                failed_logins: 5,
                locked_until: Some(2_070)
            }
        );
    }

    #[test]
    fn a_new_password_clears_the_lock() {
        let store = with_user("u1");
        for _ in 0..3 {
            store.record_login_failure("u1", NOW, 3, 900).unwrap();
        }
        assert!(
            store
                .user_by_id("u1")
                .unwrap()
                .unwrap()
                .locked_until
                .is_some()
        );
        store.set_password("u1", "reset-hash").unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.locked_until), (0, None));
        assert_eq!(user.password_hash.as_deref(), Some("reset-hash"));
    }

    #[test]
    fn totp_steps_are_accepted_once_and_in_order() {
        let store = with_user("u1");
        store.set_totp_secret("u1", "sealed").unwrap();
        assert!(store.accept_totp_step("u1", 100).unwrap());
        assert!(!store.accept_totp_step("u1", 100).unwrap(), "replay");
        assert!(!store.accept_totp_step("u1", 99).unwrap(), "older step");
        assert!(store.accept_totp_step("u1", 101).unwrap());
        assert_eq!(
            store.user_by_id("u1").unwrap().unwrap().totp_last_step,
            Some(101)
        );
        // A new secret (MFA still off) resets the guard.
        store.set_totp_secret("u1", "sealed-2").unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(user.totp_secret_sealed.as_deref(), Some("sealed-2"));
        assert!(!user.mfa_enabled);
        assert_eq!(user.totp_last_step, None);
        assert!(store.accept_totp_step("u1", 50).unwrap());
    }

    #[test]
    fn clearing_totp_removes_all_mfa_state() {
        let store = with_user("u1");
        store.set_totp_secret("u1", "sealed").unwrap();
        store.turn_mfa_on("u1").unwrap();
        store.accept_totp_step("u1", 7).unwrap();
        store
            .replace_recovery_codes("u1", &["a".into(), "b".into()])
            .unwrap();
        store.disable_mfa("u1", SessionChange::Keep).unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(
            (
                user.totp_secret_sealed,
                user.mfa_enabled,
                user.totp_last_step
            ),
            (None, false, None)
        );
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
        assert!(!store.use_recovery_code("u1", "a", NOW).unwrap());
    }

    #[test]
    fn recovery_codes_work_once() {
        let store = with_user("u1");
        store
            .replace_recovery_codes("u1", &["a".into(), "b".into(), "c".into()])
            .unwrap();
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 3);
        assert!(store.use_recovery_code("u1", "b", NOW).unwrap());
        assert!(!store.use_recovery_code("u1", "b", NOW).unwrap(), "reuse");
        assert!(
            !store.use_recovery_code("u1", "zzz", NOW).unwrap(),
            "unknown"
        );
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
        // Another user's code is not this user's.
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        assert!(!store.use_recovery_code("u2", "a", NOW).unwrap());
        // Replacing gives a fresh set and voids the old one.
        store
            .replace_recovery_codes("u1", &["d".into(), "e".into()])
            .unwrap();
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
        assert!(!store.use_recovery_code("u1", "a", NOW).unwrap());
        assert!(store.use_recovery_code("u1", "d", NOW).unwrap());
    }

    #[test]
    fn sessions_round_trip_and_delete() {
        let store = with_user("u1");
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        let first = session("t1", "p1", "u1", NOW);
        store.create_session(&first).unwrap();
        store
            .create_session(&session("t2", "p2", "u1", NOW + 10))
            .unwrap();
        store
            .create_session(&session("t3", "p3", "u2", NOW))
            .unwrap();
        assert_eq!(store.session_by_hash("t1").unwrap(), Some(first.clone()));
        assert_eq!(store.session_by_hash("nope").unwrap(), None);
        let result = store.create_session(&session("t1", "p9", "u1", NOW));
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );

        store.touch_session("t1", NOW + 60).unwrap();
        store
            .set_session_authenticated("u1", "t1", NOW + 30)
            .unwrap();
        let touched = store.session_by_hash("t1").unwrap().unwrap();
        assert_eq!(
            touched,
            SessionRecord {
                last_seen_at: NOW + 60,
                authenticated_at: NOW + 30,
                ..first
            }
        );
        store.touch_session("gone", NOW).unwrap();
        assert!(matches!(
            store.set_session_authenticated("u1", "gone", NOW),
            Err(StoreError::NotFound("session"))
        ));
        // Another account's session is not this user's to renew.
        assert!(matches!(
            store.set_session_authenticated("u2", "t1", NOW),
            Err(StoreError::NotFound("session"))
        ));

        let listed: Vec<_> = store
            .list_user_sessions("u1")
            .unwrap()
            .into_iter()
            .map(|s| s.public_id)
            .collect();
        assert_eq!(listed, ["p2", "p1"]);

        // Another user's public id does not reach this user's session.
        assert!(!store.delete_session_by_public_id("u2", "p1").unwrap());
        assert!(store.delete_session_by_public_id("u1", "p1").unwrap());
        assert!(!store.delete_session_by_public_id("u1", "p1").unwrap());
        store.delete_session("t3").unwrap();
        assert_eq!(store.session_by_hash("t3").unwrap(), None);
        store
            .create_session(&session("t4", "p4", "u1", NOW))
            .unwrap();
        assert_eq!(store.delete_user_sessions("u1").unwrap(), 2);
        assert_eq!(store.delete_user_sessions("u1").unwrap(), 0);
        assert!(store.list_user_sessions("u1").unwrap().is_empty());
    }

    #[test]
    fn purge_removes_idle_and_old_sessions() {
        let store = with_user("u1");
        // Fresh: created and seen recently.
        store
            .create_session(&session("fresh", "p1", "u1", NOW))
            .unwrap();
        // Idle: seen long ago.
        store
            .create_session(&session("idle", "p2", "u1", NOW - 500))
            .unwrap();
        // Old: created before the absolute limit but active.
        store
            .create_session(&SessionRecord {
                last_seen_at: NOW,
                ..session("old", "p3", "u1", NOW - 5000)
            })
            .unwrap();
        assert_eq!(store.purge_sessions(NOW - 100, NOW - 1000).unwrap(), 2);
        let left: Vec<_> = store
            .list_user_sessions("u1")
            .unwrap()
            .into_iter()
            .map(|s| s.token_hash)
            .collect();
        assert_eq!(left, ["fresh"]);
        // The bounds are exclusive.
        assert_eq!(store.purge_sessions(NOW, NOW).unwrap(), 0);
    }

    #[test]
    fn tokens_work_once_and_only_in_time_for_their_purpose() {
        let store = with_user("u1");
        let reset = token("reset", TokenPurpose::PasswordReset, Some("u1"));
        store.create_token(&reset).unwrap();
        let result = store.create_token(&reset);
        assert!(
            matches!(result, Err(StoreError::Conflict("token"))),
            "{result:?}"
        );

        assert_eq!(
            store
                .consume_token("reset", TokenPurpose::EmailChange, NOW)
                .unwrap(),
            None,
            "wrong purpose"
        );
        // Finding a token does not spend it.
        for _ in 0..2 {
            assert_eq!(
                store
                    .find_token("reset", TokenPurpose::PasswordReset, NOW)
                    .unwrap(),
                Some(reset.clone())
            );
        }
        assert_eq!(
            store
                .find_token("reset", TokenPurpose::Signup, NOW)
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .find_token("reset", TokenPurpose::PasswordReset, reset.expires_at)
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .consume_token("reset", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            Some(reset.clone()),
            "the wrong purpose did not use it up"
        );
        assert_eq!(
            store
                .find_token("reset", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            None,
            "used"
        );
        assert_eq!(
            store
                .consume_token("reset", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            None,
            "reuse"
        );
        assert_eq!(
            store
                .consume_token("unknown", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            None
        );

        let signup = token("signup", TokenPurpose::Signup, None);
        store.create_token(&signup).unwrap();
        assert_eq!(
            store
                .consume_token("signup", TokenPurpose::Signup, signup.expires_at)
                .unwrap(),
            None,
            "expired"
        );
        assert_eq!(
            store
                .consume_token("signup", TokenPurpose::Signup, signup.expires_at - 1)
                .unwrap(),
            Some(signup)
        );
    }

    #[test]
    fn revoking_user_tokens_voids_only_that_purpose() {
        let store = with_user("u1");
        store
            .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        store
            .create_token(&token("r2", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        let change = token("c1", TokenPurpose::EmailChange, Some("u1"));
        store.create_token(&change).unwrap();
        store
            .revoke_user_tokens("u1", TokenPurpose::PasswordReset)
            .unwrap();
        for hash in ["r1", "r2"] {
            assert_eq!(
                store
                    .consume_token(hash, TokenPurpose::PasswordReset, NOW)
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            store
                .consume_token("c1", TokenPurpose::EmailChange, NOW)
                .unwrap(),
            Some(change)
        );
    }

    #[test]
    fn api_keys_round_trip_list_and_revoke() {
        let store = with_user("u1");
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        let k1 = api_key("k1", "u1", NOW);
        let k2 = api_key("k2", "u2", NOW + 10);
        let k3 = ApiKeyRecord {
            expires_at: None,
            scope: ApiKeyScope::default(),
            ..api_key("k3", "u1", NOW + 20)
        };
        for key in [&k1, &k2, &k3] {
            store.create_api_key(key).unwrap();
        }
        let result = store.create_api_key(&k1);
        assert!(
            matches!(result, Err(StoreError::Conflict("API key"))),
            "{result:?}"
        );
        assert_eq!(store.api_key("k1").unwrap(), Some(k1.clone()));
        assert_eq!(store.api_key("nope").unwrap(), None);
        assert_eq!(
            store.list_api_keys(None).unwrap(),
            [k3.clone(), k2.clone(), k1.clone()]
        );
        assert_eq!(
            store.list_api_keys(Some("u1")).unwrap(),
            [k3.clone(), k1.clone()]
        );
        assert!(store.list_api_keys(Some("nobody")).unwrap().is_empty());

        store.touch_api_key("k1", NOW + 100).unwrap();
        assert!(store.revoke_api_key("k1", NOW + 200).unwrap());
        assert!(!store.revoke_api_key("k1", NOW + 300).unwrap(), "again");
        assert!(!store.revoke_api_key("nope", NOW).unwrap(), "missing");
        assert_eq!(
            store.api_key("k1").unwrap(),
            Some(ApiKeyRecord {
                last_used_at: Some(NOW + 100),
                revoked_at: Some(NOW + 200),
                ..k1
            })
        );
    }

    #[test]
    fn app_members_survive_a_catalog_apply() {
        let store = with_user("u1");
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        let catalog = yaml::parse(CATALOG).unwrap();
        store.replace_catalog(&catalog, "test").unwrap();
        store.add_app_member("shop", "u1").unwrap();
        store.add_app_member("shop", "u1").unwrap();
        store.add_app_member("shop", "u2").unwrap();
        store.add_app_member("other", "u2").unwrap();

        store
            .replace_catalog(&CatalogSpec::default(), "test")
            .unwrap();
        assert!(store.is_app_member("shop", "u1").unwrap());
        let mut members = store.app_members("shop").unwrap();
        members.sort();
        assert_eq!(members, ["u1", "u2"]);

        assert!(store.remove_app_member("shop", "u1").unwrap());
        assert!(!store.remove_app_member("shop", "u1").unwrap());
        assert!(!store.is_app_member("shop", "u1").unwrap());
        assert_eq!(store.app_members("shop").unwrap(), ["u2"]);
        assert_eq!(store.app_members("other").unwrap(), ["u2"]);
    }

    #[test]
    fn deleting_a_user_removes_what_hangs_off_it_but_not_the_audit_log() {
        let store = with_user("u1");
        store
            .create_session(&session("t1", "p1", "u1", NOW))
            .unwrap();
        store
            .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        store.create_api_key(&api_key("k1", "u1", NOW)).unwrap();
        store.replace_recovery_codes("u1", &["a".into()]).unwrap();
        store.add_app_member("shop", "u1").unwrap();
        store.append_audit(&audit("user_created", NOW)).unwrap();
        store
            .lock()
            .execute("DELETE FROM users WHERE id = 'u1'", [])
            .unwrap();
        assert_eq!(store.session_by_hash("t1").unwrap(), None);
        assert_eq!(store.api_key("k1").unwrap(), None);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
        assert!(!store.is_app_member("shop", "u1").unwrap());
        assert_eq!(
            store
                .consume_token("r1", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            None
        );
        assert_eq!(store.list_audit(10, None).unwrap().len(), 1);
    }

    #[test]
    fn audit_log_pages_newest_first_and_is_append_only() {
        let store = store();
        let mut ids = Vec::new();
        for n in 0..5 {
            let mut event = audit(&format!("event_{n}"), NOW + n);
            event.id = 999; // Ignored: the store assigns ids.
            ids.push(store.append_audit(&event).unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        let page = store.list_audit(2, None).unwrap();
        assert_eq!(
            page,
            [
                AuditEvent {
                    id: ids[4],
                    ..audit("event_4", NOW + 4)
                },
                AuditEvent {
                    id: ids[3],
                    ..audit("event_3", NOW + 3)
                },
            ]
        );
        let next: Vec<_> = store
            .list_audit(10, Some(page[1].id))
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(next, ["event_2", "event_1", "event_0"]);
        let bare = AuditEvent {
            id: 0,
            at: NOW,
            event: "login_failed".into(),
            user_id: None,
            email: None,
            actor: None,
            ip: None,
            user_agent: None,
            reason: None,
            details: None,
        };
        let id = store.append_audit(&bare).unwrap();
        assert_eq!(
            store.list_audit(1, None).unwrap(),
            [AuditEvent { id, ..bare }]
        );

        let conn = store.lock();
        let update = conn.execute("UPDATE audit_events SET event = 'forged'", []);
        assert!(
            update
                .unwrap_err()
                .to_string()
                .contains("audit_events is append-only")
        );
        let delete = conn.execute("DELETE FROM audit_events", []);
        assert!(
            delete
                .unwrap_err()
                .to_string()
                .contains("audit_events is append-only")
        );
        let count: i64 = conn
            .query_row("SELECT count(*) FROM audit_events", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 6);
    }

    // ----- Atomicity of the combined operations -----------------------------------------
    //
    // Each test makes one step of an operation fail — naturally (a taken email, a session id
    // in use) or by an injected failure standing in for an error or a crash at that point —
    // and checks that the steps before it did not happen either.

    /// Makes every statement of kind `event` (`DELETE ON sessions`, ...) fail from now on,
    /// as an error or a crash at that step would.
    fn fail_at(store: &SqliteStore, event: &str) {
        store
            .lock()
            .execute_batch(&format!(
                "CREATE TEMP TRIGGER injected_failure BEFORE {event} \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
            ))
            .unwrap();
    }

    fn stop_failing(store: &SqliteStore) {
        store
            .lock()
            .execute_batch("DROP TRIGGER temp.injected_failure")
            .unwrap();
    }

    fn assert_injected<T: std::fmt::Debug>(result: Result<T, StoreError>) {
        match &result {
            Err(StoreError::Sqlite { source, .. })
                if source.to_string().contains("injected failure") => {}
            _ => panic!("expected the injected failure, got {result:?}"),
        }
    }

    fn session_ids(store: &SqliteStore, user_id: &str) -> Vec<String> {
        let mut ids: Vec<_> = store
            .list_user_sessions(user_id)
            .unwrap()
            .into_iter()
            .map(|s| s.token_hash)
            .collect();
        ids.sort();
        ids
    }

    /// u1 with two sessions (`t1`, `t2`) and two failed logins; u2 with session `other`,
    /// whose id a new session of u1 can collide with.
    fn accounts() -> SqliteStore {
        let store = with_user("u1");
        store
            .create_user(&new_user("u2", "u2@example.com"))
            .unwrap();
        store
            .create_session(&session("t1", "p1", "u1", NOW))
            .unwrap();
        store
            .create_session(&session("t2", "p2", "u1", NOW))
            .unwrap();
        store
            .create_session(&session("other", "p-other", "u2", NOW))
            .unwrap();
        for _ in 0..2 {
            store.record_login_failure("u1", NOW, 5, 900).unwrap();
        }
        store
    }

    /// A new session for u1 whose id is taken (by u2's session): opening it fails.
    fn colliding_session() -> SessionRecord {
        session("other", "p-new", "u1", NOW + 10)
    }

    fn usable(store: &SqliteStore, hash: &str, purpose: TokenPurpose) -> bool {
        store.find_token(hash, purpose, NOW).unwrap().is_some()
    }

    #[test]
    fn a_role_change_and_the_end_of_sessions_happen_together() {
        let store = accounts();
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.set_role_and_end_sessions("u1", Role::Admin));
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(user.role, Role::Developer, "the role did not change");
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        stop_failing(&store);
        store.set_role_and_end_sessions("u1", Role::Admin).unwrap();
        assert_eq!(store.user_by_id("u1").unwrap().unwrap().role, Role::Admin);
        assert!(session_ids(&store, "u1").is_empty());
        assert_eq!(session_ids(&store, "u2"), ["other"]);
    }

    #[test]
    fn a_group_change_and_the_end_of_sessions_happen_together() {
        let store = accounts();
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.set_groups_and_end_sessions("u1", &["finance".into()]));
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(user.groups, ["eng", "ops"], "the groups did not change");
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        stop_failing(&store);
        store
            .set_groups_and_end_sessions("u1", &["finance".into()])
            .unwrap();
        assert_eq!(store.user_by_id("u1").unwrap().unwrap().groups, ["finance"]);
        assert!(session_ids(&store, "u1").is_empty());
        assert_eq!(session_ids(&store, "u2"), ["other"]);
    }

    #[test]
    fn disabling_and_the_end_of_sessions_happen_together() {
        let store = accounts();
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.set_disabled("u1", true));
        assert!(!store.user_by_id("u1").unwrap().unwrap().disabled);
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        stop_failing(&store);
        store.set_disabled("u1", true).unwrap();
        assert!(store.user_by_id("u1").unwrap().unwrap().disabled);
        assert!(session_ids(&store, "u1").is_empty());
        // Enabling ends nothing.
        store
            .create_session(&session("t3", "p3", "u1", NOW))
            .unwrap();
        store.set_disabled("u1", false).unwrap();
        assert!(!store.user_by_id("u1").unwrap().unwrap().disabled);
        assert_eq!(session_ids(&store, "u1"), ["t3"]);
    }

    #[test]
    fn a_sign_in_records_its_success_only_with_its_session() {
        let store = accounts();
        let u1 = store.user_by_id("u1").unwrap().unwrap();
        // Opening the session fails: the failure count is not reset, no login is recorded
        // and the session the request came with is not ended.
        let result = store.complete_login(&u1, NOW + 5, &colliding_session(), Some("t1"));
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (2, None));
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        // Ending the replaced session fails: the new one is not kept either.
        fail_at(&store, "DELETE ON sessions");
        let new = session("t3", "p3", "u1", NOW + 5);
        assert_injected(store.complete_login(&u1, NOW + 5, &new, Some("t1")));
        assert_eq!(store.user_by_id("u1").unwrap().unwrap().failed_logins, 2);
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
        stop_failing(&store);

        assert_eq!(
            store
                .complete_login(&u1, NOW + 5, &new, Some("t1"))
                .unwrap(),
            SignIn::Admitted
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (0, Some(NOW + 5)));
        assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);

        // Locked at the time of the success: nothing changes, no session opens.
        for _ in 0..5 {
            store.record_login_failure("u1", NOW + 6, 5, 900).unwrap();
        }
        let refused = session("t4", "p4", "u1", NOW + 7);
        assert_eq!(
            store.complete_login(&u1, NOW + 7, &refused, None).unwrap(),
            SignIn::Locked
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (5, Some(NOW + 5)));
        assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);
    }

    #[test]
    fn a_reauthentication_records_its_success_only_with_the_session() {
        let store = accounts();
        let u1 = store.user_by_id("u1").unwrap().unwrap();
        let result = store.complete_reauthentication(&u1, "gone", NOW + 5);
        assert!(
            matches!(result, Err(StoreError::NotFound("session"))),
            "{result:?}"
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (2, None));

        // Another account's session is not renewed either.
        let result = store.complete_reauthentication(&u1, "other", NOW + 5);
        assert!(
            matches!(result, Err(StoreError::NotFound("session"))),
            "{result:?}"
        );
        assert_eq!(
            store
                .session_by_hash("other")
                .unwrap()
                .unwrap()
                .authenticated_at,
            NOW
        );

        assert_eq!(
            store.complete_reauthentication(&u1, "t1", NOW + 5).unwrap(),
            SignIn::Admitted
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.failed_logins, user.last_login_at), (0, Some(NOW + 5)));
        let renewed = store.session_by_hash("t1").unwrap().unwrap();
        assert_eq!(renewed.authenticated_at, NOW + 5);

        for _ in 0..5 {
            store.record_login_failure("u1", NOW + 6, 5, 900).unwrap();
        }
        assert_eq!(
            store.complete_reauthentication(&u1, "t2", NOW + 7).unwrap(),
            SignIn::Locked
        );
        assert_eq!(
            store
                .session_by_hash("t2")
                .unwrap()
                .unwrap()
                .authenticated_at,
            NOW
        );
    }

    #[test]
    fn a_password_change_happens_whole_or_not_at_all() {
        let store = accounts();
        let change = token("c1", TokenPurpose::EmailChange, Some("u1"));
        store.create_token(&change).unwrap();
        let before = store.user_by_id("u1").unwrap().unwrap();

        // The caller's new session cannot open: the password, the pending email change and
        // the other sessions all stay as they were.
        let result = store.change_password("u1", "new-hash", "t1", &colliding_session());
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
        assert!(usable(&store, "c1", TokenPurpose::EmailChange));
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        let new = session("t3", "p3", "u1", NOW + 10);
        store.change_password("u1", "new-hash", "t1", &new).unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(user.password_hash.as_deref(), Some("new-hash"));
        assert_eq!((user.failed_logins, user.locked_until), (0, None));
        assert!(!usable(&store, "c1", TokenPurpose::EmailChange));
        assert_eq!(session_ids(&store, "u1"), ["t3"]);
        assert_eq!(session_ids(&store, "u2"), ["other"]);
    }

    #[test]
    fn a_password_reset_spends_its_token_only_with_the_whole_change() {
        let store = accounts();
        for _ in 0..3 {
            store.record_login_failure("u1", NOW, 5, 900).unwrap();
        }
        let locked = store.user_by_id("u1").unwrap().unwrap();
        assert!(locked.locked_until.is_some());
        store
            .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        store
            .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
            .unwrap();

        // The last step (ending the sessions) fails: the token is still usable, the password
        // and the lock unchanged, the pending email change and the sessions intact.
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.complete_password_reset("r1", "u1", "reset-hash", NOW));
        assert!(usable(&store, "r1", TokenPurpose::PasswordReset));
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), locked);
        assert!(usable(&store, "c1", TokenPurpose::EmailChange));
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
        stop_failing(&store);

        // A token issued for another account does nothing and is not spent.
        assert_eq!(
            store
                .complete_password_reset("r1", "u2", "reset-hash", NOW)
                .unwrap(),
            None
        );
        assert!(usable(&store, "r1", TokenPurpose::PasswordReset));

        assert_eq!(
            store
                .complete_password_reset("r1", "u1", "reset-hash", NOW)
                .unwrap(),
            Some(2)
        );
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(user.password_hash.as_deref(), Some("reset-hash"));
        assert_eq!((user.failed_logins, user.locked_until), (0, None));
        assert!(!usable(&store, "c1", TokenPurpose::EmailChange));
        assert!(session_ids(&store, "u1").is_empty());
        assert_eq!(
            store
                .complete_password_reset("r1", "u1", "again", NOW)
                .unwrap(),
            None,
            "the token works once"
        );
    }

    #[test]
    fn a_signup_spends_its_token_only_if_the_account_is_created() {
        let store = accounts();
        // The token's address is taken: 409, and the token is still there.
        let mut taken = token("s1", TokenPurpose::Signup, None);
        taken.email = "u2@example.com".into();
        store.create_token(&taken).unwrap();
        let newcomer = NewUser {
            role: Role::Viewer,
            ..new_user("u3", "u2@example.com")
        };
        let first = session("t3", "p3", "u3", NOW);
        let result = store.complete_signup("s1", NOW, &newcomer, &first);
        assert!(
            matches!(result, Err(StoreError::Conflict("user with this email"))),
            "{result:?}"
        );
        assert!(usable(&store, "s1", TokenPurpose::Signup));
        assert_eq!(store.count_users().unwrap(), 2);

        // The first session cannot open: no account, and the token is still usable.
        store
            .create_token(&token("s2", TokenPurpose::Signup, None))
            .unwrap();
        let newcomer = NewUser {
            role: Role::Viewer,
            ..new_user("u3", "new@example.com")
        };
        let colliding = session("other", "p3", "u3", NOW);
        let result = store.complete_signup("s2", NOW, &newcomer, &colliding);
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );
        assert!(usable(&store, "s2", TokenPurpose::Signup));
        assert_eq!(store.user_by_id("u3").unwrap(), None);

        // A user for another address than the token's does nothing.
        let other = NewUser {
            email: "else@example.com".into(),
            ..newcomer.clone()
        };
        assert_eq!(
            store.complete_signup("s2", NOW, &other, &first).unwrap(),
            None
        );
        assert!(usable(&store, "s2", TokenPurpose::Signup));

        let created = store
            .complete_signup("s2", NOW, &newcomer, &first)
            .unwrap()
            .unwrap();
        assert_eq!(store.user_by_id("u3").unwrap(), Some(created));
        assert_eq!(session_ids(&store, "u3"), ["t3"]);
        assert_eq!(
            store.complete_signup("s2", NOW, &newcomer, &first).unwrap(),
            None,
            "the token works once"
        );
    }

    #[test]
    fn an_email_change_to_a_taken_address_leaves_the_token_unspent() {
        let store = accounts();
        let mut change = token("c1", TokenPurpose::EmailChange, Some("u1"));
        change.email = "u2@example.com".into();
        store.create_token(&change).unwrap();
        store
            .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        let result = store.confirm_email_change("c1", NOW);
        assert!(
            matches!(result, Err(StoreError::Conflict("user with this email"))),
            "{result:?}"
        );
        assert!(usable(&store, "c1", TokenPurpose::EmailChange));
        assert_eq!(
            store.user_by_id("u1").unwrap().unwrap().email,
            "u1@example.com"
        );
        assert!(usable(&store, "r1", TokenPurpose::PasswordReset));
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        // Once the address is free the same link works, once.
        store.set_email("u2", "u2-new@example.com").unwrap();
        let changed = store.confirm_email_change("c1", NOW).unwrap().unwrap();
        assert_eq!(changed.email, "u2@example.com");
        assert_eq!(store.user_by_id("u1").unwrap(), Some(changed));
        assert!(!usable(&store, "r1", TokenPurpose::PasswordReset));
        assert!(session_ids(&store, "u1").is_empty());
        assert_eq!(session_ids(&store, "u2"), ["other"]);
        assert_eq!(store.confirm_email_change("c1", NOW).unwrap(), None);
    }

    #[test]
    fn an_email_change_spends_its_token_only_with_the_end_of_sessions() {
        let store = accounts();
        store
            .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
            .unwrap();
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.confirm_email_change("c1", NOW));
        assert!(usable(&store, "c1", TokenPurpose::EmailChange));
        assert_eq!(
            store.user_by_id("u1").unwrap().unwrap().email,
            "u1@example.com"
        );
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
    }

    #[test]
    fn a_new_link_voids_older_ones_only_if_it_is_stored() {
        let store = accounts();
        store
            .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        store
            .create_token(&token("x", TokenPurpose::PasswordReset, Some("u2")))
            .unwrap();
        // The new token cannot be stored (its hash is taken): the older link still works.
        let result = store.replace_user_token(&token("x", TokenPurpose::PasswordReset, Some("u1")));
        assert!(
            matches!(result, Err(StoreError::Conflict("token"))),
            "{result:?}"
        );
        assert!(usable(&store, "r1", TokenPurpose::PasswordReset));

        store
            .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
            .unwrap();
        store
            .replace_user_token(&token("r2", TokenPurpose::PasswordReset, Some("u1")))
            .unwrap();
        assert!(!usable(&store, "r1", TokenPurpose::PasswordReset));
        assert!(usable(&store, "r2", TokenPurpose::PasswordReset));
        assert!(usable(&store, "x", TokenPurpose::PasswordReset), "u2's");
        assert!(
            usable(&store, "c1", TokenPurpose::EmailChange),
            "other purpose"
        );
        // A token without a user is only stored.
        store
            .replace_user_token(&token("s1", TokenPurpose::Signup, None))
            .unwrap();
        assert!(usable(&store, "s1", TokenPurpose::Signup));
    }

    #[test]
    fn mfa_is_turned_on_only_with_the_end_of_sessions_and_the_new_one() {
        let store = accounts();
        store.set_totp_secret("u1", "sealed").unwrap();
        store.replace_recovery_codes("u1", &["old".into()]).unwrap();
        let codes = ["a".to_string(), "b".to_string()];

        let result = store.enable_mfa("u1", &codes, Some(("t1", &colliding_session())));
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );
        assert!(!store.user_by_id("u1").unwrap().unwrap().mfa_enabled);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 1);
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        let new = session("t3", "p3", "u1", NOW);
        store.enable_mfa("u1", &codes, Some(("t1", &new))).unwrap();
        assert!(store.user_by_id("u1").unwrap().unwrap().mfa_enabled);
        assert!(!store.use_recovery_code("u1", "old", NOW).unwrap());
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
        assert_eq!(session_ids(&store, "u1"), ["t3"]);
        assert_eq!(session_ids(&store, "u2"), ["other"]);
        // Without a session to open (an API key caller), every session still ends.
        store.enable_mfa("u1", &codes, None).unwrap();
        assert!(session_ids(&store, "u1").is_empty());
    }

    #[test]
    fn mfa_is_turned_off_only_with_its_session_change() {
        let store = accounts();
        store.set_totp_secret("u1", "sealed").unwrap();
        store
            .enable_mfa("u1", &["a".into(), "b".into()], None)
            .unwrap();
        for (hash, public_id) in [("t1", "p1"), ("t2", "p2")] {
            store
                .create_session(&session(hash, public_id, "u1", NOW))
                .unwrap();
        }
        let enabled = store.user_by_id("u1").unwrap().unwrap();

        // The caller's session cannot be rotated: MFA stays on with its codes.
        let rotate = SessionChange::Rotate {
            old: "t1",
            new: &colliding_session(),
        };
        let result = store.disable_mfa("u1", rotate);
        assert!(
            matches!(result, Err(StoreError::Conflict("session"))),
            "{result:?}"
        );
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
        assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

        // An admin's reset cannot end the sessions: MFA stays on too.
        fail_at(&store, "DELETE ON sessions");
        assert_injected(store.disable_mfa("u1", SessionChange::EndAll));
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
        stop_failing(&store);

        let new = session("t3", "p3", "u1", NOW);
        let rotate = SessionChange::Rotate {
            old: "t1",
            new: &new,
        };
        store.disable_mfa("u1", rotate).unwrap();
        let user = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!((user.totp_secret_sealed, user.mfa_enabled), (None, false));
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
        assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);
        store.disable_mfa("u1", SessionChange::EndAll).unwrap();
        assert!(session_ids(&store, "u1").is_empty());
        assert_eq!(session_ids(&store, "u2"), ["other"]);
    }

    // ----- Races with a request in flight ----------------------------------------------

    #[test]
    fn a_sign_in_is_refused_when_the_account_changed_after_its_check() {
        let store = accounts();
        let attempt = session("t9", "p9", "u1", NOW + 5);
        let refused = |store: &SqliteStore, verified: &UserRecord| {
            let before = store.user_by_id("u1").unwrap().unwrap();
            assert_eq!(
                store
                    .complete_login(verified, NOW + 5, &attempt, None)
                    .unwrap(),
                SignIn::CredentialsChanged
            );
            assert_eq!(store.session_by_hash("t9").unwrap(), None, "no session");
            assert_eq!(
                store
                    .complete_reauthentication(verified, "t3", NOW + 5)
                    .unwrap(),
                SignIn::CredentialsChanged
            );
            assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
        };

        // The password changes between the check and the completion.
        let verified = store.user_by_id("u1").unwrap().unwrap();
        let t3 = session("t3", "p3", "u1", NOW + 1);
        store.change_password("u1", "new-hash", "t1", &t3).unwrap();
        refused(&store, &verified);
        assert_eq!(
            store
                .session_by_hash("t3")
                .unwrap()
                .unwrap()
                .authenticated_at,
            NOW + 1,
            "the session was not re-authenticated"
        );

        // MFA is turned on meanwhile.
        let verified = store.user_by_id("u1").unwrap().unwrap();
        store.set_totp_secret("u1", "sealed").unwrap();
        store
            .enable_mfa("u1", &["a".into()], Some(("t3", &t3)))
            .unwrap();
        refused(&store, &verified);

        // The email changes meanwhile.
        let verified = store.user_by_id("u1").unwrap().unwrap();
        store.set_email("u1", "moved@example.com").unwrap();
        refused(&store, &verified);

        // The account is disabled meanwhile (its sessions end; one is back for the check).
        let verified = store.user_by_id("u1").unwrap().unwrap();
        store.set_disabled("u1", true).unwrap();
        store.create_session(&t3).unwrap();
        refused(&store, &verified);

        // As verified, it goes through.
        store.set_disabled("u1", false).unwrap();
        let verified = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(
            store
                .complete_login(&verified, NOW + 5, &attempt, None)
                .unwrap(),
            SignIn::Admitted
        );
        assert!(store.session_by_hash("t9").unwrap().is_some());
    }

    #[test]
    fn an_enrolment_never_turns_mfa_off() {
        let store = accounts();
        store.set_totp_secret("u1", "sealed").unwrap();
        store
            .enable_mfa("u1", &["a".into(), "b".into()], None)
            .unwrap();
        let enabled = store.user_by_id("u1").unwrap().unwrap();

        // An enrolment that checked "MFA off" before the confirmation committed.
        let result = store.set_totp_secret("u1", "sealed-2");
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
        assert!(enabled.mfa_enabled);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    }

    #[test]
    fn a_rotation_never_reopens_a_session_ended_meanwhile() {
        let store = accounts();
        store.set_totp_secret("u1", "sealed").unwrap();
        let before = store.user_by_id("u1").unwrap().unwrap();
        let codes = ["a".to_string(), "b".to_string()];
        let new = session("t3", "p3", "u1", NOW + 10);
        let gone = |result: Result<(), StoreError>| {
            assert!(
                matches!(result, Err(StoreError::NotFound("session"))),
                "{result:?}"
            );
        };

        // The caller's request came with t1; "sign out everywhere" ended it meanwhile.
        store.delete_user_sessions("u1").unwrap();
        gone(store.change_password("u1", "new-hash", "t1", &new));
        gone(store.enable_mfa("u1", &codes, Some(("t1", &new))));
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
        assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
        assert!(session_ids(&store, "u1").is_empty(), "no new session");

        store.enable_mfa("u1", &codes, None).unwrap();
        let enabled = store.user_by_id("u1").unwrap().unwrap();
        let rotate = SessionChange::Rotate {
            old: "t1",
            new: &new,
        };
        gone(store.disable_mfa("u1", rotate));
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
        assert!(session_ids(&store, "u1").is_empty(), "no new session");

        // Another account's session is not the caller's to end.
        let rotate = SessionChange::Rotate {
            old: "other",
            new: &new,
        };
        gone(store.disable_mfa("u1", rotate));
        gone(store.change_password("u1", "new-hash", "other", &new));
        assert_eq!(session_ids(&store, "u2"), ["other"]);
        assert!(session_ids(&store, "u1").is_empty());
    }

    #[test]
    fn undecodable_rows_are_reported_as_corrupt() {
        let store = with_user("u1");
        store
            .lock()
            .execute("UPDATE users SET \"groups\" = 'not json'", [])
            .unwrap();
        let result = store.user_by_id("u1");
        assert!(
            matches!(result, Err(StoreError::Corrupt { what: "user", .. })),
            "{result:?}"
        );
        assert!(store.list_users().is_err());
    }

    #[test]
    fn a_version_1_store_migrates_and_keeps_its_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        {
            // A store as the previous release left it: the catalog tables only.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::super::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO apps (name, visibility, updated_at) \
                 VALUES ('shop', 'private', '2024-01-01T00:00:00.000Z')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, super::super::MIGRATIONS.len() as i64);
        assert!(store.load_catalog().unwrap().apps.contains_key("shop"));
        store
            .create_user(&new_user("u1", "u1@example.com"))
            .unwrap();
        store.add_app_member("shop", "u1").unwrap();
        drop(store);

        // Reopening runs nothing again and keeps the new data.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.count_users().unwrap(), 1);
        assert!(store.is_app_member("shop", "u1").unwrap());
    }
}
