//! Token-bucket rate limiting: the [`RateLimiter`] interface and the in-process
//! [`MemoryLimiter`].
//!
//! Owns the decision "may this key act now, and if not, for how long must it wait". The
//! caller chooses the key (`login:ip:203.0.113.9`, `reset:email:<hash>`) and the rule, and
//! turns a [`Decision::Deny`] into `429 Too Many Requests` with `Retry-After`.
//!
//! The interface lets several replicas share buckets in an external store (the `limits` module
//! over `store::buckets`: PostgreSQL or Redis), so a check is a future; the in-process
//! limiter's is ready at once. Keys must be namespaced per rule by the caller: one key
//! checked under two different rules shares one bucket.
//!
//! Invariants:
//! - Time comes only from the injected [`Clock`](crate::clock::Clock); nothing sleeps.
//! - Memory is bounded: see [`MemoryLimiter`].
//! - This module never logs; keys may contain addresses or account names.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use futures_util::future::BoxFuture;

use crate::clock::SharedClock;
use crate::spec::rate::RateRule;

/// Buckets kept before [`MemoryLimiter`] prunes (about 100 bytes each plus the key, so some
/// 15 MB at worst).
const MAX_BUCKETS: usize = 100_000;

/// Slack for floating-point rounding in token counts and waits, far below one token or one
/// second, so that a client that waits exactly the advertised `Retry-After` is allowed.
const EPSILON: f64 = 1e-9;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; one token will be available in `retry_after_secs` (at least 1, rounded up).
    /// `u64::MAX` when the rule never refills.
    Deny {
        retry_after_secs: u64,
    },
}

/// Rate limiting keyed by a caller-chosen string. Implementations must be safe to share
/// between request handlers.
pub trait RateLimiter: Send + Sync {
    /// Takes one token from `key`'s bucket if one is available; a key not seen before starts
    /// with a full bucket.
    fn check<'a>(&'a self, key: &'a str, rule: RateRule) -> BoxFuture<'a, Decision>;
}

/// One key's bucket. The rule is remembered so that pruning can tell when it is full again.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: i64,
    burst: u32,
    per_second: f64,
}

impl Bucket {
    fn full(rule: RateRule, now_ms: i64) -> Bucket {
        Bucket {
            tokens: f64::from(rule.burst),
            updated_ms: now_ms,
            burst: rule.burst,
            per_second: rule.rate(),
        }
    }

    /// Tokens there would be at `now_ms` under the remembered rule.
    fn projected(&self, now_ms: i64) -> f64 {
        // A clock that steps backwards adds nothing (and never removes tokens).
        let elapsed_ms = now_ms.saturating_sub(self.updated_ms).max(0);
        let refilled = self.tokens + elapsed_ms as f64 / 1000.0 * self.per_second;
        refilled.min(f64::from(self.burst))
    }

    /// How full the bucket would be at `now_ms`, from 0 to 1. A bucket with no capacity is
    /// as good as a new one, so it counts as full.
    fn fill(&self, now_ms: i64) -> f64 {
        if self.burst == 0 {
            1.0
        } else {
            self.projected(now_ms) / f64::from(self.burst)
        }
    }

    fn take(&mut self, rule: RateRule, now_ms: i64) -> Decision {
        // Refill under the rule the bucket was filling at, then adopt the current rule; the
        // cap at the new burst applies at once.
        self.tokens = self.projected(now_ms).min(f64::from(rule.burst));
        self.updated_ms = self.updated_ms.max(now_ms);
        self.burst = rule.burst;
        self.per_second = rule.rate();
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Decision::Allow;
        }
        Decision::Deny {
            retry_after_secs: rule.retry_after_secs(self.tokens),
        }
    }
}

/// Token buckets in a `Mutex<HashMap>`, for one process.
///
/// Memory is bounded. When a key not seen before arrives and the map holds its maximum
/// (100,000 buckets), the limiter first drops every bucket that has refilled completely:
/// a full bucket behaves exactly like a missing one, so this changes no decision. If more
/// than three quarters of the maximum remain (many keys limited at once, as in a flood of
/// distinct keys), it then drops the fullest buckets until three quarters remain. That resets
/// those keys early, but it keeps the nearly empty buckets, which are the ones actually
/// holding someone back, and it happens at most once per 25,000 new keys, so the cost of a
/// prune (a sort of the map) is spread thinly.
pub struct MemoryLimiter {
    clock: SharedClock,
    buckets: Mutex<HashMap<String, Bucket>>,
    max_buckets: usize,
}

impl MemoryLimiter {
    pub fn new(clock: SharedClock) -> MemoryLimiter {
        MemoryLimiter::with_max_buckets(clock, MAX_BUCKETS)
    }

    /// A limiter with a smaller bound, so tests can reach it.
    fn with_max_buckets(clock: SharedClock, max_buckets: usize) -> MemoryLimiter {
        MemoryLimiter {
            clock,
            buckets: Mutex::new(HashMap::new()),
            max_buckets: max_buckets.max(1),
        }
    }

    /// Makes room for one more bucket, as described on [`MemoryLimiter`].
    fn prune(buckets: &mut HashMap<String, Bucket>, now_ms: i64, max_buckets: usize) {
        buckets.retain(|_, bucket| bucket.fill(now_ms) < 1.0 - EPSILON);
        let low_water = max_buckets - max_buckets / 4;
        let low_water = low_water.min(max_buckets - 1);
        if buckets.len() <= low_water {
            return;
        }
        let mut by_fill: Vec<(f64, &String)> = buckets
            .iter()
            .map(|(key, bucket)| (bucket.fill(now_ms), key))
            .collect();
        // Fullest first.
        by_fill.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let excess = by_fill.len() - low_water;
        let evicted: Vec<String> = by_fill
            .into_iter()
            .take(excess)
            .map(|(_, key)| key.clone())
            .collect();
        for key in evicted {
            buckets.remove(&key);
        }
    }
}

impl fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only the count: keys may name people or addresses.
        let buckets = self
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemoryLimiter")
            .field("buckets", &buckets)
            .field("max_buckets", &self.max_buckets)
            .finish_non_exhaustive()
    }
}

impl RateLimiter for MemoryLimiter {
    fn check<'a>(&'a self, key: &'a str, rule: RateRule) -> BoxFuture<'a, Decision> {
        Box::pin(std::future::ready(self.take(key, rule)))
    }
}

impl MemoryLimiter {
    /// [`RateLimiter::check`] without the future: the answer is known at once.
    pub fn take(&self, key: &str, rule: RateRule) -> Decision {
        let now_ms = self.clock.now_millis();
        // A panic elsewhere while holding the lock leaves the buckets consistent (every
        // update is a plain field write), so a poisoned lock is used as is.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(key) {
            return bucket.take(rule, now_ms);
        }
        if buckets.len() >= self.max_buckets {
            MemoryLimiter::prune(&mut buckets, now_ms, self.max_buckets);
        }
        let mut bucket = Bucket::full(rule, now_ms);
        let decision = bucket.take(rule, now_ms);
        buckets.insert(key.to_owned(), bucket);
        decision
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn limiter(max_buckets: usize) -> (ManualClock, MemoryLimiter) {
        let clock = ManualClock::new();
        let shared: SharedClock = Arc::new(clock.clone());
        (clock, MemoryLimiter::with_max_buckets(shared, max_buckets))
    }

    fn deny(secs: u64) -> Decision {
        Decision::Deny {
            retry_after_secs: secs,
        }
    }

    fn bucket_count(limiter: &MemoryLimiter) -> usize {
        limiter.buckets.lock().unwrap().len()
    }

    #[test]
    fn burst_is_allowed_then_denied_with_retry_after() {
        let (_clock, limiter) = limiter(MAX_BUCKETS);
        let rule = RateRule::per_minute(10);
        for i in 0..10 {
            assert_eq!(limiter.take("k", rule), Decision::Allow, "request {i}");
        }
        // One token every 6 seconds.
        assert_eq!(limiter.take("k", rule), deny(6));
        assert_eq!(limiter.take("k", rule), deny(6));
    }

    #[test]
    fn tokens_refill_with_time_up_to_the_burst() {
        let (clock, limiter) = limiter(MAX_BUCKETS);
        let rule = RateRule::per_minute(10);
        for _ in 0..10 {
            limiter.take("k", rule);
        }
        clock.advance_secs(4);
        assert_eq!(limiter.take("k", rule), deny(2));
        clock.advance_millis(1_500);
        assert_eq!(
            limiter.take("k", rule),
            deny(1),
            "0.5 s left rounds up to 1"
        );
        clock.advance_millis(500);
        assert_eq!(limiter.take("k", rule), Decision::Allow);
        assert_eq!(limiter.take("k", rule), deny(6));

        // A long wait refills to the burst and no further.
        clock.advance_secs(3_600);
        for i in 0..10 {
            assert_eq!(limiter.take("k", rule), Decision::Allow, "request {i}");
        }
        assert_eq!(limiter.take("k", rule), deny(6));
    }

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one_second() {
        let cases = [
            // (rule, expected retry after the burst is spent)
            (
                RateRule {
                    burst: 1,
                    per_second: 0.4,
                },
                3,
            ),
            (
                RateRule {
                    burst: 1,
                    per_second: 10.0,
                },
                1,
            ),
            (
                RateRule {
                    burst: 3,
                    per_second: 1.0 / 3600.0,
                },
                3_600,
            ),
            (RateRule::per_minute(1), 60),
            (RateRule::per_minute(7), 9),
            (
                RateRule {
                    burst: 2,
                    per_second: 0.0,
                },
                u64::MAX,
            ),
            (
                RateRule {
                    burst: 2,
                    per_second: -1.0,
                },
                u64::MAX,
            ),
            (
                RateRule {
                    burst: 2,
                    per_second: f64::NAN,
                },
                u64::MAX,
            ),
            (
                RateRule {
                    burst: 2,
                    per_second: f64::INFINITY,
                },
                u64::MAX,
            ),
            (
                RateRule {
                    burst: 1,
                    per_second: 1e-30,
                },
                u64::MAX,
            ),
        ];
        for (rule, expected) in cases {
            let (_clock, limiter) = limiter(MAX_BUCKETS);
            for _ in 0..rule.burst {
                assert_eq!(limiter.take("k", rule), Decision::Allow, "{rule:?}");
            }
            assert_eq!(limiter.take("k", rule), deny(expected), "{rule:?}");
        }
    }

    #[test]
    fn waiting_exactly_retry_after_is_enough() {
        for n in [1, 3, 7, 10, 13, 60, 100, 1_000] {
            let (clock, limiter) = limiter(MAX_BUCKETS);
            let rule = RateRule::per_minute(n);
            for _ in 0..n {
                limiter.take("k", rule);
            }
            let Decision::Deny { retry_after_secs } = limiter.take("k", rule) else {
                panic!("per_minute({n}) allowed past its burst");
            };
            clock.advance_secs(i64::try_from(retry_after_secs).unwrap());
            assert_eq!(limiter.take("k", rule), Decision::Allow, "per_minute({n})");
        }
    }

    #[test]
    fn a_zero_burst_denies_everything() {
        let (_clock, limiter) = limiter(MAX_BUCKETS);
        let rule = RateRule {
            burst: 0,
            per_second: 1.0,
        };
        assert_eq!(limiter.take("k", rule), deny(u64::MAX));
    }

    #[test]
    fn keys_are_independent() {
        let (_clock, limiter) = limiter(MAX_BUCKETS);
        let rule = RateRule::per_minute(2);
        assert_eq!(limiter.take("login:ip:a", rule), Decision::Allow);
        assert_eq!(limiter.take("login:ip:a", rule), Decision::Allow);
        assert_eq!(limiter.take("login:ip:a", rule), deny(30));
        assert_eq!(limiter.take("login:ip:b", rule), Decision::Allow);
        assert_eq!(limiter.take("login:ip:b", rule), Decision::Allow);
        assert_eq!(limiter.take("login:ip:b", rule), deny(30));
    }

    #[test]
    fn a_clock_stepping_back_adds_no_tokens() {
        let (clock, limiter) = limiter(MAX_BUCKETS);
        let rule = RateRule::per_minute(1);
        assert_eq!(limiter.take("k", rule), Decision::Allow);
        clock.advance_secs(-600);
        assert_eq!(limiter.take("k", rule), deny(60));
        // Time before the last update does not count once the clock comes back.
        clock.advance_secs(630);
        assert_eq!(limiter.take("k", rule), deny(30));
    }

    #[test]
    fn pruning_drops_only_full_buckets_when_it_can() {
        let (clock, limiter) = limiter(4);
        let rule = RateRule::per_minute(2);
        // "busy" is spent; "a" and "b" used one of two tokens.
        limiter.take("busy", rule);
        assert_eq!(limiter.take("busy", rule), Decision::Allow);
        limiter.take("a", rule);
        limiter.take("b", rule);
        limiter.take("c", rule);
        assert_eq!(bucket_count(&limiter), 4);

        // 30 s later "a", "b" and "c" are full again; "busy" has one token of two.
        clock.advance_secs(30);
        limiter.take("d", rule);
        assert_eq!(bucket_count(&limiter), 2, "full buckets are dropped");
        assert_eq!(limiter.take("busy", rule), Decision::Allow);
        assert_eq!(limiter.take("busy", rule), deny(30), "busy kept its state");
        assert_eq!(limiter.take("d", rule), Decision::Allow);
        assert_eq!(limiter.take("d", rule), deny(30), "d kept its state");
        // A pruned key starts again with a full bucket, as it would have anyway.
        assert_eq!(limiter.take("a", rule), Decision::Allow);
        assert_eq!(limiter.take("a", rule), Decision::Allow);
    }

    #[test]
    fn a_flood_of_new_keys_evicts_the_fullest_and_keeps_the_limited() {
        let (_clock, limiter) = limiter(8);
        let rule = RateRule::per_minute(5);
        // The victim is limited: its bucket is empty.
        for _ in 0..5 {
            limiter.take("victim", rule);
        }
        assert_eq!(limiter.take("victim", rule), deny(12));
        // Distinct keys, each used once (4 of 5 tokens left), never full again in time.
        for i in 0..1_000 {
            assert_eq!(limiter.take(&format!("flood-{i}"), rule), Decision::Allow);
            assert!(bucket_count(&limiter) <= 8);
        }
        assert_eq!(
            limiter.take("victim", rule),
            deny(12),
            "the limited key is kept"
        );
    }

    #[tokio::test]
    async fn the_trait_answers_as_take_does() {
        let (_clock, limiter) = limiter(MAX_BUCKETS);
        let limiter: Arc<dyn RateLimiter> = Arc::new(limiter);
        let rule = RateRule::per_minute(2);
        assert_eq!(limiter.check("k", rule).await, Decision::Allow);
        assert_eq!(limiter.check("k", rule).await, Decision::Allow);
        assert_eq!(limiter.check("k", rule).await, deny(30));
    }

    #[test]
    fn the_limiter_is_shareable_across_threads() {
        let (_clock, limiter) = limiter(MAX_BUCKETS);
        let limiter = Arc::new(limiter);
        let rule = RateRule::per_minute(100);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|_| limiter.take("shared", rule) == Decision::Allow)
                        .count()
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 100);
    }
}
