//! [`SessionStore`] for the PostgreSQL store: the `sessions` table, and the session steps
//! the account changes of the other aggregates run inside their transactions.
//!
//! A rotation ends the caller's own session first and requires that it still exists, so it
//! never re-opens a session ended meanwhile (on this replica or another).

use tokio_postgres::Row;

use super::rows::{Db, insert_error};
use super::{PostgresStore, pg};
use crate::store::StoreError;
use crate::store::sessions::{SessionChange, SessionRecord, SessionStore};

const SESSION_COLUMNS: &str =
    "token_hash, public_id, user_id, created_at, last_seen_at, authenticated_at, ip, user_agent";

fn session_from_row(row: &Row) -> SessionRecord {
    SessionRecord {
        token_hash: row.get("token_hash"),
        public_id: row.get("public_id"),
        user_id: row.get("user_id"),
        created_at: row.get("created_at"),
        last_seen_at: row.get("last_seen_at"),
        authenticated_at: row.get("authenticated_at"),
        ip: row.get("ip"),
        user_agent: row.get("user_agent"),
    }
}

pub(super) async fn insert_session(
    db: &impl Db,
    session: &SessionRecord,
) -> Result<(), StoreError> {
    db.execute(
        &format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ),
        &[
            &session.token_hash,
            &session.public_id,
            &session.user_id,
            &session.created_at,
            &session.last_seen_at,
            &session.authenticated_at,
            &session.ip,
            &session.user_agent,
        ],
    )
    .await
    .map_err(insert_error("creating a session", "session"))?;
    Ok(())
}

pub(super) async fn delete_session(db: &impl Db, token_hash: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
        .await
        .map_err(pg("deleting a session"))?;
    Ok(())
}

pub(super) async fn delete_user_sessions(db: &impl Db, user_id: &str) -> Result<u64, StoreError> {
    db.execute("DELETE FROM sessions WHERE user_id = $1", &[&user_id])
        .await
        .map_err(pg("deleting sessions"))
}

/// Fails with [`StoreError::NotFound`] when the user has no such session (any more).
pub(super) async fn set_session_authenticated(
    db: &impl Db,
    user_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let changed = db
        .execute(
            "UPDATE sessions SET authenticated_at = $3 WHERE token_hash = $1 AND user_id = $2",
            &[&token_hash, &user_id, &now],
        )
        .await
        .map_err(pg("re-authenticating a session"))?;
    if changed == 0 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(())
}

/// Ends the caller's own session before it is replaced; [`StoreError::NotFound`] (and the
/// transaction rolls back) when it no longer exists.
pub(super) async fn end_own_session(
    db: &impl Db,
    user_id: &str,
    token_hash: &str,
) -> Result<(), StoreError> {
    let deleted = db
        .execute(
            "DELETE FROM sessions WHERE token_hash = $1 AND user_id = $2",
            &[&token_hash, &user_id],
        )
        .await
        .map_err(pg("deleting a session"))?;
    if deleted != 1 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(())
}

pub(super) async fn change_sessions(
    db: &impl Db,
    user_id: &str,
    change: SessionChange<'_>,
) -> Result<(), StoreError> {
    match change {
        SessionChange::Keep => Ok(()),
        SessionChange::EndAll => delete_user_sessions(db, user_id).await.map(drop),
        SessionChange::Rotate { old, new } => {
            end_own_session(db, user_id, old).await?;
            insert_session(db, new).await
        }
    }
}

impl SessionStore for PostgresStore {
    fn session_by_hash(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query_opt(
                    &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1"),
                    &[&token_hash],
                )
                .await
                .map_err(pg("reading a session"))?
                .as_ref()
                .map(session_from_row))
        })
    }

    /// A session deleted meanwhile (logout in another tab) is not an error here.
    fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                "UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1",
                &[&token_hash, &now],
            )
            .await
            .map_err(pg("touching a session"))?;
            Ok(())
        })
    }

    fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.with_client(async |db| delete_session(db, token_hash).await)
    }

    fn delete_session_by_public_id(
        &self,
        user_id: &str,
        public_id: &str,
    ) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let deleted = db
                .execute(
                    "DELETE FROM sessions WHERE user_id = $1 AND public_id = $2",
                    &[&user_id, &public_id],
                )
                .await
                .map_err(pg("deleting a session"))?;
            Ok(deleted > 0)
        })
    }

    fn delete_user_sessions(&self, user_id: &str) -> Result<u64, StoreError> {
        self.with_client(async |db| delete_user_sessions(db, user_id).await)
    }

    fn list_user_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query(
                    &format!(
                        "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 \
                         ORDER BY created_at DESC, public_id COLLATE \"C\""
                    ),
                    &[&user_id],
                )
                .await
                .map_err(pg("listing sessions"))?
                .iter()
                .map(session_from_row)
                .collect())
        })
    }

    fn purge_sessions(&self, idle_before: i64, created_before: i64) -> Result<u64, StoreError> {
        self.with_client(async |db| {
            db.execute(
                "DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2",
                &[&idle_before, &created_before],
            )
            .await
            .map_err(pg("purging sessions"))
        })
    }

    fn auth_changes(&self) -> Option<crate::store::sessions::AuthChanges> {
        Some(self.auth_listener())
    }
}
