//! The bare relay: the least any HTTP gateway must do to serve the point query, as a
//! reference point for the throughput target.
//!
//! It answers `POST` with `{"params": {"customer": n, "status": "s"}}` on any path: it reads
//! the body, parses it with serde_json, runs the prepared point query on one of a fixed set
//! of tokio-postgres connections, and writes the rows as the same JSON shape Sluice answers
//! with. Nothing else: no routing, no catalog, no validation beyond the two fields' types, no
//! authorisation, no limits, no security headers, no logging, no streaming (it collects the
//! 20 rows), no timeout. `total` is cast to text in SQL so that it needs no decimal decoder.
//!
//! It runs inside the bench process on the same tokio runtime settings as Sluice (multi-
//! thread, one worker per core), served by hyper 1 over HTTP/1.1 keep-alive and driven by the
//! same wrk script. Its throughput against the direct client is therefore the ceiling an
//! HTTP gateway reaches on this machine: what Sluice could reach if its own work cost nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

/// The relay's query: the point query with `total` as text.
const RELAY_SQL: &str = "SELECT id, status, total::text, created_at FROM bench_load.orders \
     WHERE customer_id = $1 AND status = $2 ORDER BY created_at DESC LIMIT 20";

const COLUMNS_JSON: &str = r#"[{"name":"id","type":"int8"},{"name":"status","type":"text"},{"name":"total","type":"numeric"},{"name":"created_at","type":"timestamptz"}]"#;

/// A running relay: its address and the PostgreSQL backends serving it.
pub struct Relay {
    pub url: String,
    pub backends: Vec<i32>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A fixed set of connections with their prepared statement; a semaphore hands them out.
struct Connections {
    idle: Mutex<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>>,
    available: Semaphore,
}

impl Connections {
    async fn lease(&self) -> Lease<'_> {
        let permit = self.available.acquire().await.expect("never closed");
        let connection = self
            .idle
            .lock()
            .expect("not poisoned")
            .pop()
            .expect("a permit means an idle connection");
        Lease {
            connections: self,
            connection: Some(connection),
            _permit: permit,
        }
    }
}

/// A connection taken from [`Connections`]; it goes back when the lease drops, also when
/// hyper drops the request mid-query because wrk closed the connection.
struct Lease<'a> {
    connections: &'a Connections,
    connection: Option<(tokio_postgres::Client, tokio_postgres::Statement)>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn client(&self) -> &tokio_postgres::Client {
        &self.connection.as_ref().expect("held until drop").0
    }

    fn statement(&self) -> &tokio_postgres::Statement {
        &self.connection.as_ref().expect("held until drop").1
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.connections
                .idle
                .lock()
                .expect("not poisoned")
                .push(connection);
        }
    }
}

#[derive(serde::Deserialize)]
struct Invocation {
    params: Params,
}

#[derive(serde::Deserialize)]
struct Params {
    customer: i32,
    status: String,
}

/// Starts the relay on a free loopback port with `pool_size` connections.
pub async fn start(pool_size: usize) -> anyhow::Result<Relay> {
    let mut idle = Vec::with_capacity(pool_size);
    let mut backends = Vec::with_capacity(pool_size);
    for _ in 0..pool_size {
        let client = super::pg_connect("sluice_bench_relay").await?;
        let statement = client.prepare(RELAY_SQL).await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        backends.push(pid);
        idle.push((client, statement));
    }
    let connections = Arc::new(Connections {
        idle: Mutex::new(idle),
        available: Semaphore::new(pool_size),
    });
    let listener = tokio::net::TcpListener::bind((super::PG_HOST, 0))
        .await
        .context("binding the relay's port")?;
    let address: SocketAddr = listener.local_addr()?;
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let connections = connections.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let connections = connections.clone();
                    async move { Ok::<_, std::convert::Infallible>(serve(&connections, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Relay {
        url: format!("http://{address}/"),
        backends,
        accept,
    })
}

async fn serve(connections: &Connections, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let Ok(body) = request.into_body().collect().await else {
        return reply(StatusCode::BAD_REQUEST, b"{\"error\":\"body\"}".to_vec());
    };
    let Ok(invocation) = serde_json::from_slice::<Invocation>(&body.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, b"{\"error\":\"params\"}".to_vec());
    };
    let Params { customer, status } = invocation.params;
    let lease = connections.lease().await;
    let result = lease
        .client()
        .query(lease.statement(), &[&customer, &status])
        .await;
    drop(lease);
    let Ok(rows) = result else {
        return reply(StatusCode::BAD_GATEWAY, b"{\"error\":\"query\"}".to_vec());
    };
    let mut out = Vec::with_capacity(256 + rows.len() * 80);
    out.extend_from_slice(b"{\"columns\":");
    out.extend_from_slice(COLUMNS_JSON.as_bytes());
    out.extend_from_slice(b",\"rows\":[");
    for (index, row) in rows.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let id: i64 = row.get(0);
        let status: &str = row.get(1);
        let total: &str = row.get(2);
        let at: chrono::DateTime<chrono::Utc> = row.get(3);
        out.push(b'[');
        out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        out.push(b',');
        serde_json::to_writer(&mut out, status).expect("a string serialises");
        out.extend_from_slice(b",\"");
        out.extend_from_slice(total.as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .as_bytes(),
        );
        out.extend_from_slice(b"\"]");
    }
    out.extend_from_slice(b"],\"row_count\":");
    out.extend_from_slice(itoa::Buffer::new().format(rows.len()).as_bytes());
    out.push(b'}');
    reply(StatusCode::OK, out)
}
