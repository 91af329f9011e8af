//! [`AuditStore`] for the SQLite store: the `audit_events` table, append-only (triggers from
//! migration 2 refuse updates and deletes).

use rusqlite::{Row, params};

use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::audit::{AuditEvent, AuditStore};

const AUDIT_COLUMNS: &str = "id, at, event, user_id, email, actor, ip, user_agent, reason, details";

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

impl AuditStore for SqliteStore {
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
