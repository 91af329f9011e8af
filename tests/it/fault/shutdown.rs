//! SIGTERM under load, on the real binary: statements in flight on PostgreSQL and MariaDB
//! finish and are answered 200; requests of a steady load sent after the signal are refused
//! (connection refused or closed) or answered with a JSON body, never cut; and the process
//! exits 0 once drained.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::common::served::{Served, apply_catalog, sluice_with_test_key};

/// In-flight statements per datasource when the signal arrives.
const IN_FLIGHT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_requests_and_exits_0() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("term");
    let queries = format!(
        "      pg_slow: {{ datasource: pg, sql: \"SELECT pg_sleep(1)::text AS slept, '{marker}_pg' AS marker\" }}\n\
         \x20     my_slow: {{ datasource: my, sql: \"SELECT SLEEP(1) AS slept, '{marker}_my' AS marker\" }}\n\
         \x20     pg_quick: {{ datasource: pg, sql: \"SELECT 1 AS one\" }}\n\
         \x20     my_quick: {{ datasource: my, sql: \"SELECT 1 AS one\" }}\n"
    );
    let home = tempfile::tempdir().expect("temp dir");
    apply_catalog(home.path(), &catalog(&database.name, 8, &queries));
    let mut server = Served::start(&mut serve_command(home.path())).await;

    // Statements in flight, each request on a connection of its own.
    let mut in_flight = Vec::new();
    for query in ["pg_slow", "my_slow"] {
        for _ in 0..IN_FLIGHT {
            let url = server.url(&format!("/v1/apps/f/queries/{query}"));
            in_flight.push(tokio::spawn(async move {
                let response = reqwest::Client::new()
                    .post(url)
                    .json(&json!({}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| format!("{query}: no answer: {e}"))?;
                let status = response.status().as_u16();
                let text = response
                    .text()
                    .await
                    .map_err(|e| format!("{query}: body cut: {e}"))?;
                Ok::<_, String>((query, status, text))
            }));
        }
    }
    for (db, tag) in [
        (Db::Pg, format!("{marker}_pg")),
        (Db::My, format!("{marker}_my")),
    ] {
        assert!(
            admins
                .wait_count(db, &tag, IN_FLIGHT, Duration::from_secs(5))
                .await,
            "{db:?}: the statements were not all seen running"
        );
    }

    // A steady load of quick queries on kept-alive connections, through the signal.
    let stop = Arc::new(AtomicBool::new(false));
    let signalled_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut load = Vec::new();
    for query in ["pg_quick", "my_quick"] {
        let (stop, signalled_at) = (stop.clone(), signalled_at.clone());
        let url = server.url(&format!("/v1/apps/f/queries/{query}"));
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let (mut before, mut after_answered, mut after_refused) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let after = signalled_at.get().is_some_and(|at| started >= *at);
                match client.post(&url).json(&json!({})).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap_or_else(|e| {
                            panic!("{query}: an answer cut during the drain: {e}")
                        });
                        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                            panic!("{query}: {status}, not JSON ({e}): {text}")
                        });
                        if after {
                            assert!(
                                status == 200 || status == 503,
                                "{query} after SIGTERM: {status} {body}"
                            );
                            after_answered += 1;
                        } else {
                            assert_eq!(status, 200, "{query} before SIGTERM: {body}");
                            before += 1;
                        }
                    }
                    Err(error) => {
                        // Refused, or closed as the drain ends kept-alive connections: both
                        // are what a new request may get once the signal is in.
                        assert!(
                            signalled_at.get().is_some(),
                            "{query} before SIGTERM: {error}"
                        );
                        assert!(!error.is_timeout(), "{query}: hung after SIGTERM: {error}");
                        after_refused += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (before, after_answered, after_refused)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = signalled_at.set(Instant::now());
    server.signal("TERM");

    for request in in_flight {
        let (query, status, text) = request
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 200, "{query} in flight at SIGTERM: {text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(body["row_count"], 1, "{query}: {body}");
        assert!(body.get("error").is_none(), "{query}: {body}");
    }
    let exit = server.wait_exit(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let mut after = 0;
    for worker in load {
        let (before, answered, refused) = worker.await.expect("load worker");
        assert!(before > 0, "the load ran before the signal");
        after += answered + refused;
    }
    assert!(after > 0, "the load ran after the signal");
    assert_eq!(exit.code(), Some(0), "{exit}\n{}", server.output());
    let logs = server.output();
    assert!(logs.contains("All connections drained"), "{logs}");
    database.drop(&mut admins.my).await;
}

fn serve_command(home: &std::path::Path) -> Command {
    let mut command = sluice_with_test_key(home, &["serve"]);
    command.env("SLUICE_SHUTDOWN_GRACE_SECS", "10");
    for limit in [
        "SLUICE_RATE_LIMIT_PER_IP",
        "SLUICE_RATE_LIMIT_PER_USER",
        "SLUICE_RATE_LIMIT_PER_KEY",
    ] {
        command.env(limit, "off");
    }
    command
}
