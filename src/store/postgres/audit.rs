//! [`AuditStore`] for the PostgreSQL store: the `audit_events` table, hash-chained
//! ([`crate::store::audit::chain`]), and `audit_chain`, the one row that records where the
//! chain starts (the pruning anchor) and ends (the head).
//!
//! Triggers (migration [`AUDIT_CHAIN`](crate::store::migrations::AUDIT_CHAIN)) keep the
//! table append-only, as on SQLite: no UPDATE or TRUNCATE ever; an INSERT only with a hash
//! and an id above the head; a DELETE only of entries at or below the anchor, which only
//! [`AuditStore::prune_audit`] moves (forward only), in the same transaction as the
//! deletion. An append locks the chain's row (`SELECT ... FOR UPDATE`) before it reads the
//! head, so appends from any number of replicas queue on that row and never fork the chain.
//! A role that owns the tables can still drop the triggers: the chain (and a copy of its
//! head kept elsewhere) is what shows a rewrite, as on SQLite.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::rows::Db;
use super::{Finish, PostgresStore, pg};
use crate::store::StoreError;
use crate::store::audit::chain::{self, ChainState};
use crate::store::audit::{AuditEvent, AuditFilter, AuditRecord, AuditStore};

const RECORD_COLUMNS: &str =
    "id, at, event, user_id, email, actor, ip, user_agent, reason, details, prev_hash, hash";

fn record_from_row(row: &Row) -> AuditRecord {
    AuditRecord {
        event: AuditEvent {
            id: row.get("id"),
            at: row.get("at"),
            event: row.get("event"),
            user_id: row.get("user_id"),
            email: row.get("email"),
            actor: row.get("actor"),
            ip: row.get("ip"),
            user_agent: row.get("user_agent"),
            reason: row.get("reason"),
            details: row.get("details"),
        },
        // Never NULL (the insert trigger refuses it); an empty hash would not verify.
        prev_hash: row
            .get::<_, Option<String>>("prev_hash")
            .unwrap_or_default(),
        hash: row.get::<_, Option<String>>("hash").unwrap_or_default(),
    }
}

/// The chain's state; with `lock`, its row stays locked until the transaction ends.
async fn chain_state(db: &impl Db, lock: bool) -> Result<ChainState, StoreError> {
    let sql = if lock {
        "SELECT anchor_id, anchor_hash, anchor_at, head_id, head_hash FROM audit_chain \
         WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT anchor_id, anchor_hash, anchor_at, head_id, head_hash FROM audit_chain \
         WHERE id = 1"
    };
    db.query_opt(sql, &[])
        .await
        .map_err(pg("reading the audit chain"))?
        .map(|row| ChainState {
            anchor_id: row.get(0),
            anchor_hash: row.get(1),
            anchor_at: row.get(2),
            head_id: row.get(3),
            head_hash: row.get(4),
        })
        .ok_or(StoreError::NotFound("audit chain state"))
}

/// Appends `events` in `tx`, chained after the head (whose row it locks); none: nothing.
async fn append_on(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[AuditEvent],
) -> Result<Vec<AuditRecord>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let context = "appending to the audit log";
    let state = chain_state(tx, true).await?;
    let mut id = state.head_id;
    let mut prev = state.head_hash;
    let mut stored = Vec::with_capacity(events.len());
    let insert = tx
        .prepare(
            "INSERT INTO audit_events \
                 (id, at, event, user_id, email, actor, ip, user_agent, reason, details, \
                  prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .await
        .map_err(pg(context))?;
    for event in events {
        id += 1;
        let event = AuditEvent {
            id,
            ..event.clone()
        };
        let hash = chain::entry_hash(&prev, &event);
        tx.execute(
            &insert,
            &[
                &event.id,
                &event.at,
                &event.event,
                &event.user_id,
                &event.email,
                &event.actor,
                &event.ip,
                &event.user_agent,
                &event.reason,
                &event.details,
                &prev,
                &hash,
            ],
        )
        .await
        .map_err(pg(context))?;
        stored.push(AuditRecord {
            event,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    tx.execute(
        "UPDATE audit_chain SET head_id = $1, head_hash = $2 WHERE id = 1",
        &[&id, &prev],
    )
    .await
    .map_err(pg(context))?;
    Ok(stored)
}

impl AuditStore for PostgresStore {
    fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditRecord>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write("appending to the audit log", async |tx| {
            Ok(Finish::Commit(append_on(tx, events).await?))
        })
    }

    fn append_audit_at_cursor(
        &self,
        cursor: &str,
        from: Option<i64>,
        to: i64,
        events: &[AuditEvent],
    ) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        let context = "appending to the audit log at a cursor";
        self.write(context, async |tx| {
            // The cursor row is claimed first: a second replica with the same `from` waits
            // on the row (or on the key, for a first insert) and then finds it moved.
            let moved = match from {
                None => tx
                    .execute(
                        "INSERT INTO audit_export_cursors (sink, last_id) VALUES ($1, $2) \
                         ON CONFLICT (sink) DO NOTHING",
                        &[&cursor, &to],
                    )
                    .await
                    .map_err(pg(context))?,
                Some(from) => tx
                    .execute(
                        "UPDATE audit_export_cursors SET last_id = $3 \
                         WHERE sink = $1 AND last_id = $2",
                        &[&cursor, &from, &to],
                    )
                    .await
                    .map_err(pg(context))?,
            };
            if moved != 1 {
                return Ok(Finish::Rollback(None));
            }
            Ok(Finish::Commit(Some(append_on(tx, events).await?)))
        })
    }

    fn search_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        // Only the conditions asked for, so PostgreSQL can use the matching index.
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_events WHERE TRUE");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        for (column, value) in [
            ("event", &filter.event),
            ("user_id", &filter.user_id),
            ("actor", &filter.actor),
        ] {
            if let Some(value) = value {
                args.push(Box::new(value.clone()));
                sql.push_str(&format!(" AND {column} = ${}", args.len()));
            }
        }
        for (condition, value) in [
            (" AND at >= $", filter.since),
            (" AND at <= $", filter.until),
            (" AND id < $", before),
        ] {
            if let Some(value) = value {
                args.push(Box::new(value));
                sql.push_str(&format!("{condition}{}", args.len()));
            }
        }
        args.push(Box::new(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|arg| arg.as_ref() as &(dyn ToSql + Sync))
            .collect();
        self.with_client(async |db| {
            Ok(db
                .query(&sql, &params)
                .await
                .map_err(pg("reading the audit log"))?
                .iter()
                .map(record_from_row)
                .collect())
        })
    }

    fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query(
                    &format!(
                        "SELECT {RECORD_COLUMNS} FROM audit_events WHERE id > $1 \
                         ORDER BY id LIMIT $2"
                    ),
                    &[&after, &i64::from(limit)],
                )
                .await
                .map_err(pg("reading the audit log"))?
                .iter()
                .map(record_from_row)
                .collect())
        })
    }

    fn audit_chain(&self) -> Result<ChainState, StoreError> {
        self.with_client(async |db| chain_state(db, false).await)
    }

    fn walk_audit(
        &self,
        visit: &mut dyn FnMut(&ChainState, AuditRecord) -> bool,
    ) -> Result<ChainState, StoreError> {
        let context = "reading the audit log";
        // One REPEATABLE READ transaction: the state and the entries are one snapshot while
        // replicas append. Read in pages, so a long log is never held in memory at once.
        self.read(context, async |tx| {
            let state = chain_state(tx, false).await?;
            let mut after = i64::MIN;
            loop {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT {RECORD_COLUMNS} FROM audit_events WHERE id > $1 \
                             ORDER BY id LIMIT 1000"
                        ),
                        &[&after],
                    )
                    .await
                    .map_err(pg(context))?;
                if rows.is_empty() {
                    return Ok(state);
                }
                for row in &rows {
                    let record = record_from_row(row);
                    after = record.event.id;
                    if !visit(&state, record) {
                        return Ok(state);
                    }
                }
            }
        })
    }

    fn prune_audit(&self, before: i64, now: i64, max: u32) -> Result<u64, StoreError> {
        let context = "pruning the audit log";
        self.write(context, async |tx| {
            let state = chain_state(tx, true).await?;
            // The oldest entries, in order, while each is old enough.
            let rows = tx
                .query(
                    "SELECT id, at, hash FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&state.anchor_id, &i64::from(max)],
                )
                .await
                .map_err(pg(context))?;
            let mut last: Option<(i64, String)> = None;
            for row in &rows {
                if row.get::<_, i64>(1) >= before {
                    break;
                }
                last = Some((
                    row.get(0),
                    row.get::<_, Option<String>>(2).unwrap_or_default(),
                ));
            }
            let Some((through, hash)) = last else {
                return Ok(Finish::Commit(0));
            };
            // The anchor first: the delete trigger allows only entries at or below it.
            tx.execute(
                "UPDATE audit_chain SET anchor_id = $1, anchor_hash = $2, anchor_at = $3 \
                 WHERE id = 1",
                &[&through, &hash, &now],
            )
            .await
            .map_err(pg(context))?;
            let deleted = tx
                .execute(
                    "DELETE FROM audit_events WHERE id > $1 AND id <= $2",
                    &[&state.anchor_id, &through],
                )
                .await
                .map_err(pg(context))?;
            Ok(Finish::Commit(deleted))
        })
    }

    fn audit_export_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query_opt(
                    "SELECT last_id FROM audit_export_cursors WHERE sink = $1",
                    &[&sink],
                )
                .await
                .map_err(pg("reading an audit export cursor"))?
                .map(|row| row.get(0)))
        })
    }

    fn set_audit_export_cursor(&self, sink: &str, id: i64) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                "INSERT INTO audit_export_cursors (sink, last_id) VALUES ($1, $2) \
                 ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
                &[&sink, &id],
            )
            .await
            .map_err(pg("recording an audit export cursor"))?;
            Ok(())
        })
    }
}
