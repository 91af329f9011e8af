//! Shared rate-limit buckets: one token bucket per key, kept where every replica sees it, so
//! that a limit of N per minute is N per minute for the cluster, not per replica.
//!
//! [`SharedBuckets`] is what the `limits` module takes tokens from. Two kinds: the PostgreSQL
//! metadata store's (`rate_buckets`, an UNLOGGED table, and the `sluice_take_token`
//! function; one round trip per check) and Redis's ([`redis::RedisBuckets`], a Lua script;
//! `SLUICE_REDIS_URL`). Both run the same bucket as the in-process limiter: up to `burst`
//! tokens, refilled continuously at the rule's rate, the bucket's state and the refill
//! computed on the server in one atomic step, so two replicas racing for the last token
//! never both get it. Time is the caller's (`now_ms` from the injected clock); a replica
//! whose clock is behind the bucket's last update adds no tokens (never removes any).
//!
//! A bucket's row or key expires once it would be full again (a full bucket behaves exactly
//! like a missing one), so the shared state stays as small as the set of keys actually
//! held back. Keys may name addresses or accounts: this module never logs them.

pub mod redis;

use futures_util::future::BoxFuture;

use super::StoreError;
use crate::spec::rate::RateRule;

/// Token buckets every replica shares.
pub trait SharedBuckets: Send + Sync {
    /// Takes one token from `key`'s bucket under `rule` at `now_ms` (a key not seen before
    /// starts full): `Ok(None)` when it was taken, `Ok(Some(secs))` when the bucket is empty
    /// and one token will be there in `secs` (at least 1; `u64::MAX` for a rule that never
    /// refills).
    fn take<'a>(
        &'a self,
        key: &'a str,
        rule: RateRule,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>>;

    /// `postgres` or `redis`, for logs and metrics.
    fn kind(&self) -> &'static str;
}

/// Whether a store can share rate-limit buckets between replicas: the PostgreSQL store can,
/// the SQLite store (one node) keeps them in memory and answers `None`.
pub trait BucketStore {
    fn shared_buckets(&self) -> Option<std::sync::Arc<dyn SharedBuckets>> {
        None
    }
}

/// A server's answer as a [`SharedBuckets::take`] result: `allowed`, or the tokens left
/// (less than one) from which the wait follows.
pub(crate) fn outcome(rule: RateRule, allowed: bool, tokens: f64) -> Option<u64> {
    if allowed {
        None
    } else {
        Some(rule.retry_after_secs(tokens))
    }
}
