//! A client that leaves while its query runs.
//!
//! The listener answers clients that half-close after their request (hyper's
//! `half_close(true)`), so it reads nothing while a request runs and a FIN cannot be told
//! from a half-close: such a client is answered, and its statement is bounded by its
//! timeout. A client that *resets* the connection (`SO_LINGER` 0, a killed process, most
//! browser aborts) is noticed at once: its statement is cancelled on the server, whether the
//! gateway was still waiting for the first row or already streaming the result, and the
//! datasource's one connection serves the next request.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Statements of ten seconds with a timeout of eight: one still running after a second was
/// not cancelled.
const CANCELLED_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_client_that_resets_mid_query_has_its_statement_cancelled() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("reset");
    let queries = format!(
        "      pg_wait: {{ datasource: pg, sql: \"SELECT pg_sleep(10)::text AS slept, '{marker}_pg_wait' AS marker\", timeout_ms: 8000 }}\n\
         \x20     my_wait: {{ datasource: my, sql: \"SELECT SLEEP(10) AS slept, '{marker}_my_wait' AS marker\", timeout_ms: 8000 }}\n\
         \x20     pg_stream: {{ datasource: pg, sql: \"SELECT g, CASE WHEN g > 300 THEN pg_sleep(10)::text ELSE repeat('x', 200) END AS pad, '{marker}_pg_stream' AS marker FROM generate_series(1, 301) g\", timeout_ms: 8000 }}\n\
         \x20     my_stream: {{ datasource: my, sql: \"SELECT seq, IF(seq > 300, SLEEP(10), REPEAT('x', 200)) AS pad, '{marker}_my_stream' AS marker FROM seq_1_to_301\", timeout_ms: 8000 }}\n\
         \x20     pg_quick: {{ datasource: pg, sql: \"SELECT 1 AS one\" }}\n\
         \x20     my_quick: {{ datasource: my, sql: \"SELECT 1 AS one\" }}\n"
    );
    let gateway = TestGateway::start(&catalog(&database.name, 1, &queries)).await;

    for (db, query, quick) in [
        (Db::Pg, "pg_wait", "pg_quick"),
        (Db::My, "my_wait", "my_quick"),
        (Db::Pg, "pg_stream", "pg_quick"),
        (Db::My, "my_stream", "my_quick"),
    ] {
        let tag = format!("{marker}_{query}");
        let mut stream = send_query(gateway.address, query).await;
        admins.wait_running(db, &tag, Duration::from_secs(3)).await;
        if query.ends_with("_stream") {
            // The answer is streaming: its head and first rows arrived before the sleep.
            let mut first = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut first))
                .await
                .expect("the first rows stream before the statement sleeps")
                .expect("read the first rows");
            assert!(
                first[..read].starts_with(b"HTTP/1.1 200"),
                "{query}: {}",
                String::from_utf8_lossy(&first[..read])
            );
        }
        let reset_at = Instant::now();
        reset(stream);
        assert!(
            admins.gone_within(db, &tag, CANCELLED_WITHIN).await,
            "{query}: the statement still runs {CANCELLED_WITHIN:?} after its client reset the connection"
        );
        assert_serves(
            &gateway,
            quick,
            Duration::from_secs(2),
            &format!("{query}: the next request after a reset"),
        )
        .await;
        assert!(
            reset_at.elapsed() < Duration::from_secs(4),
            "{query}: recovered only {:?} after the reset",
            reset_at.elapsed()
        );
    }
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}

/// The trade-off of answering half-closed clients: a FIN is not a reason to cancel (the
/// client may be waiting for its answer), so the statement runs until its timeout, and the
/// client gets the answer.
#[tokio::test]
async fn a_client_that_half_closes_is_answered_and_its_statement_ends_at_its_timeout() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("fin");
    let queries = format!(
        "      pg_slow: {{ datasource: pg, sql: \"SELECT pg_sleep(10)::text AS slept, '{marker}_pg' AS marker\", timeout_ms: 1000 }}\n\
         \x20     my_slow: {{ datasource: my, sql: \"SELECT SLEEP(10) AS slept, '{marker}_my' AS marker\", timeout_ms: 1000 }}\n"
    );
    let gateway = TestGateway::start(&catalog(&database.name, 1, &queries)).await;

    for (db, query) in [(Db::Pg, "pg_slow"), (Db::My, "my_slow")] {
        let tag = format!("{marker}_{}", &query[..2]);
        let started = Instant::now();
        let mut stream = send_query(gateway.address, query).await;
        stream.shutdown().await.expect("half-close");
        admins.wait_running(db, &tag, Duration::from_secs(3)).await;
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{query}: no answer to a half-closed client"));
        let took = started.elapsed();
        assert_eq!(response.status, 504, "{query}: {response:?}");
        assert_eq!(response.json()["error"]["code"], "query_timeout", "{query}");
        assert!(
            took >= Duration::from_millis(900),
            "{query}: answered after {took:?}, before the statement's timeout"
        );
        assert!(
            admins.gone_within(db, &tag, CANCELLED_WITHIN).await,
            "{query}: the statement outlived its timeout"
        );
    }
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}
