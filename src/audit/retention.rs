//! Retention (`SLUICE_AUDIT_RETENTION_DAYS`): deletes entries older than the setting, at
//! start and then every hour, through the store's one pruning path
//! ([`AuditStore::prune_audit`]), which moves the chain's anchor to the last entry deleted:
//! what remains still verifies, starting from that anchor. Deletes the oldest first, in
//! transactions of at most [`CHUNK`] entries, and stops at the first entry that is young
//! enough, so the log stays a contiguous tail of the chain.

use std::sync::Arc;
use std::time::Duration;

use super::AuditError;
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::audit::AuditStore;

/// Most entries deleted in one transaction.
pub const CHUNK: u32 = 10_000;

/// How often retention runs.
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes every hour, until aborted.
pub async fn run(store: Arc<dyn AuditStore>, clock: SharedClock, metrics: Arc<Metrics>, days: u32) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match prune(store.clone(), &clock, days).await {
            Ok(0) => {}
            Ok(pruned) => {
                metrics.audit.pruned(pruned);
                tracing::info!(
                    pruned,
                    days,
                    "Audit entries older than the retention pruned"
                );
            }
            Err(error) => tracing::warn!(error = %error, "Pruning the audit log failed"),
        }
    }
}

/// Deletes the entries older than `days`; returns how many.
pub async fn prune(
    store: Arc<dyn AuditStore>,
    clock: &SharedClock,
    days: u32,
) -> Result<u64, AuditError> {
    let now = clock.now();
    let before = now - i64::from(days) * 86_400;
    let mut total = 0;
    loop {
        let store = store.clone();
        let pruned =
            tokio::task::spawn_blocking(move || store.prune_audit(before, now, CHUNK)).await??;
        total += pruned;
        if pruned < u64::from(CHUNK) {
            return Ok(total);
        }
    }
}
