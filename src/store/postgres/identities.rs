//! [`IdentityStore`] for the PostgreSQL store: the `user_identities` and `sso_flows` tables.

use tokio_postgres::Row;

use super::rows::{Db, insert_error};
use super::users::{insert_user, user_by_id};
use super::{Finish, PostgresStore, pg};
use crate::store::StoreError;
use crate::store::identities::{IdentityStore, LinkedIdentity, SsoFlow};
use crate::store::users::{NewUser, UserRecord};

const IDENTITY_COLUMNS: &str = "provider, subject, user_id, email, linked_at, last_sign_in_at";

fn identity_from_row(row: &Row) -> LinkedIdentity {
    LinkedIdentity {
        provider: row.get(0),
        subject: row.get(1),
        user_id: row.get(2),
        email: row.get(3),
        linked_at: row.get(4),
        last_sign_in_at: row.get(5),
    }
}

async fn insert_identity(db: &impl Db, identity: &LinkedIdentity) -> Result<(), StoreError> {
    db.execute(
        &format!(
            "INSERT INTO user_identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ),
        &[
            &identity.provider,
            &identity.subject,
            &identity.user_id,
            &identity.email,
            &identity.linked_at,
            &identity.last_sign_in_at,
        ],
    )
    .await
    .map_err(insert_error("linking an identity", "identity"))?;
    Ok(())
}

impl IdentityStore for PostgresStore {
    fn begin_sso_flow(&self, flow: &SsoFlow) -> Result<(), StoreError> {
        self.with_client(async |db| {
            // Expired flows go as new ones come, so abandoned sign-ins do not pile up.
            db.execute(
                "DELETE FROM sso_flows WHERE expires_at < $1",
                &[&(flow.expires_at - 24 * 3600)],
            )
            .await
            .map_err(pg("removing expired sign-in flows"))?;
            db.execute(
                "INSERT INTO sso_flows (state_hash, provider, nonce, verifier_hash, return_to, \
                 link_user, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &flow.state_hash,
                    &flow.provider,
                    &flow.nonce,
                    &flow.verifier_hash,
                    &flow.return_to,
                    &flow.link_user,
                    &flow.expires_at,
                ],
            )
            .await
            .map_err(insert_error("starting a sign-in flow", "sign-in flow"))?;
            Ok(())
        })
    }

    fn take_sso_flow(&self, state_hash: &str, now: i64) -> Result<Option<SsoFlow>, StoreError> {
        // One statement: on any replica, only one caller gets the row.
        let flow = self.with_client(async |db| {
            Ok(db
                .query_opt(
                    "DELETE FROM sso_flows WHERE state_hash = $1 RETURNING state_hash, provider, \
                     nonce, verifier_hash, return_to, link_user, expires_at",
                    &[&state_hash],
                )
                .await
                .map_err(pg("taking a sign-in flow"))?
                .map(|row| SsoFlow {
                    state_hash: row.get(0),
                    provider: row.get(1),
                    nonce: row.get(2),
                    verifier_hash: row.get(3),
                    return_to: row.get(4),
                    link_user: row.get(5),
                    expires_at: row.get(6),
                }))
        })?;
        Ok(flow.filter(|flow| flow.expires_at >= now))
    }

    fn user_for_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.read("reading an identity", async |tx| {
            let user_id: Option<String> = tx
                .query_opt(
                    "SELECT user_id FROM user_identities WHERE provider = $1 AND subject = $2",
                    &[&provider, &subject],
                )
                .await
                .map_err(pg("reading an identity"))?
                .map(|row| row.get(0));
            match user_id {
                Some(id) => user_by_id(tx, &id).await,
                None => Ok(None),
            }
        })
    }

    fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), StoreError> {
        self.with_client(async |db| insert_identity(db, identity).await)
    }

    fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &LinkedIdentity,
    ) -> Result<UserRecord, StoreError> {
        self.write("creating a federated user", async |tx| {
            let record = insert_user(tx, user).await?;
            insert_identity(tx, identity).await?;
            Ok(Finish::Commit(record))
        })
    }

    fn identities_of(&self, user_id: &str) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query(
                    &format!(
                        "SELECT {IDENTITY_COLUMNS} FROM user_identities WHERE user_id = $1 \
                         ORDER BY provider COLLATE \"C\", subject COLLATE \"C\""
                    ),
                    &[&user_id],
                )
                .await
                .map_err(pg("reading identities"))?
                .iter()
                .map(identity_from_row)
                .collect())
        })
    }

    fn unlink_identity(&self, user_id: &str, provider: &str) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let deleted = db
                .execute(
                    "DELETE FROM user_identities WHERE user_id = $1 AND provider = $2",
                    &[&user_id, &provider],
                )
                .await
                .map_err(pg("unlinking an identity"))?;
            Ok(deleted > 0)
        })
    }

    fn record_identity_sign_in(
        &self,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                "UPDATE user_identities SET last_sign_in_at = $3 \
                 WHERE provider = $1 AND subject = $2",
                &[&provider, &subject, &now],
            )
            .await
            .map_err(pg("recording an identity's sign-in"))?;
            Ok(())
        })
    }
}
