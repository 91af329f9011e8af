//! The view endpoint end to end through a real socket, against real PostgreSQL and MariaDB:
//! response shape, streaming, writes, limits, and every refusal as a JSON error.

use crate::common;

use common::*;
use serde_json::json;

/// A PostgreSQL-backed gateway over a fresh schema with an `orders` table.
async fn pg_gateway() -> (TestGateway, tokio_postgres::Client, PgSchema) {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {s}.orders (id bigserial PRIMARY KEY, customer int NOT NULL, \
             status text NOT NULL CHECK (status <> 'bad'), total numeric(10,2) NOT NULL, \
             note text UNIQUE);
             INSERT INTO {s}.orders (customer, status, total)
               SELECT g % 10, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END, g * 1.5
               FROM generate_series(1, 50) g;"
        ))
        .await
        .unwrap();
    let catalog = r#"
datasources:
DATASOURCES
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      orders:
        datasource: pg
        sql: SELECT id, status, total FROM S.orders WHERE customer = {{ params.customer }} AND status = {{ params.status }} ORDER BY id
        params:
          customer: { type: int, required: true }
          status: { type: text, enum: [new, paid], default: paid }
      all:
        datasource: pg
        sql: SELECT id FROM S.orders ORDER BY id
        max_rows: 7
      add:
        datasource: pg
        sql: INSERT INTO S.orders (customer, status, total, note) VALUES ({{ params.customer }}, {{ params.status }}, {{ params.total }}, {{ params.note }})
        params:
          customer: { type: int, required: true }
          status: { type: text, required: true }
          total: { type: numeric, required: true }
          note: { type: text }
      slow:
        datasource: pg
        sql: SELECT pg_sleep(5)::text AS slept
        timeout_ms: 300
      mine:
        datasource: pg
        sql: SELECT id FROM S.orders WHERE customer::text = {{ user.id }}
      broken:
        datasource: pg
        sql: SELECT id FROM S.no_such_table
      money:
        datasource: pg
        sql: SELECT 1::money AS m
      nap:
        datasource: pg
        sql: SELECT pg_sleep(0) AS slept
      many:
        datasource: pg
        sql: SELECT g AS n FROM generate_series(1, {{ params.count }}) g
        params:
          count: { type: int, required: true, min: 1, max: 1000000 }
        max_rows: 1000000
      fails_midway:
        datasource: pg
        sql: SELECT 100 / (g - 60000) AS x FROM generate_series(1, 100000) g
        max_rows: 1000000
  staff:
    visibility: workspace
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
  secret_app:
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
"#
    .replace("DATASOURCES", pg_datasource_yaml("pg").trim_end())
    .replace("S.", &format!("{s}."));
    let gateway = TestGateway::start(&catalog).await;
    (gateway, admin, schema)
}

#[tokio::test]
async fn point_query_returns_columns_rows_and_count() {
    let (gateway, admin, schema) = pg_gateway().await;
    let (status, body) = gateway.call("shop", "orders", json!({"customer": 4})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["columns"],
        json!([{"name": "id", "type": "int8"}, {"name": "status", "type": "text"}, {"name": "total", "type": "numeric"}])
    );
    assert_eq!(
        body["rows"],
        json!([
            ["4", "paid", "6.00"],
            ["14", "paid", "21.00"],
            ["24", "paid", "36.00"],
            ["34", "paid", "51.00"],
            ["44", "paid", "66.00"]
        ])
    );
    assert_eq!(body["row_count"], 5);
    assert!(body.get("truncated").is_none());
    assert!(body.get("error").is_none());
    schema.drop(&admin).await;
}

#[tokio::test]
async fn void_results_are_null() {
    let (gateway, admin, schema) = pg_gateway().await;
    let (status, body) = gateway.call("shop", "nap", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"], json!([{"name": "slept", "type": "void"}]));
    assert_eq!(body["rows"], json!([[null]]));
    schema.drop(&admin).await;
}

#[tokio::test]
async fn max_rows_truncates_and_says_so() {
    let (gateway, admin, schema) = pg_gateway().await;
    let (status, body) = gateway.call("shop", "all", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["row_count"], 7);
    assert_eq!(body["rows"].as_array().unwrap().len(), 7);
    assert_eq!(body["truncated"], true);
    schema.drop(&admin).await;
}

#[tokio::test]
async fn writes_report_rows_affected_and_constraints_are_409() {
    let (gateway, admin, schema) = pg_gateway().await;
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 99, "status": "new", "total": "12.34", "note": "n1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_affected"], 1);
    assert_eq!(body["row_count"], 0);
    let stored: rust_decimal_free::Text = rust_decimal_free::fetch(
        &admin,
        &format!(
            "SELECT total::text FROM {}.orders WHERE customer = 99",
            schema.name
        ),
    )
    .await;
    assert_eq!(stored.0, "12.34");

    // Unique violation: a 409 that names the constraint kind, never the value.
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 98, "status": "new", "total": 1, "note": "n1"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "constraint_violation");
    assert!(!body.to_string().contains("n1"), "{body}");
    // Check violation.
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 98, "status": "bad", "total": 1}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // Value out of range for numeric(10,2): the database refuses it, 400.
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 98, "status": "new", "total": "123456789012.5"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_data");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn refusals_are_json_errors_naming_what_was_wrong() {
    let (gateway, admin, schema) = pg_gateway().await;
    // (app, query, body, status, error code, param named)
    type Case<'a> = (&'a str, &'a str, &'a str, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("nope", "orders", r#"{"params":{}}"#, 404, "not_found", None),
        ("shop", "nope", r#"{"params":{}}"#, 404, "not_found", None),
        (
            "secret_app",
            "q",
            r#"{"params":{}}"#,
            404,
            "not_found",
            None,
        ),
        (
            "staff",
            "q",
            r#"{"params":{}}"#,
            401,
            "unauthenticated",
            None,
        ),
        (
            "shop",
            "mine",
            r#"{"params":{}}"#,
            401,
            "unauthenticated",
            None,
        ),
        (
            "shop",
            "orders",
            r#"{"params":{"customer":1,"extra":2}}"#,
            400,
            "invalid_params",
            Some("extra"),
        ),
        (
            "shop",
            "orders",
            r#"{"params":{"customer":"one"}}"#,
            400,
            "invalid_params",
            Some("customer"),
        ),
        (
            "shop",
            "orders",
            r#"{"params":{}}"#,
            400,
            "invalid_params",
            Some("customer"),
        ),
        (
            "shop",
            "orders",
            r#"{"params":{"customer":1,"status":"shipped"}}"#,
            400,
            "invalid_params",
            Some("status"),
        ),
        (
            "shop",
            "orders",
            r#"{"params":{"customer":1"#,
            400,
            "invalid_json",
            None,
        ),
        (
            "shop",
            "orders",
            r#"{"param":{"customer":1}}"#,
            400,
            "invalid_json",
            None,
        ),
        ("shop", "orders", r#"[1,2]"#, 400, "invalid_json", None),
        (
            "shop",
            "orders",
            r#"{"params":"x"}"#,
            400,
            "invalid_json",
            None,
        ),
        ("shop", "broken", r#"{}"#, 502, "query_failed", None),
        (
            "shop",
            "money",
            r#"{}"#,
            500,
            "unsupported_column_type",
            None,
        ),
        ("shop", "slow", r#"{}"#, 504, "query_timeout", None),
    ];
    for (app, query, body, status, code, param) in cases {
        let (got, headers, text) = gateway.post_raw(app, query, body).await;
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{app}/{query} {body}: not JSON ({e}): {text}"));
        assert_eq!(got, status, "{app}/{query} {body}: {text}");
        assert_eq!(json["error"]["code"], code, "{app}/{query} {body}: {text}");
        let request_id = headers["x-request-id"].to_str().unwrap();
        assert_eq!(json["error"]["request_id"], request_id);
        assert_eq!(headers["content-type"], "application/json");
        if let Some(param) = param {
            assert_eq!(json["error"]["param"], param, "{text}");
            assert!(json["error"]["message"].as_str().unwrap().contains(param));
        }
        // The view plane never shows SQL text or where the datasource is.
        for forbidden in [
            "SELECT",
            "INSERT",
            &schema.name,
            "127.0.0.1",
            "5432",
            "no_such_table",
        ] {
            assert!(
                !text.contains(forbidden),
                "{app}/{query}: response leaks {forbidden}: {text}"
            );
        }
    }
    schema.drop(&admin).await;
}

#[tokio::test]
async fn oversize_bodies_and_wrong_media_types_are_refused() {
    let (gateway, admin, schema) = pg_gateway().await;
    let big = format!(r#"{{"params":{{"status":"{}"}}}}"#, "x".repeat(70_000));
    let (status, _, text) = gateway.post_raw("shop", "orders", &big).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("payload_too_large"));

    // Chunked (no Content-Length): the limit still holds while reading.
    let stream = futures_util::stream::iter(
        (0..100).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    let response = gateway
        .client
        .post(gateway.url("/v1/apps/shop/queries/orders"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    let response = gateway
        .client
        .post(gateway.url("/v1/apps/shop/queries/orders"))
        .header("content-type", "text/plain")
        .body(r#"{"params":{"customer":1}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    let response = gateway
        .client
        .get(gateway.url("/v1/apps/shop/queries/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn health_and_readiness() {
    let (gateway, admin, schema) = pg_gateway().await;
    for path in ["/healthz", "/readyz"] {
        let response = gateway.client.get(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let response = gateway
        .client
        .get(gateway.url("/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn mariadb_point_query_and_write() {
    let mut admin = mysql_admin().await;
    let db = MyDatabase::create(&mut admin).await;
    {
        use mysql_async::prelude::Queryable;
        admin
            .query_drop(format!(
                "CREATE TABLE {}.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT NOT NULL, \
                 total DECIMAL(10,2) NOT NULL, note VARCHAR(20) UNIQUE)",
                db.name
            ))
            .await
            .unwrap();
        admin
            .query_drop(format!(
                "INSERT INTO {}.orders (customer, total) VALUES (1, 10.50), (1, 3.25), (2, 7.00)",
                db.name
            ))
            .await
            .unwrap();
    }
    let catalog = r#"
datasources:
DATASOURCES
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      orders:
        datasource: my
        sql: SELECT id, total FROM orders WHERE customer = {{ params.customer }} ORDER BY id
        params:
          customer: { type: int, required: true }
      some:
        datasource: my
        sql: SELECT id FROM orders WHERE id IN ({{ params.ids }}) ORDER BY id
        params:
          ids: { type: 'array<bigint>', required: true }
      add:
        datasource: my
        sql: INSERT INTO orders (customer, total, note) VALUES ({{ params.customer }}, {{ params.total }}, {{ params.note }})
        params:
          customer: { type: int, required: true }
          total: { type: numeric, required: true }
          note: { type: text }
"#
    .replace("DATASOURCES", mysql_datasource_yaml("my", &db.name).trim_end());
    let gateway = TestGateway::start(&catalog).await;
    let (status, body) = gateway.call("shop", "orders", json!({"customer": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["columns"],
        json!([{"name": "id", "type": "bigint"}, {"name": "total", "type": "decimal"}])
    );
    assert_eq!(body["rows"], json!([["1", "10.50"], ["2", "3.25"]]));
    let (status, body) = gateway.call("shop", "some", json!({"ids": [3, "1"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], json!([["1"], ["3"]]));
    let (status, body) = gateway.call("shop", "some", json!({"ids": []})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "ids");
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 3, "total": "1.10", "note": "dup"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows_affected"], 1);
    let (status, body) = gateway
        .call(
            "shop",
            "add",
            json!({"customer": 3, "total": "1.10", "note": "dup"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    db.drop(&mut admin).await;
}

/// Reads one text value with the admin client (kept tiny: tests compare text forms).
mod rust_decimal_free {
    pub struct Text(pub String);

    pub async fn fetch(client: &tokio_postgres::Client, sql: &str) -> Text {
        Text(client.query_one(sql, &[]).await.unwrap().get(0))
    }
}

#[tokio::test]
async fn large_results_stream_in_chunks_and_parse() {
    let (gateway, admin, schema) = pg_gateway().await;
    let response = gateway
        .client
        .post(gateway.url("/v1/apps/shop/queries/many"))
        .json(&json!({"params": {"count": 200000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Streamed: no Content-Length, the body arrives in several chunks.
    assert!(response.headers().get("content-length").is_none());
    let mut chunks = 0;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks > 10, "only {chunks} chunks");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["row_count"], 200000);
    assert_eq!(json["rows"][199999], json!([200000]));
    assert!(json.get("error").is_none());
    schema.drop(&admin).await;
}

#[tokio::test]
async fn a_failure_after_rows_started_ends_the_body_with_an_error_member() {
    let (gateway, admin, schema) = pg_gateway().await;
    let (status, headers, text) = gateway.post_raw("shop", "fails_midway", "{}").await;
    // The status line went out with the first rows; the body still parses and says it is cut.
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&text).expect("a cut body still parses");
    let rows = json["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.len() < 60000,
        "{} rows",
        rows.len()
    );
    assert_eq!(json["error"]["code"], "invalid_data");
    assert_eq!(
        json["error"]["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    assert!(json.get("row_count").is_none());
    schema.drop(&admin).await;
}

/// A client that disconnects mid-query does not leave its statement running on a pooled
/// connection. The PostgreSQL producer is driven by the request's own task; when hyper drops
/// that task's future (the client closed the socket), the producer must still run to its
/// end on its own: its timeout cancels the statement and discards the connection. Were it
/// dropped instead, the connection would go back to the pool (size 1 here) with `pg_sleep`
/// still running, the next request would queue behind it on the server, on the same backend.
///
/// Two moments are covered: the client leaves while the columns are awaited (`hang`: the
/// statement sleeps before its first row) and while the first frame is being gathered
/// (`trickle`: about 16 KiB of rows reach the gateway, then the statement sleeps).
#[tokio::test]
async fn a_client_leaving_mid_query_does_not_leave_the_statement_on_the_pool() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    let admin = pg_admin().await;
    let marker = unique_name("gone");
    let catalog = r#"
datasources:
DATASOURCES
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      hang:
        datasource: pg
        sql: SELECT pg_sleep(10)::text AS slept, 'MARKER_hang' AS marker
        timeout_ms: 2000
      trickle:
        datasource: pg
        sql: SELECT g, CASE WHEN g > 100 THEN pg_sleep(10)::text ELSE repeat('x', 200) END AS pad, 'MARKER_trickle' AS marker FROM generate_series(1, 101) g
        timeout_ms: 2000
      backend:
        datasource: pg
        sql: SELECT pg_backend_pid() AS pid
"#
    .replace(
        "DATASOURCES",
        pg_datasource_yaml("pg")
            .replace("pool_size: 4", "pool_size: 1")
            .trim_end(),
    )
    .replace("MARKER", &marker);
    assert!(catalog.contains("pool_size: 1"));
    let gateway = TestGateway::start(&catalog).await;

    // Statements of this test still executing, with the backend running each.
    let active = |tag: &'static str| {
        let admin = &admin;
        let pattern = format!("%{marker}_{tag}%");
        async move {
            admin
                .query(
                    "SELECT pid, wait_event FROM pg_stat_activity WHERE state = 'active' \
                     AND query LIKE $1 AND pid <> pg_backend_pid()",
                    &[&pattern],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get::<_, i32>(0), row.get::<_, Option<String>>(1)))
                .collect::<Vec<_>>()
        }
    };

    // The pool's one connection, made before the clock starts.
    let (status, body) = gateway.call("shop", "backend", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mut previous_pid = body["rows"][0][0].as_i64().unwrap();

    for tag in ["hang", "trickle"] {
        let started = Instant::now();
        let mut client = tokio::net::TcpStream::connect(gateway.address)
            .await
            .unwrap();
        client
            .write_all(
                format!(
                    "POST /v1/apps/shop/queries/{tag} HTTP/1.1\r\nHost: x\r\n\
                     Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        // Wait for the sleep itself: for `trickle`, the rows before it were sent by then.
        let sleeping_pid = loop {
            let rows = active(tag).await;
            if let Some((pid, _)) = rows
                .iter()
                .find(|(_, wait)| wait.as_deref() == Some("PgSleep"))
            {
                break *pid;
            }
            assert!(
                started.elapsed() < Duration::from_millis(1800),
                "{tag}: the statement was not seen sleeping before its timeout ({rows:?})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            i64::from(sleeping_pid),
            previous_pid,
            "{tag}: the statement runs on the pool's one connection"
        );
        // Give the gateway a moment to take in what the server sent, then leave.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(client);

        // The only connection is freed by the timeout (2 s) with the statement cancelled,
        // not by the sleep's end (10 s); the next request gets a new backend.
        let (status, body) = gateway.call("shop", "backend", json!({})).await;
        assert_eq!(status, 200, "{tag}: {body}");
        let next_pid = body["rows"][0][0].as_i64().unwrap();
        assert_ne!(
            next_pid,
            i64::from(sleeping_pid),
            "{tag}: the next request ran on the backend of the abandoned statement"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{tag}: the next request waited {:?}",
            started.elapsed()
        );
        previous_pid = next_pid;
        let deadline = started + Duration::from_secs(6);
        loop {
            let rows = active(tag).await;
            if rows.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{tag}: the abandoned statement still runs after its timeout: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The pool hands out the connection it got back last: a load lighter than the pool keeps
/// to the same backends (their caches warm) instead of waking every idle one in turn.
#[tokio::test]
async fn the_pool_hands_out_the_connection_used_last() {
    let catalog = r#"
datasources:
DATASOURCES
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      hold:
        datasource: pg
        sql: SELECT pg_backend_pid() AS pid, pg_sleep(0.3)::text AS slept
      backend:
        datasource: pg
        sql: SELECT pg_backend_pid() AS pid
"#
    .replace("DATASOURCES", pg_datasource_yaml("pg").trim_end());
    assert!(catalog.contains("pool_size: 4"));
    let gateway = TestGateway::start(&catalog).await;
    // Three statements at once open three connections.
    let held =
        futures_util::future::join_all((0..3).map(|_| gateway.call("shop", "hold", json!({}))))
            .await;
    let mut opened = std::collections::HashSet::new();
    for (status, body) in &held {
        assert_eq!(*status, 200, "{body}");
        opened.insert(body["rows"][0][0].as_i64().unwrap());
    }
    assert_eq!(opened.len(), 3, "three connections: {opened:?}");
    // One at a time, the statements keep to one of them.
    let mut used = std::collections::HashSet::new();
    for _ in 0..6 {
        let (status, body) = gateway.call("shop", "backend", json!({})).await;
        assert_eq!(status, 200, "{body}");
        used.insert(body["rows"][0][0].as_i64().unwrap());
    }
    assert_eq!(used.len(), 1, "one backend served them all: {used:?}");
    assert!(opened.is_superset(&used));
}
