//! Rate limits as the instance applies them: [`SharedLimiter`], the
//! [`RateLimiter`] over buckets every replica shares (`store::buckets`: the PostgreSQL
//! store's table, or Redis when `SLUICE_REDIS_URL` is set), so a per-IP limit of N per
//! minute is N per minute for the cluster.
//!
//! When the shared buckets cannot answer (the server is down, or slower than
//! [`CHECK_TIMEOUT`]), the check is decided by this replica's in-process buckets instead:
//! limits keep holding, per replica, rather than failing open (no limit) or closed (every
//! sign-in refused while Redis restarts). Each such check counts in
//! `sluice_rate_limit_store_failures_total`, and a warning (naming the store, never a key) is
//! logged at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::policy::rate_limit::{Decision, MemoryLimiter, RateLimiter};
use crate::spec::rate::RateRule;
use crate::store::buckets::SharedBuckets;

/// How long a check waits for the shared buckets before deciding in memory.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(500);
/// At most one warning per this many milliseconds.
const WARN_EVERY_MS: i64 = 60_000;

/// Buckets shared by the replicas, with this process's own as the fallback.
pub struct SharedLimiter {
    shared: Arc<dyn SharedBuckets>,
    local: MemoryLimiter,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    /// When the last fallback warning was logged (ms; `i64::MIN`: never).
    warned_at: AtomicI64,
}

impl SharedLimiter {
    pub fn new(
        shared: Arc<dyn SharedBuckets>,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> SharedLimiter {
        SharedLimiter {
            shared,
            local: MemoryLimiter::new(clock.clone()),
            clock,
            metrics,
            warned_at: AtomicI64::new(i64::MIN),
        }
    }

    /// `postgres` or `redis`.
    pub fn kind(&self) -> &'static str {
        self.shared.kind()
    }

    fn fell_back(&self, now_ms: i64, error: &dyn std::fmt::Display) {
        self.metrics.rate_limit_store_failed(self.shared.kind());
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == i64::MIN || now_ms.saturating_sub(last) >= WARN_EVERY_MS)
            && self
                .warned_at
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                store = self.shared.kind(),
                error = %error,
                "Shared rate limits cannot be reached; this replica limits on its own meanwhile"
            );
        }
    }
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("store", &self.shared.kind())
            .finish_non_exhaustive()
    }
}

impl RateLimiter for SharedLimiter {
    fn check<'a>(&'a self, key: &'a str, rule: RateRule) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let now_ms = self.clock.now_millis();
            match tokio::time::timeout(CHECK_TIMEOUT, self.shared.take(key, rule, now_ms)).await {
                Ok(Ok(None)) => Decision::Allow,
                Ok(Ok(Some(retry_after_secs))) => Decision::Deny { retry_after_secs },
                Ok(Err(error)) => {
                    self.fell_back(now_ms, &error);
                    self.local.take(key, rule)
                }
                Err(_) => {
                    self.fell_back(now_ms, &"no answer within 500 ms");
                    self.local.take(key, rule)
                }
            }
        })
    }
}
