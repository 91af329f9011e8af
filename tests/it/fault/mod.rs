//! The fault suite (issue #11): what the gateway does when its databases, its clients or its
//! own process misbehave, against the real local PostgreSQL and MariaDB (required: the
//! suite fails, never skips, without them).
//!
//! - `timeout`: a statement that outlives its `timeout_ms` is answered 504 `query_timeout`,
//!   is gone from the server promptly, and the datasource serves the next request.
//! - `pool`: more concurrent statements than `pool_size` answer 503 `datasource_busy` with
//!   `Retry-After: 1` after `pool_wait_ms`, not a hang; idle MariaDB connections are reused.
//!
//! Run it alone with `cargo test --locked --test it fault::` (about ten seconds on two
//! cores). Each test names its statements with a marker of its own (and MariaDB tests use a
//! database of their own), so the suites running alongside are never touched.

mod pool;
mod timeout;

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::common::*;

/// A PostgreSQL datasource `pg` and a MariaDB datasource `my` (working in `my_database`),
/// each with `pool_size` connections and the default pool wait, serving `queries` (YAML
/// lines for the `queries:` map of the public app `f`, indented six spaces).
fn catalog(my_database: &str, pool_size: usize, queries: &str) -> String {
    catalog_with_waits(my_database, pool_size, None, None, queries)
}

/// [`catalog`], with `pool_wait_ms` set on `pg` and `my` where given.
fn catalog_with_waits(
    my_database: &str,
    pool_size: usize,
    pg_wait_ms: Option<u64>,
    my_wait_ms: Option<u64>,
    queries: &str,
) -> String {
    let wait = |ms: Option<u64>| {
        ms.map(|ms| format!("    pool_wait_ms: {ms}\n"))
            .unwrap_or_default()
    };
    format!(
        "datasources:\n\
         \x20 pg:\n    kind: postgres\n    host: {PG_HOST}\n    port: {PG_PORT}\n    database: test\n    user: postgres\n    password: {pg_password}\n    pool_size: {pool_size}\n{pg_wait}    egress_allow: [127.0.0.1/32]\n\
         \x20 my:\n    kind: mysql\n    host: 127.0.0.1\n    port: 3306\n    database: {my_database}\n    user: root\n    pool_size: {pool_size}\n{my_wait}    egress_allow: [127.0.0.1/32]\n\
         apps:\n  f:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n{queries}",
        pg_password = seal("pg", "password", "unused-with-trust-auth"),
        pg_wait = wait(pg_wait_ms),
        my_wait = wait(my_wait_ms),
    )
}

/// PostgreSQL backends (other than the asking one) running a statement that contains
/// `marker`.
async fn pg_running(admin: &tokio_postgres::Client, marker: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .expect("read pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// MariaDB connections (other than the asking one) running a statement that contains
/// `marker`.
async fn my_running(admin: &mut mysql_async::Conn, marker: &str) -> Vec<u64> {
    admin
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
            (marker,),
        )
        .await
        .expect("read the processlist")
}

/// Which database a test drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Pg,
    My,
}

/// Both admin connections, to watch and kill what the gateway runs.
struct Admins {
    pg: tokio_postgres::Client,
    my: mysql_async::Conn,
}

impl Admins {
    async fn connect() -> Admins {
        Admins {
            pg: pg_admin().await,
            my: mysql_admin().await,
        }
    }

    /// Sessions running a statement that contains `marker`.
    async fn running(&mut self, db: Db, marker: &str) -> usize {
        match db {
            Db::Pg => pg_running(&self.pg, marker).await.len(),
            Db::My => my_running(&mut self.my, marker).await.len(),
        }
    }

    /// Waits until a statement containing `marker` runs; panics after `limit`.
    async fn wait_running(&mut self, db: Db, marker: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.running(db, marker).await == 0 {
            assert!(
                Instant::now() < deadline,
                "{db:?}: the statement `{marker}` was not seen running within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether `count` statements containing `marker` run at once, within `limit`.
    async fn wait_count(&mut self, db: Db, marker: &str, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.running(db, marker).await == count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether no statement containing `marker` runs any more, within `limit`.
    async fn gone_within(&mut self, db: Db, marker: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.running(db, marker).await == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A quick call that must succeed: the datasource serves after whatever the test did.
async fn assert_serves(gateway: &TestGateway, query: &str, limit: Duration, what: &str) {
    let started = Instant::now();
    let (status, body) = gateway.call("f", query, serde_json::json!({})).await;
    assert_eq!(status, 200, "{what}: {body}");
    assert!(
        started.elapsed() < limit,
        "{what}: the next request took {:?}",
        started.elapsed()
    );
}
