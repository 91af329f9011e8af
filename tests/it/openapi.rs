//! The OpenAPI documents against running gateways: `GET /v1/openapi.json` (valid OpenAPI
//! 3.1 by openapi-spec-validator, an ETag, every documented path answered by a route), and
//! `GET /v1/apps/{app}/openapi.json` over real PostgreSQL, MariaDB and SQLite datasources:
//! params as declared, result columns with their types, the rows each query really returns
//! validated against the document's schema (jsonschema, through scripts/openapi-check.py),
//! queries the caller may not run left out, a private app answering an outsider exactly as
//! a missing app, and no SQL text, datasource name or host in any document (canaries).

pub mod routes;

use std::process::{Command, Stdio};

use reqwest::header;
use serde_json::{Value, json};
use sluice::auth::service::Credentials;
use sluice::auth::{ApiKeyScope, ClientInfo, Role};
use sluice::spec::yaml;

use crate::auth_common::PASSWORD;
use crate::common::{
    MyDatabase, PgSchema, TestGateway, mysql_admin, mysql_datasource_yaml, pg_admin,
    pg_datasource_yaml, unique_name,
};

/// Runs scripts/openapi-check.py with `mode` on `input`; its output lines (problems).
fn check(mode: &str, input: &Value) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/openapi-check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "scripts/openapi-check.py {mode} could not run (pip install openapi-spec-validator \
         jsonschema; scripts/test installs them): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

async fn get(gateway: &TestGateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = gateway.client.get(gateway.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn the_instance_document_is_public_valid_openapi_3_1_and_revalidates_with_its_etag() {
    let gateway = TestGateway::start("apps: {}\n").await;
    let response = get(&gateway, "/v1/openapi.json", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    let etag = response.headers()[header::ETAG]
        .to_str()
        .expect("etag")
        .to_string();
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(
        document,
        sluice::openapi::instance::value().expect("instance.yaml")
    );
    let problems = check("spec", &document);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let again = get(&gateway, "/v1/openapi.json", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[header::ETAG], etag.as_str());
    let stale = get(&gateway, "/v1/openapi.json", &[("if-none-match", "\"x\"")]).await;
    assert_eq!(stale.status(), 200);

    // The validator is not a stub: a document with a broken operation is refused.
    let mut broken = document.clone();
    broken["paths"]["/healthz"]["get"]["responses"] = json!("none");
    assert!(!check("spec", &broken).is_empty());
    gateway.stop().await;
}

/// Every documented path and method reaches a route of a running gateway (never the
/// unknown-path 404 or a 405): the walk in `routes` reads the code, this checks the result.
#[tokio::test]
async fn every_documented_path_and_method_is_answered_by_a_route() {
    let gateway = TestGateway::start_with(
        "apps: {}\n",
        &[
            (
                "SLUICE_METRICS_TOKEN",
                "metrics-token-0123456789abcdef0123456789",
            ),
            (
                "SLUICE_SCIM_TOKEN",
                "scim-token-0123456789abcdef0123456789ab",
            ),
        ],
    )
    .await;
    let document = sluice::openapi::instance::value().expect("instance.yaml");
    let documented = routes::documented(&document);
    assert!(documented.len() > 30);
    for (path, methods) in &documented {
        // Served by `sluice demo` alone (its extra routes); tests/it/browser.rs loads them.
        if path == "/demo" || path.starts_with("/demo/") {
            continue;
        }
        let concrete: String = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = gateway
                .client
                .request(method.clone(), gateway.url(&concrete))
                .header("sec-fetch-site", "same-origin");
            if path == "/metrics" {
                request = request.header(
                    header::AUTHORIZATION,
                    "Bearer metrics-token-0123456789abcdef0123456789",
                );
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            assert_ne!(status, 405, "{method} {concrete}: {text}");
            assert!(
                !(status == 404 && text.contains("no such endpoint")),
                "{method} {concrete} is documented but answered as an unknown path"
            );
        }
    }
    gateway.stop().await;
}

/// One backend's fixture: the catalog (with canaries), the calls to make, and what must
/// never appear in a document.
struct Backend {
    catalog: String,
    /// (query, params) run and validated against the document.
    calls: Vec<(&'static str, Value)>,
    canaries: Vec<String>,
}

/// Checks the public app `shop` of `backend`: its document lists exactly the runnable
/// queries, each param as declared, and every call's answer validates against the schema
/// of its operation.
async fn check_backend(backend: Backend, expected_types: &[(&str, &[(&str, &str)])]) {
    let gateway = TestGateway::start(&backend.catalog).await;
    let response = get(&gateway, "/v1/apps/shop/openapi.json", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "private, no-cache"
    );
    let etag = response.headers()[header::ETAG]
        .to_str()
        .expect("etag")
        .to_string();
    let text = response.text().await.expect("body");
    let again = get(
        &gateway,
        "/v1/apps/shop/openapi.json",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status(), 304);
    for canary in &backend.canaries {
        assert!(
            !text.contains(canary.as_str()),
            "the app document shows `{canary}`: {text}"
        );
    }
    let document: Value = serde_json::from_str(&text).expect("JSON");
    let problems = check("spec", &document);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Only the queries anonymous callers may run; `hidden` is granted to nobody.
    let paths: Vec<&String> = document["paths"].as_object().unwrap().keys().collect();
    assert_eq!(
        paths,
        vec![
            "/v1/apps/shop/queries/count",
            "/v1/apps/shop/queries/items",
            "/v1/apps/shop/queries/touch",
        ],
        "{document:#}"
    );

    // Params as declared.
    let params = &document["paths"]["/v1/apps/shop/queries/items"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["properties"]["params"];
    assert_eq!(params["additionalProperties"], false);
    assert_eq!(params["required"], json!(["min_id"]));
    let limit = &params["properties"]["limit"];
    assert_eq!(
        (
            &limit["type"],
            &limit["minimum"],
            &limit["maximum"],
            &limit["default"]
        ),
        (&json!("integer"), &json!(1), &json!(50), &json!(10))
    );
    assert_eq!(params["properties"]["sort"]["enum"], json!(["id", "name"]));
    assert_eq!(params["properties"]["sort"]["default"], "id");
    assert_eq!(params["properties"]["dir"]["enum"], json!(["ASC", "DESC"]));
    assert_eq!(
        params["properties"]["name"]["anyOf"][0]["maxLength"],
        json!(40)
    );
    assert_eq!(params["properties"]["name"]["anyOf"][1]["type"], "null");

    // Columns with their database types, as expected for this backend.
    for (query, columns) in expected_types {
        let schema = &document["components"]["schemas"][format!("{query}.Result")];
        let headers = schema["properties"]["columns"]["prefixItems"]
            .as_array()
            .unwrap_or_else(|| panic!("{query}: columns are not described: {schema:#}"));
        let found: Vec<(String, String)> = headers
            .iter()
            .map(|h| {
                (
                    h["properties"]["name"]["const"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    h["properties"]["type"]["const"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = columns
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(found, expected, "{query}");
    }
    let touch = &document["components"]["schemas"]["touch.Result"];
    assert_eq!(
        touch["required"],
        json!(["columns", "rows", "row_count", "rows_affected"])
    );

    // The rows each query really returns validate against its schema, and so do the
    // params sent.
    let mut pairs = Vec::new();
    for (query, params) in &backend.calls {
        let (status, body) = gateway.call("shop", query, params.clone()).await;
        assert_eq!(status, 200, "{query}: {body}");
        if *query == "items" {
            assert!(
                body["rows"].as_array().is_some_and(|r| !r.is_empty()),
                "{body}"
            );
        }
        let operation = &document["paths"][format!("/v1/apps/shop/queries/{query}")]["post"];
        let mut result = json!({"$ref": format!("#/components/schemas/{query}.Result")});
        result["components"] = document["components"].clone();
        pairs.push(json!([format!("{query} answer"), result, body]));
        let request = operation["requestBody"]["content"]["application/json"]["schema"].clone();
        pairs.push(json!([format!("{query} params"), request, {"params": params}]));
    }
    let problems = check("values", &Value::Array(pairs.clone()));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The validation is not a stub: a row with a value of the wrong type is refused.
    let mut wrong = pairs[0].clone();
    wrong[2]["rows"][0][0] = json!({"not": "an id"});
    assert_eq!(check("values", &json!([wrong])).len(), 1);
    gateway.stop().await;
}

const ITEMS_PARAMS: &str = r#"
        params:
          min_id: { type: int, required: true, min: 0 }
          name: { type: text, max_length: 40, nullable: true }
          limit: { type: int, min: 1, max: 50, default: 10 }
          sort: { type: identifier, enum: [id, name], default: id }
          dir: { type: keyword, enum: [ASC, DESC], default: ASC }
"#;

#[tokio::test]
async fn postgres_app_documents_type_params_and_columns_and_rows_validate() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {s}.items (id int8 PRIMARY KEY, name text, price numeric(10,2),
               ratio float8, small int2, flag bool, tags text[], meta jsonb, uid uuid,
               born date, at timestamptz, raw bytea, addr inet, n int4);
             INSERT INTO {s}.items VALUES
               (1, 'widget', 12.50, 0.5, 3, true, ARRAY['a','b'], '{{\"k\": 1}}',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', '2024-01-02 03:04:05+00',
                '\\x0102', '10.0.0.1', 7),
               (2, NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);"
        ))
        .await
        .expect("table");
    let ds = unique_name("dscanary_pg");
    let sql_canary = unique_name("sqlcanary_pg");
    let catalog = format!(
        r#"
datasources:
{}apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      items:
        datasource: {ds}
        description: Items from an id on
        sql: >-
          SELECT id, name, price, ratio, small, flag, tags, meta, uid, born, at, raw, addr, n
          FROM {s}.items /* {sql_canary} */
          WHERE id >= {{{{ params.min_id }}}}
            AND ({{{{ params.name }}}}::text IS NULL OR name = {{{{ params.name }}}})
          ORDER BY {{{{ params.sort }}}} {{{{ params.dir }}}} LIMIT {{{{ params.limit }}}}
{ITEMS_PARAMS}
      count:
        datasource: {ds}
        sql: SELECT count(*) AS n FROM {s}.items /* {sql_canary} */
      touch:
        datasource: {ds}
        sql: UPDATE {s}.items SET flag = flag WHERE id = {{{{ params.id }}}} /* {sql_canary} */
        params: {{ id: {{ type: bigint, required: true }} }}
      hidden:
        datasource: {ds}
        grants: {{ roles: [admin] }}
        sql: SELECT 1 AS one /* {sql_canary} */
"#,
        pg_datasource_yaml(&ds)
    );
    let backend = Backend {
        catalog,
        calls: vec![
            ("items", json!({"min_id": 0})),
            (
                "items",
                json!({"min_id": 1, "name": "widget", "sort": "name", "dir": "DESC"}),
            ),
            ("count", json!({})),
            ("touch", json!({"id": 1})),
        ],
        canaries: vec![
            ds.clone(),
            sql_canary.clone(),
            "127.0.0.1".into(),
            s.clone(),
            "postgres".into(),
        ],
    };
    check_backend(
        backend,
        &[
            (
                "items",
                &[
                    ("id", "int8"),
                    ("name", "text"),
                    ("price", "numeric"),
                    ("ratio", "float8"),
                    ("small", "int2"),
                    ("flag", "bool"),
                    ("tags", "text[]"),
                    ("meta", "jsonb"),
                    ("uid", "uuid"),
                    ("born", "date"),
                    ("at", "timestamptz"),
                    ("raw", "bytea"),
                    ("addr", "inet"),
                    ("n", "int4"),
                ],
            ),
            ("count", &[("n", "int8")]),
        ],
    )
    .await;
    schema.drop(&admin).await;
}

#[tokio::test]
async fn mariadb_app_documents_type_params_and_columns_and_rows_validate() {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_admin().await;
    let db = MyDatabase::create(&mut conn).await;
    let d = &db.name;
    conn.query_drop(format!(
        "CREATE TABLE {d}.items (id BIGINT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2),
           ratio DOUBLE, small SMALLINT, flag TINYINT(1), meta JSON, born DATE, at DATETIME(6),
           raw VARBINARY(8), t TIME, y YEAR, n INT)"
    ))
    .await
    .expect("table");
    conn.query_drop(format!(
        "INSERT INTO {d}.items VALUES
           (1, 'widget', 12.50, 0.5, 3, 1, '{{\"k\": 1}}', '2024-02-29', '2024-01-02 03:04:05.5',
            X'0102', '-01:02:03', 2024, 7),
           (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await
    .expect("rows");
    let ds = unique_name("dscanary_my");
    let sql_canary = unique_name("sqlcanary_my");
    let catalog = format!(
        r#"
datasources:
{}apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      items:
        datasource: {ds}
        sql: >-
          SELECT id, name, price, ratio, small, flag, meta, born, at, raw, t, y, n
          FROM {d}.items /* {sql_canary} */
          WHERE id >= {{{{ params.min_id }}}}
            AND ({{{{ params.name }}}} IS NULL OR name = {{{{ params.name }}}})
          ORDER BY {{{{ params.sort }}}} {{{{ params.dir }}}} LIMIT {{{{ params.limit }}}}
{ITEMS_PARAMS}
      count:
        datasource: {ds}
        sql: SELECT count(*) AS n FROM {d}.items WHERE id IN ({{{{ params.ids }}}}) /* {sql_canary} */
        params: {{ ids: {{ type: "array<int>", default: [1, 2], max_items: 5 }} }}
      touch:
        datasource: {ds}
        sql: UPDATE {d}.items SET flag = flag WHERE id = {{{{ params.id }}}} /* {sql_canary} */
        params: {{ id: {{ type: bigint, required: true }} }}
      hidden:
        datasource: {ds}
        grants: {{ roles: [admin] }}
        sql: SELECT 1 AS one /* {sql_canary} */
"#,
        mysql_datasource_yaml(&ds, d)
    );
    let backend = Backend {
        catalog,
        calls: vec![
            ("items", json!({"min_id": 0})),
            (
                "items",
                json!({"min_id": 1, "name": "widget", "sort": "name", "dir": "DESC"}),
            ),
            ("count", json!({"ids": [1, 2, 3]})),
            ("touch", json!({"id": 1})),
        ],
        canaries: vec![
            ds.clone(),
            sql_canary.clone(),
            "127.0.0.1".into(),
            d.clone(),
            "mysql".into(),
        ],
    };
    check_backend(
        backend,
        &[
            (
                "items",
                &[
                    ("id", "bigint"),
                    ("name", "varchar"),
                    ("price", "decimal"),
                    ("ratio", "double"),
                    ("small", "smallint"),
                    ("flag", "tinyint"),
                    ("meta", "text"),
                    ("born", "date"),
                    ("at", "datetime"),
                    ("raw", "varbinary"),
                    ("t", "time"),
                    ("y", "year"),
                    ("n", "int"),
                ],
            ),
            ("count", &[("n", "bigint")]),
        ],
    )
    .await;
    db.drop(&mut conn).await;
}

#[tokio::test]
async fn sqlite_app_documents_type_params_and_columns_and_rows_validate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shop.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create the SQLite file");
        conn.execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price DECIMAL(10,2),
               ratio REAL, big BIGINT, flag BOOLEAN, meta JSON, born DATE, raw BLOB);
             INSERT INTO items VALUES (1, 'widget', 12.5, 0.5, 9007199254740993, 1, '{\"k\": 1}',
               '2024-02-29', x'0102');
             INSERT INTO items VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .expect("table");
    }
    let ds = unique_name("dscanary_lite");
    let sql_canary = unique_name("sqlcanary_lite");
    let catalog = format!(
        r#"
datasources:
  {ds}:
    kind: sqlite
    path: {}
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      items:
        datasource: {ds}
        sql: >-
          SELECT id, name, price, ratio, big, flag, meta, born, raw, id * 2 AS twice
          FROM items /* {sql_canary} */
          WHERE id >= {{{{ params.min_id }}}}
            AND ({{{{ params.name }}}} IS NULL OR name = {{{{ params.name }}}})
          ORDER BY {{{{ params.sort }}}} {{{{ params.dir }}}} LIMIT {{{{ params.limit }}}}
{ITEMS_PARAMS}
      count:
        datasource: {ds}
        sql: SELECT count(*) AS n FROM items /* {sql_canary} */
      touch:
        datasource: {ds}
        sql: UPDATE items SET flag = flag WHERE id = {{{{ params.id }}}} /* {sql_canary} */
        params: {{ id: {{ type: bigint, required: true }} }}
      hidden:
        datasource: {ds}
        grants: {{ roles: [admin] }}
        sql: SELECT 1 AS one /* {sql_canary} */
"#,
        path.display()
    );
    let backend = Backend {
        catalog,
        calls: vec![
            ("items", json!({"min_id": 0})),
            (
                "items",
                json!({"min_id": 1, "name": "widget", "sort": "name", "dir": "DESC"}),
            ),
            ("count", json!({})),
            ("touch", json!({"id": 1})),
        ],
        canaries: vec![
            ds.clone(),
            sql_canary.clone(),
            path.display().to_string(),
            "sqlite".into(),
        ],
    };
    check_backend(
        backend,
        &[
            (
                "items",
                &[
                    ("id", "integer"),
                    ("name", "text"),
                    ("price", "decimal(10,2)"),
                    ("ratio", "real"),
                    ("big", "bigint"),
                    ("flag", "boolean"),
                    ("meta", "json"),
                    ("born", "date"),
                    ("raw", "blob"),
                    ("twice", "any"),
                ],
            ),
            ("count", &[("n", "any")]),
        ],
    )
    .await;
}

/// Who sees which app: a private app answers an outsider (anonymous or signed in) exactly
/// as a missing app; a member sees it; an API key sees only the queries in its scope.
#[tokio::test]
async fn private_apps_answer_outsiders_as_missing_ones_and_keys_see_their_scope() {
    let catalog = format!(
        r#"
datasources:
{}apps:
  vault:
    visibility: private
    grants: {{ roles: [viewer, developer] }}
    queries:
      a: {{ datasource: pg, sql: "SELECT 1 AS a" }}
      b: {{ datasource: pg, sql: "SELECT 2 AS b" }}
      admins_only: {{ datasource: pg, sql: "SELECT 3 AS c", grants: {{ roles: [admin] }} }}
  team:
    visibility: workspace
    grants: {{ roles: [viewer, developer] }}
    queries:
      t: {{ datasource: pg, sql: "SELECT 4 AS t" }}
"#,
        pg_datasource_yaml("pg")
    );
    let spec = yaml::parse(&catalog).expect("catalog");
    let gateway = TestGateway::start_spec(spec, &[]).await;
    let auth = gateway.auth.clone();
    let client = ClientInfo::default();
    let mut cookies = Vec::new();
    for (name, member) in [("outsider", false), ("insider", true)] {
        let email = format!("{name}@example.com");
        let user = auth
            .create_user(
                &email,
                name,
                Role::Developer,
                Vec::new(),
                Some(PASSWORD.into()),
                "test",
            )
            .await
            .expect("user");
        if member {
            auth.add_member("vault", &user.id, false, "test", &client)
                .await
                .expect("member");
        }
        let credentials = Credentials {
            email,
            password: PASSWORD.into(),
            ..Credentials::default()
        };
        let (_, session) = auth.login(credentials, &client, None).await.expect("login");
        cookies.push(format!("sluice_session={}", session.token.expose()));
    }
    let paths = |document: &Value| -> Vec<String> {
        document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    // What an outsider gets for the private app, and for a missing one: the same answer but
    // for the name (and the request id).
    let answer = |name: &'static str, cookie: Option<String>| {
        let gateway = &gateway;
        async move {
            let mut headers = Vec::new();
            if let Some(cookie) = &cookie {
                headers.push(("cookie", cookie.as_str()));
            }
            let response = get(gateway, &format!("/v1/apps/{name}/openapi.json"), &headers).await;
            let status = response.status().as_u16();
            let content_type = response.headers()[header::CONTENT_TYPE].clone();
            let mut body: Value = response.json().await.expect("JSON");
            body["error"]["request_id"] = json!("-");
            let body = body.to_string().replace(name, "NAME");
            (status, content_type, body)
        }
    };
    for cookie in [None, Some(cookies[0].clone())] {
        let hidden = answer("vault", cookie.clone()).await;
        let missing = answer("vaulx", cookie.clone()).await;
        assert_eq!(hidden.0, 404);
        assert_eq!(hidden, missing, "cookie: {}", cookie.is_some());
        assert!(hidden.2.contains("no app `NAME`"), "{}", hidden.2);
    }
    // A workspace app: 401 without a session, its document with one.
    let response = get(&gateway, "/v1/apps/team/openapi.json", &[]).await;
    assert_eq!(response.status(), 401);
    let response = get(
        &gateway,
        "/v1/apps/team/openapi.json",
        &[("cookie", &cookies[0])],
    )
    .await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(paths(&document), vec!["/v1/apps/team/queries/t"]);
    // A member sees the queries granted to them.
    let response = get(
        &gateway,
        "/v1/apps/vault/openapi.json",
        &[("cookie", &cookies[1])],
    )
    .await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(
        paths(&document),
        vec!["/v1/apps/vault/queries/a", "/v1/apps/vault/queries/b"]
    );
    // An API key of the member, scoped to one query, sees that one.
    let caller = auth
        .authenticate_session(cookies[1].trim_start_matches("sluice_session="))
        .await
        .expect("caller");
    let scope = ApiKeyScope {
        apps: Vec::new(),
        queries: vec!["vault/b".into()],
    };
    let key = auth
        .create_api_key(&caller, "doc".into(), scope, None, &client)
        .await
        .expect("key");
    let bearer = format!("Bearer {}", key.key);
    let response = get(
        &gateway,
        "/v1/apps/vault/openapi.json",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(paths(&document), vec!["/v1/apps/vault/queries/b"]);
    // A bearer that is not a live key is 401, whatever the app name.
    for name in ["vault", "vaulx"] {
        let response = get(
            &gateway,
            &format!("/v1/apps/{name}/openapi.json"),
            &[("authorization", "Bearer slk_dead")],
        )
        .await;
        assert_eq!(response.status(), 401, "{name}");
    }
    gateway.stop().await;
}

/// A datasource that is down when the snapshot is built leaves its queries' columns
/// unknown (said so in the document), and the gateway serves anyway; the log names the
/// datasource, never the SQL.
#[tokio::test]
async fn a_datasource_down_at_build_leaves_columns_unknown_and_the_gateway_serves() {
    let sql_canary = unique_name("sqlcanary_down");
    let catalog = format!(
        r#"
datasources:
  down:
    kind: postgres
    host: 127.0.0.1
    port: 1
    database: test
    user: postgres
    egress_allow: [127.0.0.1/32]
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      q: {{ datasource: down, sql: "SELECT 1 AS one /* {sql_canary} */" }}
"#
    );
    let gateway = TestGateway::start(&catalog).await;
    let response = get(&gateway, "/v1/apps/shop/openapi.json", &[]).await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("JSON");
    let result = &document["components"]["schemas"]["q.Result"];
    assert!(
        result["description"]
            .as_str()
            .is_some_and(|d| d.contains("not known")),
        "{result:#}"
    );
    assert!(!document.to_string().contains(&sql_canary));
    let (status, _) = gateway.call("shop", "q", json!({})).await;
    assert_eq!(status, 503);
    gateway.stop().await;
}
