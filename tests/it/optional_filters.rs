//! The optional-filter pattern of docs/CATALOG.md on PostgreSQL, and what the server log says
//! when a query fails.
//!
//! `({{ params.status }} IS NULL OR status = {{ params.status }})` renders `$1 IS NULL OR
//! status = $2`: PostgreSQL cannot type `$1` from `IS NULL` and refuses the statement
//! (SQLSTATE 42P18). The driver then prepares it again with the params' declared types. A
//! text param compared with an enum column must keep working (PostgreSQL types that
//! placeholder from the column; a declared `text` up front would refuse `enum = text`). A
//! failing query logs its SQLSTATE and what it means on the line with the request id.

use serde_json::{Value, json};

use crate::common::served::{Served, apply_catalog, sluice_with_test_key};
use crate::common::*;

fn catalog(schema: &str) -> String {
    format!(
        r#"
datasources:
  pg:
    kind: postgres
    host: {PG_HOST}
    port: {PG_PORT}
    database: test
    user: postgres
    pool_size: 2
    egress_allow: [127.0.0.1/32]
apps:
  f:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      by_status:
        datasource: pg
        sql: |
          SELECT id FROM {schema}.orders
          WHERE ({{{{ params.status }}}} IS NULL OR status = {{{{ params.status }}}})
            AND ({{{{ params.min_total }}}} IS NULL OR total >= {{{{ params.min_total }}}})
            AND ({{{{ params.since }}}} IS NULL OR placed >= {{{{ params.since }}}})
            AND ({{{{ params.ids }}}} IS NULL OR id = ANY({{{{ params.ids }}}}))
          ORDER BY id
        params:
          status: {{ type: text, nullable: true }}
          min_total: {{ type: numeric }}
          since: {{ type: timestamp }}
          ids: {{ type: "array<int>" }}
      by_mood:
        datasource: pg
        sql: SELECT id FROM {schema}.orders WHERE mood = {{{{ params.mood }}}} ORDER BY id
        params:
          mood: {{ type: text, required: true }}
      missing_table:
        datasource: pg
        sql: SELECT id FROM {schema}.no_such_table
"#
    )
}

fn ids(body: &Value) -> Vec<i64> {
    body["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("rows in {body}"))
        .iter()
        .map(|row| row[0].as_i64().expect("an id"))
        .collect()
}

#[tokio::test]
async fn optional_filters_work_on_postgresql_and_enum_columns_still_match_text_params() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    admin
        .batch_execute(&format!(
            "CREATE TYPE {s}.mood AS ENUM ('happy', 'sad');
             CREATE TABLE {s}.orders (id int PRIMARY KEY, status text, total numeric(10,2),
                                      placed timestamptz, mood {s}.mood);
             INSERT INTO {s}.orders VALUES
               (1, 'paid', 10.00, '2026-01-01T00:00:00Z', 'happy'),
               (2, 'new', 25.50, '2026-02-01T00:00:00Z', 'sad'),
               (3, 'paid', 99.90, '2026-03-01T00:00:00Z', 'happy');"
        ))
        .await
        .expect("create the orders table");
    let gateway = TestGateway::start(&catalog(s)).await;

    let cases = [
        (json!({}), vec![1, 2, 3]),
        (json!({"status": "paid"}), vec![1, 3]),
        (json!({"status": null}), vec![1, 2, 3]),
        (json!({"min_total": "25.5"}), vec![2, 3]),
        (json!({"status": "paid", "min_total": 50}), vec![3]),
        (json!({"since": "2026-02-01T00:00:00Z"}), vec![2, 3]),
        (json!({"ids": [1, 2]}), vec![1, 2]),
        // An injection attempt through the optional filter is data, as everywhere.
        (json!({"status": "paid' OR '1'='1"}), vec![]),
    ];
    for (params, want) in cases {
        let (status, body) = gateway.call("f", "by_status", params.clone()).await;
        assert_eq!(status, 200, "{params}: {body}");
        assert_eq!(ids(&body), want, "{params}: {body}");
    }

    let (status, body) = gateway.call("f", "by_mood", json!({"mood": "happy"})).await;
    assert_eq!(status, 200, "a text param against an enum column: {body}");
    assert_eq!(ids(&body), vec![1, 3]);

    gateway.stop().await;
    schema.drop(&admin).await;
}

#[tokio::test]
async fn a_failed_query_logs_its_sqlstate_and_meaning_with_the_request_id() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    apply_catalog(dir.path(), &catalog(&schema.name));
    let mut server = Served::start(
        sluice_with_test_key(dir.path(), &["serve"]).env("SLUICE_LOG_FORMAT", "json"),
    )
    .await;
    let response = server
        .client
        .post(server.url("/v1/apps/f/queries/missing_table"))
        .header("content-type", "application/json")
        .body(r#"{"params": {}}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 502);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "query_failed", "{body}");
    let request_id = body["error"]["request_id"]
        .as_str()
        .expect("a request id")
        .to_string();
    server
        .wait_log("Query failed", 1, std::time::Duration::from_secs(5))
        .await;

    let output = server.output();
    let line = output
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "Query failed")
        .unwrap_or_else(|| panic!("no 'Query failed' line in:\n{output}"));
    // JSON lines carry the event's fields at the top level.
    let fields = &line;
    assert_eq!(fields["request_id"], request_id.as_str(), "{line}");
    assert_eq!(fields["db_code"], "42P01", "{line}");
    assert!(
        fields["meaning"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{line}"
    );
    assert!(server.is_running());
    schema.drop(&admin).await;
}
