//! Rate limits and concurrency caps end to end, through a real gateway and the local
//! PostgreSQL: the instance-wide per-IP limit, per-user, per-key and per-app per-IP limits
//! (on a [`ManualClock`](sluice::clock::ManualClock), so windows pass without sleeping), and
//! `max_concurrency` with a query that really runs for a second.
//!
//! A refused request must not reach the datasource: the counting queries leave one row per
//! run in a PostgreSQL table ([`edge_common::Counter`]).

use crate::auth_common;
use crate::common;
use crate::edge_common;

use std::time::Duration;

use auth_common::*;
use common::*;
use edge_common::*;
use reqwest::Method;
use serde_json::json;
use sluice::auth::Role;

/// Asserts a 429 `rate_limited` answer with a JSON error and `Retry-After: secs`.
#[track_caller]
fn assert_limited(what: &str, reply: &Reply, secs: u64) {
    assert_error(what, reply, 429, "rate_limited");
    assert_eq!(
        header(reply, "retry-after"),
        Some(secs.to_string().as_str()),
        "{what}: {:?}",
        reply.headers
    );
    assert_security_headers(what, reply);
}

#[tokio::test]
async fn the_instance_per_ip_limit_refuses_before_the_datasource_and_recovers() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  open:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "open"),
    );
    let env = [
        ("SLUICE_RATE_LIMIT_PER_IP", "5/minute"),
        ("SLUICE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let (gateway, clock) = gateway_with(&catalog, &env).await;
    let alice = [("x-forwarded-for", "198.51.100.7")];
    let bob = [("x-forwarded-for", "198.51.100.8")];
    for i in 0..5 {
        let reply = run(&gateway, "open", "hit", &alice).await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text);
    }
    // One token every 12 s.
    let reply = run(&gateway, "open", "hit", &alice).await;
    assert_limited("6th request", &reply, 12);
    assert_eq!(
        counter.count("open").await,
        5,
        "a limited request reached PostgreSQL"
    );
    // Every endpoint shares the address's budget, except the health checks.
    let reply = send(&gateway, Method::GET, "/v1/auth/me", &alice, None).await;
    assert_limited("auth route", &reply, 12);
    let reply = send(&gateway, Method::GET, "/v1/nope", &alice, None).await;
    assert_limited("unknown route", &reply, 12);
    for path in ["/healthz", "/readyz"] {
        let reply = send(&gateway, Method::GET, path, &alice, None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    // Another address has its own budget.
    run(&gateway, "open", "hit", &bob).await.expect_ok();
    assert_eq!(counter.count("open").await, 6);

    // Retry-After is honest: after 12 s one request passes, then the next waits again.
    clock.advance_secs(11);
    assert_limited("after 11 s", &run(&gateway, "open", "hit", &alice).await, 1);
    clock.advance_secs(1);
    run(&gateway, "open", "hit", &alice).await.expect_ok();
    assert_limited(
        "after the refill",
        &run(&gateway, "open", "hit", &alice).await,
        12,
    );
    // A minute refills the whole burst.
    clock.advance_secs(60);
    for i in 0..5 {
        let reply = run(&gateway, "open", "hit", &alice).await;
        assert_eq!(
            reply.status, 200,
            "request {i} after a minute: {}",
            reply.text
        );
    }
    assert_limited(
        "burst spent again",
        &run(&gateway, "open", "hit", &alice).await,
        12,
    );
    assert_eq!(counter.count("open").await, 12);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn per_user_limits_count_each_user_on_their_own() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  ws:\n    visibility: workspace\n    grants: {{ roles: [viewer, developer] }}\n    \
         limits: {{ per_user: 3/minute }}\n    queries:\n{}{}        limits: {{ per_user: \"off\" }}\n  \
         other:\n    visibility: workspace\n    grants: {{ roles: [viewer] }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "hit"),
        counter.query("free", "free"),
        counter.query("hit", "other"),
    );
    // The instance default (per user) is looser; the app's rule replaces it for its queries.
    let (gateway, clock) =
        gateway_with(&catalog, &[("SLUICE_RATE_LIMIT_PER_USER", "4/minute")]).await;
    user(&gateway, "ann@example.com", Role::Viewer).await;
    user(&gateway, "bea@example.com", Role::Viewer).await;
    let mut ann = Browser::new(&gateway);
    ann.login_ok("ann@example.com").await;
    let mut bea = Browser::new(&gateway);
    bea.login_ok("bea@example.com").await;

    for i in 0..3 {
        ann.run("ws", "hit").await.expect_ok();
        let _ = i;
    }
    assert_limited("ann's 4th", &ann.run("ws", "hit").await, 20);
    assert_eq!(
        counter.count("hit").await,
        3,
        "a limited request reached PostgreSQL"
    );
    // Bea has her own budget.
    for _ in 0..3 {
        bea.run("ws", "hit").await.expect_ok();
    }
    assert_limited("bea's 4th", &bea.run("ws", "hit").await, 20);
    assert_eq!(counter.count("hit").await, 6);
    // A query that turns the limit off is not limited; another app falls back to the
    // instance default (4 per minute), counted apart from this app's.
    for _ in 0..6 {
        ann.run("ws", "free").await.expect_ok();
    }
    for _ in 0..4 {
        ann.run("other", "hit").await.expect_ok();
    }
    assert_limited("instance default", &ann.run("other", "hit").await, 15);
    assert_eq!(counter.count("free").await, 6);
    assert_eq!(counter.count("other").await, 4);

    // 20 s gives Ann one more run.
    clock.advance_secs(20);
    ann.run("ws", "hit").await.expect_ok();
    assert_limited("ann again", &ann.run("ws", "hit").await, 20);
    assert_eq!(counter.count("hit").await, 7);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn per_key_limits_count_each_api_key() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  ws:\n    visibility: workspace\n    grants: {{ roles: [developer] }}\n    \
         limits: {{ per_key: 2/minute }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "hit"),
    );
    let (gateway, clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "dev@example.com", Role::Developer).await;
    let first = api_key(&gateway, "dev@example.com", json!({ "apps": ["ws"] })).await;
    let second = api_key(&gateway, "dev@example.com", json!({ "apps": ["ws"] })).await;
    let mut first = Browser::with_key(&gateway, &first);
    let mut second = Browser::with_key(&gateway, &second);
    first.run("ws", "hit").await.expect_ok();
    first.run("ws", "hit").await.expect_ok();
    assert_limited("first key, 3rd", &first.run("ws", "hit").await, 30);
    assert_eq!(
        counter.count("hit").await,
        2,
        "a limited request reached PostgreSQL"
    );
    // Each key has its own budget, and the owner's session is not a key.
    second.run("ws", "hit").await.expect_ok();
    let mut session = Browser::new(&gateway);
    session.login_ok("dev@example.com").await;
    for _ in 0..3 {
        session.run("ws", "hit").await.expect_ok();
    }
    assert_eq!(counter.count("hit").await, 6);
    clock.advance_secs(30);
    first.run("ws", "hit").await.expect_ok();
    assert_limited(
        "first key, refilled once",
        &first.run("ws", "hit").await,
        30,
    );
    assert_eq!(counter.count("hit").await, 7);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn an_apps_per_ip_limit_covers_its_queries_only() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  busy:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         limits: {{ per_ip: 2/minute }}\n    queries:\n{}{}  calm:\n    visibility: public\n    \
         grants: {{ anonymous: true }}\n    queries:\n{}",
        datasources(),
        counter.query("a", "busy"),
        counter.query("b", "busy"),
        counter.query("hit", "calm"),
    );
    let (gateway, clock) =
        gateway_with(&catalog, &[("SLUICE_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let carol = [("x-forwarded-for", "203.0.113.5")];
    let dan = [("x-forwarded-for", "203.0.113.6")];
    // The app's budget is shared by its queries.
    run(&gateway, "busy", "a", &carol).await.expect_ok();
    run(&gateway, "busy", "b", &carol).await.expect_ok();
    assert_limited("busy/a", &run(&gateway, "busy", "a", &carol).await, 30);
    assert_limited("busy/b", &run(&gateway, "busy", "b", &carol).await, 30);
    assert_eq!(
        counter.count("busy").await,
        2,
        "a limited request reached PostgreSQL"
    );
    // Other apps and other addresses are not affected.
    for _ in 0..5 {
        run(&gateway, "calm", "hit", &carol).await.expect_ok();
    }
    run(&gateway, "busy", "a", &dan).await.expect_ok();
    assert_eq!(counter.count("busy").await, 3);
    clock.advance_secs(60);
    run(&gateway, "busy", "a", &carol).await.expect_ok();
    run(&gateway, "busy", "a", &carol).await.expect_ok();
    assert_limited("busy again", &run(&gateway, "busy", "a", &carol).await, 30);
    assert_eq!(counter.count("busy").await, 5);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn max_concurrency_refuses_a_second_run_while_one_is_running() {
    let marker = unique_name("concurrency");
    let catalog = format!(
        "{}apps:\n  slow:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n      \
         sleep:\n        datasource: pg\n        sql: SELECT pg_sleep(1)::text AS slept, '{marker}' AS marker\n        \
         limits: {{ max_concurrency: 1 }}\n      quick:\n        datasource: pg\n        sql: SELECT 1 AS one\n",
        datasources(),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let gateway = std::sync::Arc::new(gateway);
    let pg = pg_admin().await;
    let running = async || -> i64 {
        pg.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 \
             AND pid <> pg_backend_pid()",
            &[&format!("%{marker}%")],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
    };

    let first = tokio::spawn({
        let gateway = gateway.clone();
        async move { run(&gateway, "slow", "sleep", &[]).await }
    });
    // Wait (polling, not for a time window) until PostgreSQL is running the first one.
    let mut polls = 0;
    while running().await == 0 {
        polls += 1;
        if first.is_finished() || polls >= 500 {
            let reply = first.await.expect("first run");
            panic!("the first run was not seen running in PostgreSQL: {reply:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = run(&gateway, "slow", "sleep", &[]).await;
    assert_error("second", &second, 429, "too_many_concurrent");
    assert!(
        header(&second, "retry-after").is_some(),
        "{:?}",
        second.headers
    );
    assert_eq!(running().await, 1, "the refused run reached PostgreSQL");
    // The cap is per query: others run meanwhile.
    run(&gateway, "slow", "quick", &[]).await.expect_ok();

    let first = first.await.expect("first run");
    assert_eq!(first.status, 200, "{}", first.text);
    let third = run(&gateway, "slow", "sleep", &[]).await;
    assert_eq!(third.status, 200, "{}", third.text);
    assert_eq!(third.json()["rows"][0][1], marker.as_str());
}
