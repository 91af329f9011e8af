//! Helpers shared by the `tests/edge_*.rs` suites: requests with headers chosen by the test
//! (the connection always comes from 127.0.0.1, so a forwarded address is only a header), a
//! PostgreSQL table that counts how often the datasource really ran a query, and the
//! security-header checks.
//!
//! Suites use it as `crate::edge_common`.

#![allow(dead_code)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::auth_common::{Browser, Reply};
use crate::common::{PgSchema, TestGateway, pg_admin, pg_datasource_yaml};

/// The baseline Content-Security-Policy of API answers.
pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// A table in a fresh schema with one row per run of a counting query, tagged per query: a
/// refusal that reached the datasource would leave a row.
pub struct Counter {
    schema: PgSchema,
    client: tokio_postgres::Client,
}

impl Counter {
    pub async fn create() -> Counter {
        let client = pg_admin().await;
        let schema = PgSchema::create(&client).await;
        client
            .batch_execute(&format!(
                "CREATE TABLE {}.calls (id bigserial PRIMARY KEY, tag text NOT NULL)",
                schema.name
            ))
            .await
            .expect("create the counting table");
        Counter { schema, client }
    }

    /// SQL that records one run under `tag` (fixed text: the tag is the test's, not input).
    pub fn sql(&self, tag: &str) -> String {
        format!(
            "INSERT INTO {}.calls (tag) VALUES ('{tag}') RETURNING id",
            self.schema.name
        )
    }

    /// A query entry (YAML, indented for `queries:` of an app) running [`Counter::sql`].
    pub fn query(&self, name: &str, tag: &str) -> String {
        format!(
            "      {name}:\n        datasource: pg\n        sql: \"{}\"\n",
            self.sql(tag)
        )
    }

    /// How many times the datasource ran queries tagged `tag`.
    pub async fn count(&self, tag: &str) -> i64 {
        self.client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.calls WHERE tag = $1",
                    self.schema.name
                ),
                &[&tag],
            )
            .await
            .expect("count runs")
            .get(0)
    }

    pub async fn drop(self) {
        self.schema.drop(&self.client).await;
    }
}

/// The `datasources:` section every edge catalog uses: `pg`, the local PostgreSQL.
pub fn datasources() -> String {
    format!("datasources:\n{}", pg_datasource_yaml("pg"))
}

/// Sends `method path` with exactly these headers (plus what reqwest always sends) and, if
/// given, a JSON body.
pub async fn send(
    gateway: &TestGateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut request = gateway.client.request(method, gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.expect("body"),
    }
}

/// Runs `app/query` with no params and exactly these headers.
pub async fn run(gateway: &TestGateway, app: &str, query: &str, headers: &[(&str, &str)]) -> Reply {
    send(
        gateway,
        Method::POST,
        &format!("/v1/apps/{app}/queries/{query}"),
        headers,
        Some(json!({ "params": {} })),
    )
    .await
}

/// A CORS preflight for a POST to `app/query`.
pub async fn preflight(
    gateway: &TestGateway,
    app: &str,
    query: &str,
    origin: &str,
    method: &str,
    request_headers: &str,
) -> Reply {
    send(
        gateway,
        Method::OPTIONS,
        &format!("/v1/apps/{app}/queries/{query}"),
        &[
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", request_headers),
        ],
        None,
    )
    .await
}

/// One header of a reply, if present and text.
pub fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every value of a header, joined with `, ` (for `Vary`, which may be repeated).
pub fn header_all(reply: &Reply, name: &str) -> String {
    reply
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Signs `email` in and returns its session cookie as a browser sends it back (`name=value`).
pub async fn session_cookie(gateway: &TestGateway, email: &str) -> String {
    let mut browser = Browser::new(gateway);
    browser.login_ok(email).await;
    browser.cookie.expect("a session cookie")
}

/// Signs `email` (a developer or admin) in and creates an API key with `scope`.
pub async fn api_key(gateway: &TestGateway, email: &str, scope: Value) -> String {
    let mut browser = Browser::new(gateway);
    browser.login_ok(email).await;
    let created = browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "edge-test", "scope": scope }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.json()["key"].as_str().expect("key").to_string()
}

/// Asserts the headers every answer carries, whatever its status: nosniff, a referrer
/// policy, a CSP, no caching, a request id, and no HSTS on plain HTTP.
#[track_caller]
pub fn assert_security_headers(what: &str, reply: &Reply) {
    let get = |name: &str| header(reply, name).unwrap_or("");
    assert_eq!(
        get("x-content-type-options"),
        "nosniff",
        "{what}: {:?}",
        reply.headers
    );
    assert!(
        !get("referrer-policy").is_empty(),
        "{what}: {:?}",
        reply.headers
    );
    assert!(
        get("content-security-policy").contains("frame-ancestors"),
        "{what}: {:?}",
        reply.headers
    );
    assert_eq!(
        get("cache-control"),
        "no-store",
        "{what}: {:?}",
        reply.headers
    );
    assert!(
        !get("x-request-id").is_empty(),
        "{what}: {:?}",
        reply.headers
    );
    assert!(
        reply.headers.get("strict-transport-security").is_none(),
        "{what}: HSTS over plain HTTP: {:?}",
        reply.headers
    );
}

/// [`assert_security_headers`] plus the baseline values (no app override, no page CSP).
#[track_caller]
pub fn assert_baseline_headers(what: &str, reply: &Reply) {
    assert_security_headers(what, reply);
    let get = |name: &str| header(reply, name).unwrap_or("");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("content-security-policy"), DEFAULT_CSP, "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
}

/// Asserts an error reply: status, code, a JSON body whose request id is the header's.
#[track_caller]
pub fn assert_error(what: &str, reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (status, code),
        "{what}: {}",
        reply.text
    );
    assert_eq!(
        reply.json()["error"]["request_id"].as_str(),
        header(reply, "x-request-id"),
        "{what}: {}",
        reply.text
    );
}
