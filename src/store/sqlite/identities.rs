//! [`IdentityStore`] for the SQLite store: the `user_identities` and `sso_flows` tables.

use rusqlite::{OptionalExtension, Row, params};

use super::rows::{immediate, insert_error};
use super::users::{insert_user, user_where};
use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::identities::{IdentityStore, LinkedIdentity, SsoFlow};
use crate::store::users::{NewUser, UserRecord};

const IDENTITY_COLUMNS: &str = "provider, subject, user_id, email, linked_at, last_sign_in_at";

fn identity_from_row(row: &Row<'_>) -> rusqlite::Result<LinkedIdentity> {
    Ok(LinkedIdentity {
        provider: row.get(0)?,
        subject: row.get(1)?,
        user_id: row.get(2)?,
        email: row.get(3)?,
        linked_at: row.get(4)?,
        last_sign_in_at: row.get(5)?,
    })
}

fn insert_identity(
    conn: &rusqlite::Connection,
    identity: &LinkedIdentity,
) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO user_identities ({IDENTITY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        ),
        params![
            identity.provider,
            identity.subject,
            identity.user_id,
            identity.email,
            identity.linked_at,
            identity.last_sign_in_at
        ],
    )
    .map_err(insert_error("linking an identity", "identity"))?;
    Ok(())
}

impl IdentityStore for SqliteStore {
    fn begin_sso_flow(&self, flow: &SsoFlow) -> Result<(), StoreError> {
        let conn = self.lock();
        // Expired flows go as new ones come, so abandoned sign-ins do not pile up.
        conn.execute(
            "DELETE FROM sso_flows WHERE expires_at < ?1",
            [flow.expires_at - 24 * 3600],
        )
        .map_err(sqlite("removing expired sign-in flows"))?;
        conn.execute(
            "INSERT INTO sso_flows (state_hash, provider, nonce, verifier_hash, return_to, \
             link_user, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                flow.state_hash,
                flow.provider,
                flow.nonce,
                flow.verifier_hash,
                flow.return_to,
                flow.link_user,
                flow.expires_at
            ],
        )
        .map_err(insert_error("starting a sign-in flow", "sign-in flow"))?;
        Ok(())
    }

    fn take_sso_flow(&self, state_hash: &str, now: i64) -> Result<Option<SsoFlow>, StoreError> {
        let flow = self
            .lock()
            .query_row(
                "DELETE FROM sso_flows WHERE state_hash = ?1 RETURNING state_hash, provider, \
                 nonce, verifier_hash, return_to, link_user, expires_at",
                [state_hash],
                |row| {
                    Ok(SsoFlow {
                        state_hash: row.get(0)?,
                        provider: row.get(1)?,
                        nonce: row.get(2)?,
                        verifier_hash: row.get(3)?,
                        return_to: row.get(4)?,
                        link_user: row.get(5)?,
                        expires_at: row.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(sqlite("taking a sign-in flow"))?;
        Ok(flow.filter(|flow| flow.expires_at >= now))
    }

    fn user_for_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.lock();
        let user_id: Option<String> = conn
            .query_row(
                "SELECT user_id FROM user_identities WHERE provider = ?1 AND subject = ?2",
                params![provider, subject],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite("reading an identity"))?;
        match user_id {
            Some(id) => user_where(&conn, "id = ?1", &id, "reading a user"),
            None => Ok(None),
        }
    }

    fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), StoreError> {
        insert_identity(&self.lock(), identity)
    }

    fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &LinkedIdentity,
    ) -> Result<UserRecord, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let record = insert_user(&tx, user)?;
        insert_identity(&tx, identity)?;
        tx.commit()
            .map_err(sqlite("committing a new federated user"))?;
        Ok(record)
    }

    fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {IDENTITY_COLUMNS} FROM user_identities WHERE user_id = ?1 \
                 ORDER BY provider, subject"
            ))
            .map_err(sqlite("reading identities"))?;
        stmt.query_map([user_id], identity_from_row)
            .map_err(sqlite("reading identities"))?
            .collect::<Result<_, _>>()
            .map_err(sqlite("reading identities"))
    }

    fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<bool, StoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM user_identities WHERE user_id = ?1 AND provider = ?2",
                params![user_id, provider],
            )
            .map_err(sqlite("unlinking an identity"))?;
        Ok(deleted > 0)
    }

    fn record_identity_sign_in(
        &self,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE user_identities SET last_sign_in_at = ?3 \
                 WHERE provider = ?1 AND subject = ?2",
                params![provider, subject, now],
            )
            .map_err(sqlite("recording an identity's sign-in"))?;
        Ok(())
    }
}
