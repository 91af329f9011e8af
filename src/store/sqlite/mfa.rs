//! [`MfaStore`] for the SQLite store: the MFA columns of `users` and the `recovery_codes`
//! table.
//!
//! Starting an enrolment, the TOTP replay guard and spending a recovery code are each one
//! conditional statement. Turning MFA on or off runs its steps and the session change in
//! one IMMEDIATE transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::immediate;
use super::sessions::{change_sessions, delete_user_sessions, end_own_session, insert_session};
use super::users::update_user;
use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::mfa::MfaStore;
use crate::store::sessions::{SessionChange, SessionRecord};

/// Stores a new (unconfirmed) sealed secret while MFA is off. A new secret starts
/// unconfirmed, and the replay guard belongs to the old one. Conditional on MFA being off in
/// the same statement, so an enrolment racing a confirmation cannot turn MFA off again:
/// [`StoreError::Conflict`] when it is on.
pub(super) fn set_totp_secret(conn: &Connection, id: &str, sealed: &str) -> Result<(), StoreError> {
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
pub(super) fn turn_mfa_on(conn: &Connection, id: &str) -> Result<(), StoreError> {
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

impl MfaStore for SqliteStore {
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
}
