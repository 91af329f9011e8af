//! [`SessionStore`] for the SQLite store: the `sessions` table, and the session steps the
//! account changes of the other aggregates run inside their transactions.
//!
//! A rotation ends the caller's own session first and requires that it still exists, so it
//! never re-opens a session ended meanwhile.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::insert_error;
use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::sessions::{SessionChange, SessionRecord, SessionStore};

const SESSION_COLUMNS: &str =
    "token_hash, public_id, user_id, created_at, last_seen_at, authenticated_at, ip, user_agent";

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

pub(super) fn insert_session(conn: &Connection, session: &SessionRecord) -> Result<(), StoreError> {
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

pub(super) fn delete_session(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
        .map_err(sqlite("deleting a session"))?;
    Ok(())
}

pub(super) fn delete_user_sessions(conn: &Connection, user_id: &str) -> Result<u64, StoreError> {
    let deleted = conn
        .execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])
        .map_err(sqlite("deleting sessions"))?;
    Ok(deleted as u64)
}

/// Fails with [`StoreError::NotFound`] when the user has no such session (any more), so a
/// re-authentication is never reported as done for a session that no longer exists.
pub(super) fn set_session_authenticated(
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
pub(super) fn end_own_session(
    conn: &Connection,
    user_id: &str,
    token_hash: &str,
) -> Result<(), StoreError> {
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

pub(super) fn change_sessions(
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

impl SessionStore for SqliteStore {
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
}
