//! [`AuditStore`] for the SQLite store: the `audit_events` table, hash-chained
//! ([`crate::store::audit::chain`]), and `audit_chain`, the one row that records where the
//! chain starts (the pruning anchor) and ends (the head).
//!
//! Triggers keep the table append-only: no UPDATE ever; an INSERT only with a hash and an id
//! above the head; a DELETE only of entries at or below the anchor, which only
//! [`AuditStore::prune_audit`] moves (forward only, never past the head), in the same
//! transaction as the deletion. An append reads the head, inserts, and moves the head in
//! one IMMEDIATE transaction, so appends from several connections or processes never fork
//! the chain.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};

use super::rows::immediate;
use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::audit::chain::{self, ChainState, GENESIS};
use crate::store::audit::{AuditEvent, AuditFilter, AuditRecord, AuditStore};

/// The triggers of the chained log (see the module doc).
const CHAIN_TRIGGERS: &str = r#"
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN OLD.id > coalesce((SELECT anchor_id FROM audit_chain WHERE id = 1), -1)
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
    CREATE TRIGGER audit_events_append BEFORE INSERT ON audit_events
    WHEN NEW.hash IS NULL OR NEW.prev_hash IS NULL
        OR NEW.id <= coalesce((SELECT head_id FROM audit_chain WHERE id = 1), 0)
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only: entries are appended with their hash, after the head');
    END;
    CREATE TRIGGER audit_chain_forward BEFORE UPDATE ON audit_chain
    WHEN NEW.anchor_id < OLD.anchor_id OR NEW.head_id < OLD.head_id
        OR NEW.anchor_id > NEW.head_id OR NEW.id != OLD.id
    BEGIN
        SELECT RAISE(ABORT, 'the audit chain only moves forward');
    END;
    CREATE TRIGGER audit_chain_kept BEFORE DELETE ON audit_chain
    BEGIN
        SELECT RAISE(ABORT, 'the audit chain state is kept');
    END;
"#;

/// Hashes the entries written before the chain existed, oldest first, records the chain's
/// state, and puts the triggers back (part of the chain migration's transaction, [`crate::store::migrations::AUDIT_CHAIN`]).
pub(super) fn chain_existing_entries(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let context = "chaining the audit log";
    let events: Vec<AuditEvent> = {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY id"
            ))
            .map_err(sqlite(context))?;
        stmt.query_map([], event_from_row)
            .map_err(sqlite(context))?
            .collect::<Result<_, _>>()
            .map_err(sqlite(context))?
    };
    // The log was append-only from its first entry, so ids run from 1 without gaps; should
    // the first one be higher, the chain starts just before it.
    let anchor_id = events.first().map_or(0, |first| first.id - 1);
    let mut prev = GENESIS.to_string();
    let mut head_id = anchor_id;
    {
        let mut update = tx
            .prepare("UPDATE audit_events SET prev_hash = ?1, hash = ?2 WHERE id = ?3")
            .map_err(sqlite(context))?;
        for event in &events {
            let hash = chain::entry_hash(&prev, event);
            update
                .execute(params![prev, hash, event.id])
                .map_err(sqlite(context))?;
            prev = hash;
            head_id = event.id;
        }
    }
    tx.execute(
        "INSERT INTO audit_chain (id, anchor_id, anchor_hash, anchor_at, head_id, head_hash) \
         VALUES (1, ?1, ?2, NULL, ?3, ?4)",
        params![anchor_id, GENESIS, head_id, prev],
    )
    .map_err(sqlite(context))?;
    tx.execute_batch(CHAIN_TRIGGERS).map_err(sqlite(context))?;
    Ok(())
}

const EVENT_COLUMNS: &str = "id, at, event, user_id, email, actor, ip, user_agent, reason, details";
const RECORD_COLUMNS: &str =
    "id, at, event, user_id, email, actor, ip, user_agent, reason, details, prev_hash, hash";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
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

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        event: event_from_row(row)?,
        // Never NULL after the chain migration (the insert trigger refuses it); an empty
        // hash would not verify, which is what it should do.
        prev_hash: row
            .get::<_, Option<String>>("prev_hash")?
            .unwrap_or_default(),
        hash: row.get::<_, Option<String>>("hash")?.unwrap_or_default(),
    })
}

fn chain_state(conn: &Connection) -> Result<ChainState, StoreError> {
    conn.query_row(
        "SELECT anchor_id, anchor_hash, anchor_at, head_id, head_hash FROM audit_chain \
         WHERE id = 1",
        [],
        |row| {
            Ok(ChainState {
                anchor_id: row.get(0)?,
                anchor_hash: row.get(1)?,
                anchor_at: row.get(2)?,
                head_id: row.get(3)?,
                head_hash: row.get(4)?,
            })
        },
    )
    .optional()
    .map_err(sqlite("reading the audit chain"))?
    .ok_or(StoreError::NotFound("audit chain state"))
}

/// Appends `events` after the head on `tx` (which must hold the write lock).
fn append_on(tx: &Transaction<'_>, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
    let context = "appending to the audit log";
    let state = chain_state(tx)?;
    let mut id = state.head_id;
    let mut prev = state.head_hash;
    let mut stored = Vec::with_capacity(events.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO audit_events \
                 (id, at, event, user_id, email, actor, ip, user_agent, reason, details, \
                  prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(sqlite(context))?;
        for event in events {
            id += 1;
            let event = AuditEvent {
                id,
                ..event.clone()
            };
            let hash = chain::entry_hash(&prev, &event);
            insert
                .execute(params![
                    event.id,
                    event.at,
                    event.event,
                    event.user_id,
                    event.email,
                    event.actor,
                    event.ip,
                    event.user_agent,
                    event.reason,
                    event.details,
                    prev,
                    hash,
                ])
                .map_err(sqlite(context))?;
            stored.push(AuditRecord {
                event,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            });
        }
    }
    tx.execute(
        "UPDATE audit_chain SET head_id = ?1, head_hash = ?2 WHERE id = 1",
        params![id, prev],
    )
    .map_err(sqlite(context))?;
    Ok(stored)
}

impl AuditStore for SqliteStore {
    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let stored = append_on(&tx, events)?;
        tx.commit().map_err(sqlite("appending to the audit log"))?;
        Ok(stored)
    }

    fn append_audit_at_cursor(
        &self,
        cursor: &str,
        from: Option<i64>,
        to: i64,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        let context = "appending to the audit log at a cursor";
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let at: Option<i64> = tx
            .query_row(
                "SELECT last_id FROM audit_export_cursors WHERE sink = ?1",
                params![cursor],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite(context))?;
        if at != from {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO audit_export_cursors (sink, last_id) VALUES (?1, ?2) \
             ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
            params![cursor, to],
        )
        .map_err(sqlite(context))?;
        let stored = if events.is_empty() {
            Vec::new()
        } else {
            append_on(&tx, events)?
        };
        tx.commit().map_err(sqlite(context))?;
        Ok(Some(stored))
    }

    fn search_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let context = "reading the audit log";
        // Only the conditions asked for, so SQLite can use the matching index.
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_events WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        for (column, value) in [
            ("event", &filter.event),
            ("user_id", &filter.user_id),
            ("actor", &filter.actor),
        ] {
            if let Some(value) = value {
                sql.push_str(&format!(" AND {column} = ?"));
                args.push(Value::Text(value.clone()));
            }
        }
        for (condition, value) in [
            (" AND at >= ?", filter.since),
            (" AND at <= ?", filter.until),
            (" AND id < ?", before),
        ] {
            if let Some(value) = value {
                sql.push_str(condition);
                args.push(Value::Integer(value));
            }
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(Value::Integer(i64::from(limit)));
        let conn = self.lock();
        let mut stmt = conn.prepare(&sql).map_err(sqlite(context))?;
        stmt.query_map(params_from_iter(args), record_from_row)
            .map_err(sqlite(context))?
            .collect::<Result<_, _>>()
            .map_err(sqlite(context))
    }

    fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let context = "reading the audit log";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(sqlite(context))?;
        stmt.query_map(params![after, limit], record_from_row)
            .map_err(sqlite(context))?
            .collect::<Result<_, _>>()
            .map_err(sqlite(context))
    }

    fn audit_chain(&self) -> Result<ChainState, StoreError> {
        chain_state(&self.lock())
    }

    fn walk_audit(
        &self,
        visit: &mut dyn FnMut(&ChainState, AuditRecord) -> bool,
    ) -> Result<ChainState, StoreError> {
        let context = "reading the audit log";
        let mut conn = self.lock();
        // One read transaction: the state and the entries are one snapshot even while a
        // gateway appends.
        let tx = conn.transaction().map_err(sqlite(context))?;
        let state = chain_state(&tx)?;
        {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {RECORD_COLUMNS} FROM audit_events ORDER BY id"
                ))
                .map_err(sqlite(context))?;
            let mut rows = stmt.query([]).map_err(sqlite(context))?;
            while let Some(row) = rows.next().map_err(sqlite(context))? {
                let record = record_from_row(row).map_err(sqlite(context))?;
                if !visit(&state, record) {
                    break;
                }
            }
        }
        tx.commit().map_err(sqlite(context))?;
        Ok(state)
    }

    fn prune_audit(&self, before: i64, now: i64, max: u32) -> Result<u64, StoreError> {
        let context = "pruning the audit log";
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let state = chain_state(&tx)?;
        // The oldest entries, in order, while each is old enough.
        let (through, hash, count) = {
            let mut stmt = tx
                .prepare("SELECT id, at, hash FROM audit_events WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(sqlite(context))?;
            let mut rows = stmt
                .query(params![state.anchor_id, max])
                .map_err(sqlite(context))?;
            let mut last: Option<(i64, String)> = None;
            let mut count = 0u64;
            while let Some(row) = rows.next().map_err(sqlite(context))? {
                let at: i64 = row.get(1).map_err(sqlite(context))?;
                if at >= before {
                    break;
                }
                let id: i64 = row.get(0).map_err(sqlite(context))?;
                let hash: Option<String> = row.get(2).map_err(sqlite(context))?;
                last = Some((id, hash.unwrap_or_default()));
                count += 1;
            }
            match last {
                Some((id, hash)) => (id, hash, count),
                None => return Ok(0),
            }
        };
        // The anchor first: the delete trigger allows only entries at or below it.
        tx.execute(
            "UPDATE audit_chain SET anchor_id = ?1, anchor_hash = ?2, anchor_at = ?3 \
             WHERE id = 1",
            params![through, hash, now],
        )
        .map_err(sqlite(context))?;
        let deleted = tx
            .execute(
                "DELETE FROM audit_events WHERE id > ?1 AND id <= ?2",
                params![state.anchor_id, through],
            )
            .map_err(sqlite(context))?;
        tx.commit().map_err(sqlite(context))?;
        debug_assert_eq!(deleted as u64, count);
        Ok(deleted as u64)
    }

    fn audit_export_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.lock()
            .query_row(
                "SELECT last_id FROM audit_export_cursors WHERE sink = ?1",
                params![sink],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite("reading an audit export cursor"))
    }

    fn set_audit_export_cursor(&self, sink: &str, id: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO audit_export_cursors (sink, last_id) VALUES (?1, ?2) \
                 ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
                params![sink, id],
            )
            .map_err(sqlite("recording an audit export cursor"))?;
        Ok(())
    }
}

/// Undoes the chain migration, for tests that rewind a store to an earlier schema version.
#[cfg(test)]
pub(super) const UNDO_CHAIN_MIGRATION: &str = r#"
    DROP TRIGGER audit_events_no_update;
    DROP TRIGGER audit_events_no_delete;
    DROP TRIGGER audit_events_append;
    DROP TRIGGER audit_chain_forward;
    DROP TRIGGER audit_chain_kept;
    DROP TABLE audit_chain;
    DROP TABLE audit_export_cursors;
    DROP INDEX audit_events_at;
    DROP INDEX audit_events_event;
    DROP INDEX audit_events_user_id;
    DROP INDEX audit_events_actor;
    ALTER TABLE audit_events DROP COLUMN prev_hash;
    ALTER TABLE audit_events DROP COLUMN hash;
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
"#;
