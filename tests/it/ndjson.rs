//! The view endpoint's NDJSON answer (`Accept: application/x-ndjson`) through a real socket
//! against real PostgreSQL, MariaDB and SQLite: its lines, the same lossless values as the
//! JSON answer, rows delivered as produced, and an error after the first line in the final
//! line.

use std::time::{Duration, Instant};

use crate::common;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

const NDJSON: &str = "application/x-ndjson";

fn catalog(schema: &str) -> String {
    format!(
        r#"
datasources:
{pg}
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      values:
        datasource: pg
        sql: |
          SELECT 9007199254740993::int8 AS big, 12.50::numeric(6,2) AS price,
                 E'a,"b"]\n'::text AS t, '{{"k": [1, 2]}}'::jsonb AS j, NULL::int4 AS nothing
      slow:
        datasource: pg
        sql: SELECT g, pg_sleep(0.3)::text AS slept FROM generate_series(1, 5) g
        timeout_ms: 10000
      fails_midway:
        datasource: pg
        sql: SELECT g, 10 / (3 - g) AS x FROM generate_series(1, 5) g
      capped:
        datasource: pg
        sql: SELECT g FROM generate_series(1, 10) g
        max_rows: 4
      add:
        datasource: pg
        sql: INSERT INTO {schema}.t (n) VALUES ({{{{ params.n }}}})
        params:
          n: {{ type: int, required: true }}
"#,
        pg = pg_datasource_yaml("pg").trim_end(),
    )
}

async fn gateway() -> (TestGateway, tokio_postgres::Client, PgSchema) {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    admin
        .batch_execute(&format!("CREATE TABLE {}.t (n int NOT NULL)", schema.name))
        .await
        .unwrap();
    let gateway = TestGateway::start(&catalog(&schema.name)).await;
    (gateway, admin, schema)
}

/// POSTs with `Accept: application/x-ndjson`; the response, not yet read.
async fn post(gateway: &TestGateway, query: &str, params: Value) -> reqwest::Response {
    gateway
        .client
        .post(gateway.url(&format!("/v1/apps/shop/queries/{query}")))
        .header("accept", NDJSON)
        .json(&json!({ "params": params }))
        .send()
        .await
        .expect("request")
}

/// Every line of a response as JSON, each with when it arrived (since `sent`).
async fn lines(response: reqwest::Response, sent: Instant) -> Vec<(Value, Duration)> {
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.expect("body chunk"));
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let value = serde_json::from_slice(&line[..line.len() - 1]).unwrap_or_else(|e| {
                panic!("not a JSON line ({e}): {}", String::from_utf8_lossy(&line))
            });
            out.push((value, sent.elapsed()));
        }
    }
    assert!(
        pending.is_empty(),
        "the body ends with a newline: {pending:?}"
    );
    out
}

fn values(lines: &[(Value, Duration)]) -> Vec<Value> {
    lines.iter().map(|(value, _)| value.clone()).collect()
}

#[tokio::test]
async fn lines_are_columns_rows_and_a_summary_with_the_json_answers_values() {
    let (gateway, admin, schema) = gateway().await;
    let response = post(&gateway, "values", json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], NDJSON);
    let got = values(&lines(response, Instant::now()).await);
    assert_eq!(got.len(), 3, "{got:?}");
    // The rows line holds exactly what the JSON answer's `rows` holds.
    let (status, json_answer) = gateway.call("shop", "values", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(got[0], json!({"columns": json_answer["columns"]}));
    assert_eq!(got[1], json_answer["rows"][0]);
    assert_eq!(
        got[1],
        json!(["9007199254740993", "12.50", "a,\"b\"]\n", {"k": [1, 2]}, null])
    );
    assert_eq!(got[2], json!({"row_count": 1, "truncated": false}));

    // A capped result says so; a write says how many rows changed.
    let got = values(&lines(post(&gateway, "capped", json!({})).await, Instant::now()).await);
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[1..5], [json!([1]), json!([2]), json!([3]), json!([4])]);
    assert_eq!(got[5], json!({"row_count": 4, "truncated": true}));
    let got = values(&lines(post(&gateway, "add", json!({"n": 7})).await, Instant::now()).await);
    assert_eq!(
        got,
        [
            json!({"columns": []}),
            json!({"row_count": 0, "truncated": false, "rows_affected": 1})
        ]
    );
    schema.drop(&admin).await;
}

/// Five rows 0.3 s apart: the first arrives long before the last is produced.
#[tokio::test]
async fn rows_arrive_as_the_database_produces_them() {
    let (gateway, admin, schema) = gateway().await;
    let sent = Instant::now();
    let response = post(&gateway, "slow", json!({})).await;
    assert_eq!(response.status(), 200);
    let got = lines(response, sent).await;
    assert_eq!(got.len(), 7, "{got:?}");
    let first_row = got[1].1;
    let last_row = got[5].1;
    assert_eq!(got[1].0[0], 1);
    assert_eq!(got[5].0[0], 5);
    assert_eq!(got[6].0, json!({"row_count": 5, "truncated": false}));
    // The query takes 1.5 s; its last row comes 1.2 s of sleeps after its first. A buffered
    // answer would deliver all rows together.
    assert!(
        last_row >= first_row + Duration::from_millis(900),
        "first row at {first_row:?}, last at {last_row:?}"
    );
    schema.drop(&admin).await;
}

#[tokio::test]
async fn an_error_after_the_first_line_is_the_final_line() {
    let (gateway, admin, schema) = gateway().await;
    let response = post(&gateway, "fails_midway", json!({})).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let got = values(&lines(response, Instant::now()).await);
    // Rows 1 and 2 (10 / 2, 10 / 1), then division by zero at row 3.
    assert_eq!(got[1..3], [json!([1, 5]), json!([2, 10])], "{got:?}");
    let last = got.last().unwrap();
    assert_eq!(last["row_count"], 2, "{last}");
    assert_eq!(last["error"]["code"], "invalid_data", "{last}");
    assert_eq!(last["error"]["request_id"], request_id.as_str());
    assert_eq!(got.len(), 4, "{got:?}");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn errors_before_the_first_line_keep_their_status_and_json_body() {
    let (gateway, admin, schema) = gateway().await;
    let response = post(&gateway, "add", json!({"n": "seven"})).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_params");
    assert_eq!(body["error"]["param"], "n");
    // Without the Accept header, the same query answers JSON.
    let (status, body) = gateway.call("shop", "capped", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["row_count"], 4);
    schema.drop(&admin).await;
}

/// MariaDB and SQLite stream the same lines.
#[tokio::test]
async fn mysql_and_sqlite_answer_lines_too() {
    let mut conn = mysql_admin().await;
    let database = MyDatabase::create(&mut conn).await;
    let directory = tempfile::tempdir().unwrap();
    let sqlite = directory.path().join("t.db");
    rusqlite::Connection::open(&sqlite).unwrap();
    let catalog = format!(
        r#"
datasources:
{my}
  lite:
    kind: sqlite
    path: {path}
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      my:
        datasource: my
        sql: SELECT CAST(9007199254740993 AS SIGNED) AS big, 'x,]' AS t UNION ALL SELECT 2, 'y'
      lite:
        datasource: lite
        sql: SELECT 1 AS n, 'x,]' AS t UNION ALL SELECT 2, 'y'
"#,
        my = mysql_datasource_yaml("my", &database.name).trim_end(),
        path = sqlite.display(),
    );
    let gateway = TestGateway::start(&catalog).await;
    for (query, first) in [
        ("my", json!(["9007199254740993", "x,]"])),
        ("lite", json!([1, "x,]"])),
    ] {
        let response = post(&gateway, query, json!({})).await;
        assert_eq!(response.status(), 200, "{query}");
        let got = values(&lines(response, Instant::now()).await);
        assert_eq!(got.len(), 4, "{query}: {got:?}");
        assert_eq!(got[1], first, "{query}");
        assert_eq!(got[2][1], "y", "{query}");
        assert_eq!(got[3], json!({"row_count": 2, "truncated": false}));
    }
    database.drop(&mut conn).await;
}
