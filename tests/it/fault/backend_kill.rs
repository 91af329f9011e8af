//! The gateway's database sessions killed under a steady load: every PostgreSQL backend of
//! the gateway ended with `pg_terminate_backend` and every MariaDB connection with `KILL`,
//! twice, while workers keep calling a short query on each datasource.
//!
//! Requests caught by a kill may fail, but only with a clean JSON 5xx and a code (503
//! `datasource_unavailable`; 502 `query_failed` is allowed for a server error the kill may
//! cause, though none was seen), never a hang or a dropped connection; and every request
//! that starts a second after the last kill succeeds: dead connections are dropped from the
//! pools, not handed out again. The kinds of failures seen are printed (`--nocapture`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use super::*;

/// Workers per datasource (the pool has four connections).
const WORKERS: usize = 3;
/// A request slower than this counts as a hang.
const HANG: Duration = Duration::from_secs(5);

/// One request of the load.
#[derive(Debug)]
struct Outcome {
    db: Db,
    started: Instant,
    took: Duration,
    /// Status and body, or the transport error.
    answer: Result<(u16, Value), String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_mid_load_fail_cleanly_and_recover_within_a_second() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let marker = unique_name("kill");
    let queries = format!(
        "      pg_load: {{ datasource: pg, sql: \"SELECT pg_sleep(0.01)::text AS slept, '{marker}' AS marker\" }}\n\
         \x20     my_load: {{ datasource: my, sql: \"SELECT SLEEP(0.01) AS slept, '{marker}' AS marker\" }}\n"
    );
    let gateway = TestGateway::start(&catalog(&database.name, 4, &queries)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(HANG)
        .build()
        .expect("client");
    let mut workers = Vec::new();
    for (db, query) in [(Db::Pg, "pg_load"), (Db::My, "my_load")] {
        for _ in 0..WORKERS {
            let (client, stop) = (client.clone(), stop.clone());
            let url = gateway.url(&format!("/v1/apps/f/queries/{query}"));
            workers.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let answer = match client.post(&url).json(&json!({})).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.text().await {
                                Ok(text) => serde_json::from_str(&text)
                                    .map(|body| (status, body))
                                    .map_err(|e| format!("{status}, not JSON ({e}): {text}")),
                                Err(error) => Err(format!("{status}, body cut: {error}")),
                            }
                        }
                        Err(error) => Err(format!("no answer: {error}")),
                    };
                    outcomes.push(Outcome {
                        db,
                        started,
                        took: started.elapsed(),
                        answer,
                    });
                }
                outcomes
            }));
        }
    }

    tokio::time::sleep(Duration::from_millis(400)).await;
    let first_kill = Instant::now();
    for round in 0..2 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let terminated: i64 = admins
            .pg
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                &[&marker],
            )
            .await
            .expect("pg_terminate_backend")
            .get(0);
        assert!(
            terminated > 0,
            "round {round}: no PostgreSQL backend of the gateway found"
        );
        let sessions: Vec<u64> = admins
            .my
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST \
                 WHERE DB = ? AND ID <> CONNECTION_ID()",
                (&database.name,),
            )
            .await
            .expect("read the processlist");
        assert!(
            !sessions.is_empty(),
            "round {round}: no MariaDB session of the gateway found"
        );
        for id in sessions {
            // A session may end on its own between the list and the kill (1094: unknown).
            let _ = admins.my.query_drop(format!("KILL {id}")).await;
        }
    }
    let last_kill = Instant::now();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("worker"));
    }

    let recovered = last_kill + Duration::from_secs(1);
    let mut failures: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for db in [Db::Pg, Db::My] {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.db == db).collect();
        let before = mine.iter().filter(|o| o.started + o.took < first_kill);
        let after: Vec<&&Outcome> = mine.iter().filter(|o| o.started >= recovered).collect();
        for outcome in before {
            assert!(
                matches!(outcome.answer, Ok((200, _))),
                "{db:?} before the kills: {outcome:?}"
            );
        }
        assert!(
            after.len() >= 10,
            "{db:?}: only {} requests after the recovery second",
            after.len()
        );
        for outcome in &after {
            assert!(
                matches!(outcome.answer, Ok((200, _))),
                "{db:?}: a request started a second after the last kill failed: {outcome:?}"
            );
        }
        for outcome in &mine {
            assert!(outcome.took < HANG, "{db:?}: a request hung: {outcome:?}");
            match &outcome.answer {
                Ok((200, body)) => assert_eq!(body["row_count"], 1, "{db:?}: {body}"),
                Ok((status, body)) => {
                    let code = body["error"]["code"].as_str().unwrap_or_default();
                    *failures.entry((*status, code.to_string())).or_default() += 1;
                    assert!(
                        matches!(
                            (status, code),
                            (503, "datasource_unavailable") | (502, "query_failed")
                        ),
                        "{db:?}: not a clean 5xx for a killed backend: {status} {body}"
                    );
                    assert!(body["error"]["request_id"].is_string(), "{body}");
                }
                Err(error) => panic!("{db:?}: {error}"),
            }
        }
    }
    eprintln!(
        "backend kills: {} requests; failed during the kills: {failures:?}",
        outcomes.len()
    );
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}
