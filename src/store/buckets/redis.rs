//! Shared rate-limit buckets in Redis (`SLUICE_REDIS_URL`): one hash per held-back key
//! (`sluice:rl:<key>`, fields `t` tokens and `u` last update in ms), taken by a Lua script
//! that refills, takes and sets the key's expiry in one atomic step (Redis runs a script
//! alone), so replicas racing for the last token never both get it. The key expires once the
//! bucket would be full again.
//!
//! The connection is redis-rs's `ConnectionManager`: one multiplexed connection (concurrent
//! checks are pipelined on it), opened at the first check and re-opened in the background
//! when lost; a check waits at most [`RESPONSE_TIMEOUT`] and then fails, and the limiter
//! falls back to its in-process buckets (the `limits` module). `rediss://` is TLS (rustls on
//! aws-lc-rs, the web PKI roots and the system's). The URL may carry a password: it never
//! appears in an error or a log line ([`RedisBuckets::describe`] drops it). Never logs.

use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{SharedBuckets, outcome};
use crate::spec::rate::RateRule;
use crate::store::StoreError;

/// How long a check waits for Redis before the limiter falls back to memory.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The bucket, as `store::buckets` describes it; the same arithmetic as PostgreSQL's
/// `sluice_take_token` (migration 8). Floats go through strings: a Lua number returned to
/// Redis would be cut to an integer.
const TAKE_SCRIPT: &str = r"
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local t = tonumber(state[1])
local u = tonumber(state[2])
if t == nil or u == nil then
  t = burst
  u = now
end
local elapsed = now - u
if elapsed < 0 then elapsed = 0 end
t = math.min(burst, t + elapsed / 1000 * rate)
if now > u then u = now end
local allowed = 0
if t >= 1 - 1e-9 then
  allowed = 1
  t = math.max(t - 1, 0)
end
local ttl = 86400000
if rate > 0 then ttl = math.min(math.ceil((burst - t) / rate * 1000), 86400000) end
if ttl < 1000 then ttl = 1000 end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', t), 'u', string.format('%d', u))
redis.call('PEXPIRE', KEYS[1], ttl)
return {allowed, string.format('%.17g', t)}
";

/// The buckets in one Redis server (or a primary behind a proxy).
pub struct RedisBuckets {
    manager: ConnectionManager,
    script: redis::Script,
    described: String,
}

impl RedisBuckets {
    /// Parses `url` (`redis://[:password@]host[:port][/db]`, `rediss://` for TLS) and
    /// prepares the connection, without connecting: a Redis that is down at start-up only
    /// means in-process limits until it is up. Must be called inside a tokio runtime.
    pub fn open(url: &str) -> Result<RedisBuckets, StoreError> {
        let described = describe(url);
        let client = redis::Client::open(url).map_err(|error| {
            StoreError::Redis(format!("{described} cannot be used ({:?})", error.kind()))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|error| StoreError::Redis(format!("{described}: {:?}", error.kind())))?;
        Ok(RedisBuckets {
            manager,
            script: redis::Script::new(TAKE_SCRIPT),
            described,
        })
    }

    /// The server's name for logs: the URL without its password.
    pub fn describe(&self) -> &str {
        &self.described
    }
}

/// `url` without the password (and without anything unparsable).
fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "an unparsable URL".to_owned(),
    }
}

impl SharedBuckets for RedisBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        rule: RateRule,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.manager.clone();
            let (allowed, tokens): (i64, String) = self
                .script
                .key(format!("sluice:rl:{key}"))
                .arg(rule.burst)
                .arg(rule.rate())
                .arg(now_ms)
                .invoke_async(&mut connection)
                .await
                .map_err(|error| {
                    StoreError::Unreachable(if error.is_timeout() {
                        "Redis did not answer in time"
                    } else if error.is_io_error() || error.is_connection_dropped() {
                        "Redis cannot be reached"
                    } else {
                        "Redis refused the rate-limit script"
                    })
                })?;
            let tokens = tokens.parse::<f64>().unwrap_or(0.0);
            Ok(outcome(rule, allowed == 1, tokens))
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two replicas' connections racing for one bucket in the local Redis (127.0.0.1:6379;
    /// fails without it): exactly the burst between them, then the wait; the key expires.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_racing_for_one_bucket_get_exactly_its_burst() {
        let url = "redis://127.0.0.1:6379/0";
        let key = format!("race-{}", uuid::Uuid::new_v4());
        let replicas = [
            std::sync::Arc::new(RedisBuckets::open(url).unwrap()),
            std::sync::Arc::new(RedisBuckets::open(url).unwrap()),
        ];
        let rule = RateRule::per_minute(10);
        let now = 1_000_000_000;
        let mut takes = tokio::task::JoinSet::new();
        for i in 0..30 {
            let (buckets, key) = (replicas[i % 2].clone(), key.clone());
            takes.spawn(async move { buckets.take(&key, rule, now).await });
        }
        let mut allowed = 0;
        while let Some(taken) = takes.join_next().await {
            match taken.unwrap().expect("Redis must run on 127.0.0.1:6379") {
                None => allowed += 1,
                Some(secs) => assert_eq!(secs, 6),
            }
        }
        assert_eq!(allowed, 10);
        assert_eq!(
            replicas[0].take(&key, rule, now + 6_000).await.unwrap(),
            None
        );
        assert!(
            replicas[1]
                .take(&key, rule, now + 6_000)
                .await
                .unwrap()
                .is_some()
        );
        let mut connection = replicas[0].manager.clone();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("sluice:rl:{key}"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_the_take_quickly() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let buckets = RedisBuckets::open(&format!("redis://:pw-canary@127.0.0.1:{port}")).unwrap();
        let started = std::time::Instant::now();
        let error = buckets
            .take("k", RateRule::per_minute(1), 0)
            .await
            .unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!error.to_string().contains("pw-canary"), "{error}");
        assert!(!buckets.describe().contains("pw-canary"));
    }

    #[test]
    fn the_description_never_carries_the_password() {
        let described = describe("redis://:s3cret-canary@cache.internal:6380/2");
        assert!(!described.contains("s3cret-canary"), "{described}");
        assert!(described.contains("cache.internal:6380"), "{described}");
        assert_eq!(describe("not a url"), "an unparsable URL");
    }
}
