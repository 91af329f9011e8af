//! Replicas on one PostgreSQL metadata store, beyond the basics `metadata_postgres` checks
//! (docs/SCALE_OUT.md): a per-IP limit that is one limit for the cluster, through PostgreSQL
//! and through Redis, and what happens when Redis is away (each replica limits on its own,
//! never not at all); the per-replica cache of sessions (hits counted, a sign-out seen at
//! once) and a replica whose store goes away (cached sessions keep working within the stale
//! bound, new sign-ins do not, `/readyz` says not ready, and it recovers when the store
//! returns); a replica killed with SIGKILL under load while the others answer every
//! request, and a new one joining; a replica whose store connections the server terminates
//! (`pg_terminate_backend`) recovering by itself; failed sign-ins spread over three replicas
//! raising one auth alert for the cluster. Real processes, real PostgreSQL, real
//! Redis (127.0.0.1:6379; the tests fail without it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::common::served::Served;
use crate::common::{PG_HOST, PG_PORT, pg_admin};
use crate::metadata_postgres::{
    ADMIN_TOKEN, FreshDatabase, PASSWORD, admin_count, apply, catalog, login, logout, run,
    run_query, sluice, within,
};

const REDIS: &str = "127.0.0.1:6379";
const METRICS_TOKEN: &str = "replica-metrics-token-0123456789abcdef";

/// A fresh store with the test users and the catalog, and its URL.
async fn store(prefix: &str, dir: &std::path::Path) -> (FreshDatabase, String) {
    let fresh = FreshDatabase::create(prefix).await;
    let url = format!("postgres://postgres@{PG_HOST}:{PG_PORT}/{}", fresh.0);
    for email in ["alice@example.com", "bob@example.com"] {
        let (ok, text) = run(
            sluice(dir, &url, &["user", "add", email, "--role", "developer"]),
            Some(PASSWORD),
        );
        assert!(ok, "user add: {text}");
    }
    apply(dir, &url, &catalog(&["first"]));
    (fresh, url)
}

/// `sluice serve` on `url` with the test settings and `env`.
async fn replica(dir: &std::path::Path, url: &str, env: &[(&str, &str)]) -> Served {
    let mut command = sluice(dir, url, &["serve"]);
    command
        .env("SLUICE_CATALOG_RELOAD_SECS", "0")
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_METRICS_TOKEN", METRICS_TOKEN)
        .env("SLUICE_AUTH_RATE_PER_MINUTE", "100000")
        // Limits are the cluster's now: a test's polling must not meet them unless it sets one.
        .env("SLUICE_RATE_LIMIT_PER_IP", "off")
        .env("SLUICE_RATE_LIMIT_PER_USER", "off");
    for (name, value) in env {
        command.env(name, value);
    }
    Served::start(&mut command).await
}

/// One request counted by the per-IP limit: 429 when refused.
async fn hit(served: &Served) -> u16 {
    served
        .client
        .get(served.url("/v1/auth/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The value of one series in `/metrics` (0 when absent).
async fn metric(served: &Served, series: &str) -> f64 {
    metric_at(&served.url("/metrics"), series).await
}

/// [`metric`] from a metrics URL (the main listener's or `SLUICE_METRICS_LISTEN`'s, which
/// no rate limit applies to).
async fn metric_at(url: &str, series: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(url)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Seven requests admitted across three replicas, the eighth refused wherever it lands.
async fn seven_per_minute_for_the_cluster(replicas: &[Served]) {
    for i in 0..7 {
        let status = hit(&replicas[i % replicas.len()]).await;
        assert_ne!(status, 429, "request {i} of 7 refused");
    }
    for replica in replicas {
        let response = replica
            .client
            .get(replica.url("/v1/auth/me"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            429,
            "the limit is the cluster's"
        );
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=9).contains(&retry), "Retry-After {retry}");
    }
}

#[tokio::test]
async fn a_per_ip_limit_is_one_limit_for_the_cluster_through_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, url) = store("sluice_limits_pg", dir.path()).await;
    let env = [("SLUICE_RATE_LIMIT_PER_IP", "7/minute")];
    let replicas = vec![
        replica(dir.path(), &url, &env).await,
        replica(dir.path(), &url, &env).await,
        replica(dir.path(), &url, &env).await,
    ];
    seven_per_minute_for_the_cluster(&replicas).await;
    // The buckets are the store's (one row for the one address).
    assert_eq!(
        admin_count(&fresh.0, "SELECT count(*) FROM rate_buckets").await,
        1
    );
}

/// A Redis database of its own for one test (1 to 15, flushed first).
async fn redis_database() -> (redis::aio::MultiplexedConnection, String) {
    let db = 1 + rand::random::<u8>() % 15;
    let url = format!("redis://{REDIS}/{db}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("Redis must run on {REDIS}: {error}"));
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut connection)
        .await
        .unwrap();
    (connection, url)
}

#[tokio::test]
async fn a_per_ip_limit_is_one_limit_for_the_cluster_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, url) = store("sluice_limits_redis", dir.path()).await;
    let (mut redis, redis_url) = redis_database().await;
    let env = [
        ("SLUICE_RATE_LIMIT_PER_IP", "7/minute"),
        ("SLUICE_REDIS_URL", redis_url.as_str()),
    ];
    let replicas = vec![
        replica(dir.path(), &url, &env).await,
        replica(dir.path(), &url, &env).await,
        replica(dir.path(), &url, &env).await,
    ];
    seven_per_minute_for_the_cluster(&replicas).await;
    // The buckets are Redis's, not the store's.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("sluice:rl:*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 60_000,
        "the bucket expires once full: {ttl}"
    );
    assert_eq!(
        admin_count(&fresh.0, "SELECT count(*) FROM rate_buckets").await,
        0
    );
}

#[tokio::test]
async fn without_redis_each_replica_still_limits_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (_fresh, url) = store("sluice_limits_down", dir.path()).await;
    // Nothing listens there.
    let closed = format!("redis://127.0.0.1:{}/0", crate::common::served::free_port());
    let metrics = format!("127.0.0.1:{}", crate::common::served::free_port());
    let env = [
        ("SLUICE_RATE_LIMIT_PER_IP", "3/minute"),
        ("SLUICE_REDIS_URL", closed.as_str()),
    ];
    let mut a_env = env.to_vec();
    a_env.push(("SLUICE_METRICS_LISTEN", metrics.as_str()));
    let a = replica(dir.path(), &url, &a_env).await;
    let b = replica(dir.path(), &url, &env).await;
    for replica in [&a, &b] {
        for i in 0..3 {
            assert_ne!(hit(replica).await, 429, "request {i} of 3");
        }
        assert_eq!(hit(replica).await, 429, "the in-process limit holds");
    }
    assert!(
        metric_at(
            &format!("http://{metrics}/metrics"),
            "sluice_rate_limit_store_failures_total{store=\"redis\"}"
        )
        .await
            >= 4.0,
        "each fallback is counted"
    );
    let log = a.output();
    assert!(
        log.contains("Shared rate limits cannot be reached"),
        "the fallback is logged: {log}"
    );
    assert!(!log.contains("edge:127.0.0.1"), "keys are never logged");
}

/// A TCP relay to the local PostgreSQL that the test can cut (every connection closed, the
/// port refusing) and restore on the same port: the store going away and coming back.
struct StoreRelay {
    address: SocketAddr,
    up: Arc<AtomicBool>,
    tasks: JoinSet<()>,
}

impl StoreRelay {
    async fn start() -> StoreRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut relay = StoreRelay {
            address,
            up: Arc::new(AtomicBool::new(true)),
            tasks: JoinSet::new(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&mut self, listener: TcpListener) {
        let up = self.up.clone();
        self.tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue;
                }
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect((PG_HOST, PG_PORT)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }

    /// Closes every relayed connection and stops listening.
    fn cut(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        // Aborting the accept task drops the listener and every connection it holds.
        self.tasks.abort_all();
    }

    async fn restore(&mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.up.store(true, Ordering::SeqCst);
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }
}

async fn ready(served: &Served) -> u16 {
    served
        .client
        .get(served.url("/readyz"))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn cached_sessions_answer_from_memory_and_outlive_a_store_outage_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, direct_url) = store("sluice_cache", dir.path()).await;
    let mut relay = StoreRelay::start().await;
    let relayed = format!("postgres://postgres@{}/{}", relay.address, fresh.0);
    let a = replica(
        dir.path(),
        &relayed,
        &[
            ("SLUICE_AUTH_CACHE_SECS", "30"),
            ("SLUICE_AUTH_CACHE_STALE_SECS", "30"),
        ],
    )
    .await;
    let b = replica(dir.path(), &direct_url, &[]).await;

    let (status, cookie) = login(&a, "alice@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    // The cache answers once the replica's store listener is connected (on a loaded machine,
    // a moment after the replica listens); from then on a lookup that read the store is
    // followed by hits from memory.
    within(
        Duration::from_secs(10),
        "session lookups answered from memory",
        async || {
            for _ in 0..5 {
                assert_eq!(run_query(&a, &cookie, "first").await.0, 200);
            }
            metric(&a, "sluice_auth_cache_lookups_total{result=\"hit\"}").await >= 4.0
        },
    )
    .await;

    // Signed out on B: A's cache forgets the session at once (by the store's notice; its
    // own lifetime is 30 s here).
    let (_, other) = login(&b, "alice@example.com", PASSWORD).await;
    let other = other.unwrap();
    assert_eq!(run_query(&a, &other, "first").await.0, 200);
    logout(&b, &other).await;
    within(
        Duration::from_secs(1),
        "logout on B seen by A's cache",
        async || run_query(&a, &other, "first").await.0 == 401,
    )
    .await;

    // The store goes away for A (right after A read the session again: the sign-in on B
    // changed nothing A caches, but the entry is read anew to be sure it is there).
    assert_eq!(run_query(&a, &cookie, "first").await.0, 200);
    relay.cut();
    within(Duration::from_secs(5), "A reports not ready", async || {
        ready(&a).await == 503
    })
    .await;
    // The session A read before keeps working; nothing new is admitted.
    let (status, body) = run_query(&a, &cookie, "first").await;
    assert_eq!(status, 200, "{body}\n{}", a.output());
    assert!(metric(&a, "sluice_auth_cache_lookups_total{result=\"stale\"}").await >= 1.0);
    assert_ne!(login(&a, "bob@example.com", PASSWORD).await.0, 200);
    let (status, _) = run_query(&a, "sluice_session=not-a-session", "first").await;
    assert!(status >= 400, "{status}");

    // Back: ready again, sign-ins work, and sign-outs hold.
    relay.restore().await;
    within(Duration::from_secs(10), "A ready again", async || {
        ready(&a).await == 200
    })
    .await;
    let (status, bob) = login(&a, "bob@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let bob = bob.unwrap();
    assert_eq!(run_query(&a, &bob, "first").await.0, 200);
    logout(&a, &bob).await;
    assert_eq!(run_query(&a, &bob, "first").await.0, 401);
    assert_eq!(run_query(&b, &bob, "first").await.0, 401);
}

#[tokio::test]
async fn a_replica_killed_under_load_leaves_the_others_answering_and_a_new_one_joins() {
    let dir = tempfile::tempdir().unwrap();
    let (_fresh, url) = store("sluice_kill", dir.path()).await;
    let a = replica(dir.path(), &url, &[]).await;
    let b = Arc::new(replica(dir.path(), &url, &[]).await);
    let c = Arc::new(replica(dir.path(), &url, &[]).await);
    let (status, cookie) = login(&b, "alice@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = JoinSet::new();
    for served in [b.clone(), c.clone(), b.clone(), c.clone()] {
        let (stop, cookie) = (stop.clone(), cookie.clone());
        load.spawn(async move {
            let mut answered = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                answered.push(run_query(&served, &cookie, "first").await.0);
            }
            answered
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.signal("KILL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    while let Some(answered) = load.join_next().await {
        statuses.extend(answered.unwrap());
    }
    assert!(statuses.len() > 20, "load ran: {} requests", statuses.len());
    assert!(
        statuses.iter().all(|status| *status == 200),
        "every request answered: {} of {} were not 200, e.g. {:?}",
        statuses.iter().filter(|status| **status != 200).count(),
        statuses.len(),
        statuses.iter().find(|status| **status != 200)
    );
    drop(a);

    // A new replica joins: the same session works on it.
    let d = replica(dir.path(), &url, &[]).await;
    assert_eq!(run_query(&d, &cookie, "first").await.0, 200);
}

#[tokio::test]
async fn a_replica_whose_store_connections_are_terminated_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, url) = store("sluice_terminate", dir.path()).await;
    let a_url = format!("{url}?application_name=sluice-replica-a");
    let a = replica(dir.path(), &a_url, &[]).await;
    let b = replica(dir.path(), &url, &[]).await;
    let (status, cookie) = login(&a, "alice@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    assert_eq!(run_query(&a, &cookie, "first").await.0, 200);

    let terminated: i64 = pg_admin()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'sluice-replica-a'",
            &[&fresh.0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated >= 2, "A's pool and listener: {terminated}");

    // A signs in and serves again by itself (a call racing the loss may fail once).
    within(
        Duration::from_secs(5),
        "a sign-in on A after the loss",
        async || login(&a, "bob@example.com", PASSWORD).await.0 == 200,
    )
    .await;
    assert_eq!(ready(&a).await, 200);
    // Its listener is back: a sign-out on B reaches A's cache.
    logout(&b, &cookie).await;
    within(
        Duration::from_secs(3),
        "the sign-out seen on A",
        async || run_query(&a, &cookie, "first").await.0 == 401,
    )
    .await;
}

/// One failed sign-in (an unknown account) through `served`.
async fn failed_sign_in(served: &Served, email: &str) {
    let response = served
        .client
        .post(served.url("/v1/auth/login"))
        .json(&serde_json::json!({ "email": email, "password": "not-the-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn failed_sign_ins_spread_over_replicas_raise_one_alert_for_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, url) = store("sluice_alerts_pg", dir.path()).await;
    let replicas = vec![
        replica(dir.path(), &url, &[]).await,
        replica(dir.path(), &url, &[]).await,
        replica(dir.path(), &url, &[]).await,
    ];
    let alerts = "SELECT count(*) FROM audit_events WHERE event = 'alert'";
    // Two failures per replica: no replica saw more than five itself, the cluster saw six.
    for n in 0..6 {
        failed_sign_in(&replicas[n % 3], &format!("guess{n}@example.com")).await;
    }
    within(Duration::from_secs(20), "the alert recorded", async || {
        admin_count(&fresh.0, alerts).await == 1
    })
    .await;
    // Every replica has read past it by now (they poll every second): still one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(admin_count(&fresh.0, alerts).await, 1);
    let mut counted = 0.0;
    for served in &replicas {
        counted += metric(served, "sluice_alerts_total{rule=\"SLU-A001\"}").await;
    }
    assert_eq!(counted, 1.0, "counted by the replica that recorded it");
    assert_eq!(
        admin_count(
            &fresh.0,
            "SELECT count(*) FROM audit_events WHERE event = 'alert' AND reason = 'sign_in_failures' AND ip = '127.0.0.1'"
        )
        .await,
        1
    );
}
