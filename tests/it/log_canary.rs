//! Security invariant 2 (docs/SECURITY.md): no payload, credential or token appears in any log line
//! at any level.
//!
//! `sluice serve` runs as a subprocess at `SLUICE_LOG_LEVEL=trace` (once with text logs, once
//! with JSON logs), its stdout and stderr captured to files. Unique canary strings travel
//! through every path that carries a value: a sealed datasource password, text / JSON / array
//! params on PostgreSQL and MariaDB, rows read back, constraint and cast errors whose database
//! message quotes the value, a wrongly typed param, an unknown param name, a malformed body,
//! a query string and credential headers. After `SIGTERM` the captured output must hold the
//! request log lines (so logging really was on) and none of the canaries, nor the instance
//! password, salt or sealed secret (the output includes the audit log's query runs, exported
//! to stdout as JSON lines). The HTTP responses are checked to carry the canaries
//! where rows echo them, so a canary that is missing from the log did pass through the process.

use crate::common;

use common::served::{Served, apply_catalog_with, sluice_with_test_key};
use common::*;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// One canary per path a value can take, each unique to this run. Alphanumeric only, so a
/// log line shows it verbatim whatever escaping its format applies.
struct Canaries {
    list: Vec<(&'static str, String)>,
}

impl Canaries {
    fn new() -> Canaries {
        let labels = [
            "pg_password",
            "pg_text",
            "pg_json",
            "pg_array",
            "pg_row",
            "pg_duplicate",
            "pg_cast",
            "pg_bad_type",
            "param_name",
            "malformed_body",
            "query_string",
            "bearer_token",
            "cookie",
            "my_text",
            "my_json",
            "my_array",
            "my_row",
            "my_duplicate",
            "api_secret",
            "api_bare_secret",
            "api_sql",
            "preview_param",
            "sql_text",
        ];
        let list = labels
            .into_iter()
            .map(|label| (label, format!("CANARY{:016x}", rand::random::<u64>())))
            .collect();
        Canaries { list }
    }

    fn get(&self, label: &str) -> &str {
        &self
            .list
            .iter()
            .find(|(l, _)| *l == label)
            .expect("known canary")
            .1
    }
}

/// POSTs a raw body to a query (with optional extra path suffix and headers).
async fn post(
    server: &Served,
    app_query: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = server
        .client
        .post(server.url(&format!("/v1/apps/canary/queries/{app_query}")))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

async fn call(server: &Served, query: &str, params: Value) -> (u16, String) {
    post(server, query, &json!({ "params": params }).to_string(), &[]).await
}

const CATALOG: &str = r#"
datasources:
  pg:
    kind: postgres
    host: 127.0.0.1
    port: 5432
    database: test
    user: postgres
    password: @PG_PASSWORD@
    pool_size: 2
    egress_allow: [127.0.0.1/32]
@MY_DATASOURCE@
apps:
  canary:
    visibility: public
    grants: { anonymous: true }
    queries:
      pg_text:
        datasource: pg
        sql: SELECT {{ params.t }}::text AS t
        params:
          t: { type: text, required: true }
      pg_json:
        datasource: pg
        sql: SELECT ({{ params.j }}::jsonb) ->> 'k' AS k
        params:
          j: { type: json, required: true }
      pg_array:
        datasource: pg
        sql: SELECT v FROM unnest({{ params.vs }}::text[]) AS u(v)
        params:
          vs: { type: 'array<text>', required: true }
      pg_rows:
        datasource: pg
        sql: SELECT id, v FROM @S@.items ORDER BY id
      pg_add:
        datasource: pg
        sql: INSERT INTO @S@.items (v) VALUES ({{ params.v }})
        params:
          v: { type: text, required: true }
      pg_cast:
        datasource: pg
        sql: SELECT ({{ params.t }}::text)::int AS n
        params:
          t: { type: text, required: true }
      pg_count:
        datasource: pg
        sql: SELECT count(*)::int AS n FROM @S@.items WHERE id > {{ params.n }}
        params:
          n: { type: int, required: true }
      my_text:
        datasource: my
        sql: SELECT CAST({{ params.t }} AS CHAR) AS t
        params:
          t: { type: text, required: true }
      my_json:
        datasource: my
        sql: SELECT JSON_UNQUOTE(JSON_EXTRACT({{ params.j }}, '$.k')) AS k
        params:
          j: { type: json, required: true }
      my_in:
        datasource: my
        sql: SELECT v FROM items WHERE v IN ({{ params.vs }}) ORDER BY id
        params:
          vs: { type: 'array<text>', required: true }
      my_rows:
        datasource: my
        sql: SELECT id, v FROM items ORDER BY id
      my_add:
        datasource: my
        sql: INSERT INTO items (v) VALUES ({{ params.v }})
        params:
          v: { type: text, required: true }
      pg_missing:
        datasource: pg
        sql: SELECT v FROM @S@.@SQL_TEXT@ WHERE v = {{ params.v }}
        params:
          v: { type: text, required: true }
"#;

const ADMIN_TOKEN: &str = "log-canary-admin-token-0123456789abcdef";

/// A 200 answer whose rows carry `canary` (proof the value went through the process).
fn echo_check(status: u16, body: &str, canary: &str) {
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(canary), "{body}");
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
}

/// Runs every canary through a trace-level gateway logging in `format`, then checks the
/// captured output.
async fn canaries_stay_out_of_the_log(format: &str) {
    let canaries = Canaries::new();
    let c = |label: &str| canaries.get(label).to_string();

    // Tables holding canary rows, with a unique column for the duplicate-key errors.
    let pg = pg_admin().await;
    let schema = PgSchema::create(&pg).await;
    pg.batch_execute(&format!(
        "CREATE TABLE {}.items (id serial PRIMARY KEY, v text NOT NULL UNIQUE)",
        schema.name
    ))
    .await
    .unwrap();
    pg.execute(
        &format!("INSERT INTO {}.items (v) VALUES ($1), ($2)", schema.name),
        &[&c("pg_row"), &c("pg_duplicate")],
    )
    .await
    .unwrap();
    let mut my = mysql_admin().await;
    let database = MyDatabase::create(&mut my).await;
    my.query_drop(format!(
        "CREATE TABLE {}.items (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL UNIQUE)",
        database.name
    ))
    .await
    .unwrap();
    my.exec_drop(
        format!("INSERT INTO {}.items (v) VALUES (?), (?)", database.name),
        (c("my_row"), c("my_duplicate")),
    )
    .await
    .unwrap();

    let sealed_password = seal("pg", "password", &c("pg_password"));
    let catalog = CATALOG
        .replace("@PG_PASSWORD@", &sealed_password)
        .replace(
            "@MY_DATASOURCE@",
            mysql_datasource_yaml("my", &database.name).trim_end(),
        )
        .replace("@S@", &schema.name)
        .replace("@SQL_TEXT@", &c("sql_text"));
    let dir = tempfile::tempdir().unwrap();
    // Anonymous writes on a public app on purpose (every path a canary may take): past the
    // publish-time scan, which has its own tests (tests/it/cli.rs, catalog_api.rs).
    let applied = apply_catalog_with(dir.path(), &catalog, &["--force"]);

    let mut server = Served::start(
        sluice_with_test_key(dir.path(), &["serve"])
            .env("SLUICE_LOG_LEVEL", "trace")
            .env("SLUICE_LOG_FORMAT", format)
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            // Every query run in the audit log, copied as JSON lines to stdout: the
            // captured output below covers the audit export too.
            .env("SLUICE_AUDIT_QUERY_RUNS", "true")
            .env("SLUICE_AUDIT_EXPORT", "stdout"),
    )
    .await;

    // --- Values that must come back in the response (proof they went through). ---
    let echoed = |label: &'static str, status: u16, body: String| {
        assert_eq!(status, 200, "{label}: {body}");
        assert!(
            body.contains(canaries.get(label)),
            "{label}: the canary should come back in the rows: {body}"
        );
        assert!(parse(&body).get("error").is_none(), "{label}: {body}");
    };
    let (status, body) = call(&server, "pg_text", json!({"t": c("pg_text")})).await;
    echoed("pg_text", status, body);
    let (status, body) = call(
        &server,
        "pg_json",
        json!({"j": {"k": c("pg_json"), "nested": [c("pg_json")]}}),
    )
    .await;
    echoed("pg_json", status, body);
    let (status, body) = call(
        &server,
        "pg_array",
        json!({"vs": ["a", c("pg_array"), "b"]}),
    )
    .await;
    echoed("pg_array", status, body);
    let (status, body) = call(&server, "pg_rows", json!({})).await;
    echoed("pg_row", status, body.clone());
    echoed("pg_duplicate", status, body);
    let (status, body) = call(&server, "my_text", json!({"t": c("my_text")})).await;
    echoed("my_text", status, body);
    let (status, body) = call(&server, "my_json", json!({"j": {"k": c("my_json")}})).await;
    echoed("my_json", status, body);
    let (status, body) = call(
        &server,
        "my_in",
        json!({"vs": [c("my_array"), c("my_row")]}),
    )
    .await;
    echoed("my_row", status, body);
    let (status, body) = call(&server, "my_rows", json!({})).await;
    echoed("my_row", status, body.clone());
    echoed("my_duplicate", status, body);
    // A query string and a (stale) session cookie on a request that succeeds.
    let (status, body) = post(
        &server,
        &format!("pg_text?token={}", c("query_string")),
        r#"{"params":{"t":"plain"}}"#,
        &[
            ("cookie", &format!("sluice_session={}", c("cookie"))),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A bearer that is not a live key, on the same query: refused, and not logged.
    let (status, body) = post(
        &server,
        &format!("pg_text?token={}", c("query_string")),
        r#"{"params":{"t":"plain"}}"#,
        &[("authorization", &format!("Bearer {}", c("bearer_token")))],
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // --- Refusals: the canary is in the request or in the database's own message. ---
    // (label, query, raw body, status, error code)
    let refusals = [
        (
            "pg_duplicate",
            "pg_add",
            json!({"params": {"v": c("pg_duplicate")}}).to_string(),
            409,
            "constraint_violation",
        ),
        (
            "pg_cast",
            "pg_cast",
            json!({"params": {"t": c("pg_cast")}}).to_string(),
            400,
            "invalid_data",
        ),
        (
            "pg_bad_type",
            "pg_count",
            json!({"params": {"n": c("pg_bad_type")}}).to_string(),
            400,
            "invalid_params",
        ),
        (
            "param_name",
            "pg_text",
            json!({"params": {"t": "x", c("param_name"): 1}}).to_string(),
            400,
            "invalid_params",
        ),
        (
            "malformed_body",
            "pg_text",
            format!(r#"{{"params":{{"t":"{}""#, c("malformed_body")),
            400,
            "invalid_json",
        ),
        (
            "my_duplicate",
            "my_add",
            json!({"params": {"v": c("my_duplicate")}}).to_string(),
            409,
            "constraint_violation",
        ),
    ];
    for (label, query, body, status, code) in &refusals {
        let (got, text) = post(&server, query, body, &[]).await;
        assert_eq!(got, *status, "{label}: {text}");
        assert_eq!(parse(&text)["error"]["code"], *code, "{label}: {text}");
        // Values the caller did not send (database messages) and values in a body that is
        // refused for its shape are not echoed either.
        if *label != "param_name" {
            assert!(
                !text.contains(canaries.get(label)),
                "{label}: the error response repeats the value: {text}"
            );
        }
    }

    // --- The catalog API: a secret sent in plaintext, one sent as a bare string (refused),
    // a query whose SQL text carries a canary, and a preview with a canary param. ---
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        server
            .client
            .request(method, server.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let datasource = json!({"kind": "postgres", "host": "127.0.0.1", "port": 5432,
        "database": "test", "user": "postgres", "egress_allow": ["127.0.0.1/32"],
        "password": {"plaintext": c("api_secret")}});
    let created = admin(
        reqwest::Method::PUT,
        "/v1/admin/datasources/api_ds",
        datasource.clone(),
    )
    .await
    .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created = created.text().await.unwrap();
    let mut bare = datasource.clone();
    bare["password"] = json!(c("api_bare_secret"));
    let refused = admin(reqwest::Method::PUT, "/v1/admin/datasources/api_bare", bare)
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let refused = refused.text().await.unwrap();
    let query = json!({"datasource": "api_ds",
        "sql": format!("SELECT {{{{ params.t }}}}::text AS t, '{}' AS marker", c("api_sql")),
        "params": {"t": {"type": "text", "required": true}}});
    let saved = admin(
        reqwest::Method::PUT,
        "/v1/admin/apps/canary/queries/api_q",
        query,
    )
    .await
    .unwrap();
    assert_eq!(saved.status().as_u16(), 201);
    let (status, body) = call(&server, "api_q", json!({"t": "x"})).await;
    echo_check(status, &body, &c("api_sql"));
    let user = admin(
        reqwest::Method::POST,
        "/v1/admin/users",
        json!({"email": "previewed@example.com", "role": "viewer"}),
    )
    .await
    .unwrap();
    assert_eq!(user.status().as_u16(), 201);
    let preview = admin(
        reqwest::Method::POST,
        "/v1/admin/apps/canary/queries/api_q/preview",
        json!({"as": "previewed@example.com", "params": {"t": c("preview_param")}}),
    )
    .await
    .unwrap();
    let status = preview.status().as_u16();
    echo_check(status, &preview.text().await.unwrap(), &c("preview_param"));
    let mut shown = String::new();
    for path in [
        "/v1/admin/datasources",
        "/v1/admin/datasources/api_ds",
        "/v1/admin/audit?limit=200",
    ] {
        let answer = admin(reqwest::Method::GET, path, Value::Null)
            .await
            .unwrap();
        shown.push_str(&answer.text().await.unwrap());
    }
    let sealed = regex::Regex::new(r"enc:v1:[0-9a-f]{16}:").unwrap();
    for (what, text) in [
        ("create", &created),
        ("refusal", &refused),
        ("reads", &shown),
    ] {
        for label in ["api_secret", "api_bare_secret"] {
            assert!(
                !text.contains(&c(label)[6..]),
                "{label} shown by the {what}: {text}"
            );
        }
        assert!(
            !sealed.is_match(text),
            "a ciphertext shown by the {what}: {text}"
        );
    }

    // The audit export writes the runs' lines within its poll.
    server
        .wait_log(
            r#""event":"query_run""#,
            1,
            std::time::Duration::from_secs(20),
        )
        .await;
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.output());
    let output = server.output();

    // --- Logging was on, verbose, and wrote the request lines. ---
    assert!(!output.trim().is_empty(), "nothing was logged");
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let has_event = |message: &str, query: &str| -> bool {
        lines.iter().any(|line| {
            if format == "json" {
                let event: Value = serde_json::from_str(line).unwrap();
                event["message"] == message && event["app"] == "canary" && event["query"] == query
            } else {
                line.contains(message)
                    && line.contains("app=canary")
                    && line.contains(&format!("query={query} "))
            }
        })
    };
    if format == "json" {
        for line in &lines {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
            assert!(event.is_object(), "{line}");
        }
    }
    for (message, query) in [
        ("Query finished", "pg_rows"),
        ("Query finished", "pg_text"),
        ("Query finished", "my_rows"),
        ("Query failed", "pg_add"),
        ("Query failed", "pg_cast"),
        ("Query failed", "my_add"),
    ] {
        assert!(
            has_event(message, query),
            "no `{message}` line for {query} in the {format} log:\n{output}"
        );
    }
    let level = |name: &str| {
        lines.iter().any(|line| {
            if format == "json" {
                serde_json::from_str::<Value>(line).unwrap()["level"] == name
            } else {
                line.contains(&format!(" {name} "))
            }
        })
    };
    assert!(
        level("DEBUG"),
        "no DEBUG line at SLUICE_LOG_LEVEL=trace:\n{output}"
    );
    assert!(output.contains("Request refused"), "{output}");
    // The per-app OpenAPI document's describe of `pg_missing` (its table does not exist)
    // failed and was logged, by name and class: never with the SQL text.
    assert!(
        output.contains("Describing a query's result columns failed"),
        "{output}"
    );
    assert!(output.contains("invalid_json"), "{output}");
    // The audit export ran (query runs as JSON lines on stdout).
    assert!(output.contains(r#""event":"query_run""#), "{output}");

    // --- And none of the values. ---
    let (password, salt) = test_secrets();
    let mut forbidden: Vec<(String, String)> = canaries
        .list
        .iter()
        .map(|(label, canary)| (format!("canary {label}"), canary.clone()))
        .collect();
    forbidden.push(("instance password".into(), password.clone()));
    forbidden.push(("instance salt".into(), salt.clone()));
    forbidden.push(("sealed password".into(), sealed_password.clone()));
    // Every leak is reported, each with the lines that carry it.
    let leaks: Vec<String> = forbidden
        .iter()
        .filter_map(|(what, value)| {
            // The random part alone, so a re-cased or cut prefix is caught too.
            let needle = value.strip_prefix("CANARY").unwrap_or(value);
            let lines: Vec<&str> = output.lines().filter(|l| l.contains(needle)).collect();
            (!lines.is_empty()).then(|| format!("the {what} appears in:\n{}", lines.join("\n")))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "{} value(s) leaked into the {format} log output at trace:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    let apply_output = format!(
        "{}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(!apply_output.contains(&c("pg_password")[6..]));

    schema.drop(&pg).await;
    database.drop(&mut my).await;
}

#[tokio::test]
async fn canaries_never_reach_the_text_log_at_trace() {
    canaries_stay_out_of_the_log("text").await;
}

#[tokio::test]
async fn canaries_never_reach_the_json_log_at_trace() {
    canaries_stay_out_of_the_log("json").await;
}
