//! The fault suite (issue #11): what the gateway does when its databases, its clients or its
//! own process misbehave, against the real local PostgreSQL and MariaDB (required: the
//! suite fails, never skips, without them).
//!
//! - `backend_kill`: the gateway's backends killed mid-load (`pg_terminate_backend`, MariaDB
//!   `KILL`): clean 5xx JSON errors during the kill, never a hang, and every request served
//!   again within a second.
//! - `timeout`: a statement that outlives its `timeout_ms` is answered 504 `query_timeout`,
//!   is gone from the server promptly, and the datasource serves the next request.
//! - `client_gone`: a client that resets its connection mid-query has its statement
//!   cancelled on the server at once (waiting for the columns, or mid-stream); one that
//!   half-closes is answered, its statement bounded by its timeout.
//! - `pool`: more concurrent statements than `pool_size` answer 503 `datasource_busy` with
//!   `Retry-After: 1` after `pool_wait_ms`, not a hang; idle MariaDB connections are reused.
//! - `shutdown`: SIGTERM under load: in-flight requests finish with 200, new connections are
//!   refused or answered, the process exits 0.
//!
//! Run it alone with `cargo test --locked --test it fault::` (6 to 7 s on two cores). Each test names its statements with a marker of its own (and MariaDB tests use a
//! database of their own), so the suites running alongside are never touched.

mod backend_kill;
mod client_gone;
mod pool;
mod shutdown;
mod timeout;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Opens a connection and sends `POST /v1/apps/f/queries/<query>` with `{}` on it.
async fn send_query(address: SocketAddr, query: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /v1/apps/f/queries/{query} HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
            )
            .as_bytes(),
        )
        .await
        .expect("send the request");
    stream
}

/// One response read off a raw socket: status, head, body (chunked bodies left as sent).
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Reads one `Content-Length` response within `limit`; `None` when the connection closed,
/// failed or stayed silent first.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<Raw> {
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut raw = Raw {
            status,
            head,
            body: String::new(),
        };
        let length: usize = raw.header("content-length")?.parse().ok()?;
        while received.len() < head_end + length {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
        raw.body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
        Some(raw)
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// Resets the connection (`SO_LINGER` 0, then close): what a killed client or an aborted
/// browser request does, and what the gateway can tell from a half-close.
fn reset(stream: TcpStream) {
    stream.set_zero_linger().expect("SO_LINGER 0");
    drop(stream);
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
