//! A statement that outlives its `timeout_ms`: answered 504 `query_timeout`, gone from the
//! server promptly (cancelled, not left to run its ten seconds), and the datasource serves
//! the next request on its one connection (reused or replaced).
//!
//! MariaDB's `KILL QUERY` used to be sent over a connection taken from the same pool: with
//! every connection busy (here the pool's only one, held by the statement being killed) the
//! kill waited for itself, the statement ran on, and the pool stayed blocked.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_statement_past_its_timeout_is_cancelled_and_the_pool_serves_on() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("timeout");
    let queries = format!(
        "      pg_slow: {{ datasource: pg, sql: \"SELECT pg_sleep(10)::text AS slept, '{marker}_pg' AS marker\", timeout_ms: 500 }}\n\
         \x20     my_slow: {{ datasource: my, sql: \"SELECT SLEEP(10) AS slept, '{marker}_my' AS marker\", timeout_ms: 500 }}\n\
         \x20     pg_quick: {{ datasource: pg, sql: \"SELECT 1 AS one\" }}\n\
         \x20     my_quick: {{ datasource: my, sql: \"SELECT 1 AS one\" }}\n"
    );
    // One connection per datasource: the next request needs the very connection the
    // timed-out statement held, or its replacement.
    let gateway = TestGateway::start(&catalog(&database.name, 1, &queries)).await;

    for (db, slow, quick, tag) in [
        (Db::Pg, "pg_slow", "pg_quick", format!("{marker}_pg")),
        (Db::My, "my_slow", "my_quick", format!("{marker}_my")),
    ] {
        let started = Instant::now();
        let (status, body) = gateway.call("f", slow, json!({})).await;
        let took = started.elapsed();
        assert_eq!(status, 504, "{db:?}: {body}");
        assert_eq!(body["error"]["code"], "query_timeout", "{db:?}: {body}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(3),
            "{db:?}: answered after {took:?}"
        );
        assert!(
            admins.gone_within(db, &tag, Duration::from_secs(1)).await,
            "{db:?}: the statement still runs on the server a second after its timeout"
        );
        assert_serves(
            &gateway,
            quick,
            Duration::from_secs(2),
            &format!("{db:?} after a timeout"),
        )
        .await;
    }
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}
