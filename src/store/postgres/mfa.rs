//! [`MfaStore`] for the PostgreSQL store: the MFA columns of `users` and the
//! `recovery_codes` table.
//!
//! Starting an enrolment, the TOTP replay guard and spending a recovery code are each one
//! conditional UPDATE (re-checked by PostgreSQL on a row a concurrent writer changed).
//! Turning MFA on or off runs its steps and the session change in one transaction.

use super::rows::Db;
use super::sessions::{change_sessions, delete_user_sessions, end_own_session, insert_session};
use super::users::update_user;
use super::{Finish, PostgresStore, pg};
use crate::store::StoreError;
use crate::store::mfa::MfaStore;
use crate::store::sessions::{SessionChange, SessionRecord};

/// Replaces the user's recovery codes; several statements, so run it in a transaction. The
/// user's row is locked first, so two replacements never interleave.
async fn write_recovery_codes(db: &impl Db, id: &str, hashes: &[String]) -> Result<(), StoreError> {
    let exists = db
        .query_opt("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .map_err(pg("reading a user"))?;
    if exists.is_none() {
        return Err(StoreError::NotFound("user"));
    }
    delete_recovery_codes(db, id).await?;
    for hash in hashes {
        db.execute(
            "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
            &[&id, hash],
        )
        .await
        .map_err(pg("writing recovery codes"))?;
    }
    Ok(())
}

async fn delete_recovery_codes(db: &impl Db, id: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&id])
        .await
        .map_err(pg("deleting recovery codes"))?;
    Ok(())
}

impl MfaStore for PostgresStore {
    fn set_totp_secret(&self, id: &str, sealed: &str) -> Result<(), StoreError> {
        self.with_client(async |db| {
            let changed = db
                .execute(
                    "UPDATE users SET totp_secret = $2, mfa_enabled = FALSE, totp_last_step = NULL \
                     WHERE id = $1 AND NOT mfa_enabled",
                    &[&id, &sealed],
                )
                .await
                .map_err(pg("setting a TOTP secret"))?;
            if changed == 1 {
                return Ok(());
            }
            let exists = db
                .query_opt("SELECT 1 FROM users WHERE id = $1", &[&id])
                .await
                .map_err(pg("setting a TOTP secret"))?;
            match exists {
                Some(_) => Err(StoreError::Conflict("enabled two-factor authentication")),
                None => Err(StoreError::NotFound("user")),
            }
        })
    }

    fn enable_mfa(
        &self,
        id: &str,
        hashes: &[String],
        session: Option<(&str, &SessionRecord)>,
    ) -> Result<(), StoreError> {
        self.write("committing an MFA change", async |tx| {
            if let Some((old, _)) = session {
                end_own_session(tx, id, old).await?;
            }
            write_recovery_codes(tx, id, hashes).await?;
            update_user(
                tx,
                "UPDATE users SET mfa_enabled = TRUE WHERE id = $1",
                &[&id],
                "enabling MFA",
            )
            .await?;
            delete_user_sessions(tx, id).await?;
            if let Some((_, new)) = session {
                insert_session(tx, new).await?;
            }
            Ok(Finish::Commit(()))
        })
    }

    fn disable_mfa(&self, id: &str, sessions: SessionChange<'_>) -> Result<(), StoreError> {
        self.write("committing an MFA change", async |tx| {
            update_user(
                tx,
                "UPDATE users SET totp_secret = NULL, mfa_enabled = FALSE, totp_last_step = NULL \
                 WHERE id = $1",
                &[&id],
                "clearing a TOTP secret",
            )
            .await?;
            delete_recovery_codes(tx, id).await?;
            change_sessions(tx, id, sessions).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let changed = db
                .execute(
                    "UPDATE users SET totp_last_step = $2 \
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&id, &step],
                )
                .await
                .map_err(pg("accepting a TOTP code"))?;
            Ok(changed == 1)
        })
    }

    fn replace_recovery_codes(&self, id: &str, hashes: &[String]) -> Result<(), StoreError> {
        self.write("committing a recovery code change", async |tx| {
            write_recovery_codes(tx, id, hashes).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn use_recovery_code(&self, id: &str, hash: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let changed = db
                .execute(
                    "UPDATE recovery_codes SET used_at = $3 \
                     WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                    &[&id, &hash, &now],
                )
                .await
                .map_err(pg("using a recovery code"))?;
            Ok(changed == 1)
        })
    }

    fn remaining_recovery_codes(&self, id: &str) -> Result<u32, StoreError> {
        self.with_client(async |db| {
            let count: i64 = db
                .query_one(
                    "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                    &[&id],
                )
                .await
                .map_err(pg("counting recovery codes"))?
                .get(0);
            Ok(super::rows::to_u32(count))
        })
    }
}
