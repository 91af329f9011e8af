//! Pool exhaustion and reuse.
//!
//! More concurrent statements than `pool_size`: the excess waits at most `pool_wait_ms`
//! (from the catalog, or `SLUICE_POOL_WAIT_MS`) and is answered 503 `datasource_busy` with
//! `Retry-After: 1`; it used to queue behind the running statements until its own timeout.
//! Idle MariaDB connections are kept and reused; mysql_async used to close each one as it
//! came back (its default idle lifetime is zero), so every request paid a new connection.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn statements_past_the_pool_size_are_refused_busy_after_the_pool_wait() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("busy");
    let queries = format!(
        "      pg_slow: {{ datasource: pg, sql: \"SELECT pg_sleep(1.5)::text AS slept, '{marker}' AS marker\", timeout_ms: 6000 }}\n\
         \x20     my_slow: {{ datasource: my, sql: \"SELECT SLEEP(1.5) AS slept, '{marker}' AS marker\", timeout_ms: 6000 }}\n"
    );
    // PostgreSQL's wait comes from the catalog, MariaDB's from the instance default.
    let gateway = TestGateway::start_with(
        &catalog_with_waits(&database.name, 2, Some(300), None, &queries),
        &[("SLUICE_POOL_WAIT_MS", "300")],
    )
    .await;

    for query in ["pg_slow", "my_slow"] {
        let calls = (0..5).map(|_| {
            let client = reqwest::Client::new();
            let url = gateway.url(&format!("/v1/apps/f/queries/{query}"));
            async move {
                let started = Instant::now();
                let response = client
                    .post(url)
                    .json(&json!({}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .expect("an answer, not a hang");
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body: Value = response.json().await.expect("a JSON body");
                (status, retry_after, body, started.elapsed())
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        let served = answers.iter().filter(|(status, ..)| *status == 200).count();
        assert_eq!(
            served, 2,
            "{query}: two connections, two served: {answers:?}"
        );
        for (status, retry_after, body, took) in answers.iter().filter(|(s, ..)| *s != 200) {
            assert_eq!(*status, 503, "{query}: {body}");
            assert_eq!(body["error"]["code"], "datasource_busy", "{query}: {body}");
            assert!(body["error"]["request_id"].is_string(), "{query}: {body}");
            assert_eq!(retry_after.as_deref(), Some("1"), "{query}: {body}");
            assert!(
                *took >= Duration::from_millis(280) && *took < Duration::from_millis(1200),
                "{query}: refused after {took:?}, not after the 300 ms pool wait"
            );
        }
    }
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}

#[tokio::test]
async fn idle_mariadb_connections_are_kept_and_reused() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let queries = "      my_id: { datasource: my, sql: \"SELECT CONNECTION_ID() AS id\" }\n";
    let gateway = TestGateway::start(&catalog(&database.name, 4, queries)).await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = gateway.call("f", "my_id", json!({})).await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["rows"][0][0].clone());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one request after another runs on one kept connection: {ids:?}"
    );
    let idle: Vec<u64> = admins
        .my
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Sleep'",
            (&database.name,),
        )
        .await
        .unwrap();
    assert_eq!(
        idle.len(),
        1,
        "the connection stays open while idle: {idle:?}"
    );
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}
