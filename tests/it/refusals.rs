//! The view plane's refusal matrix, in process: the instance's own router (every
//! middleware included) called with tower's `oneshot`, without a socket. Each caller kind
//! meets each kind of app; a refusal is checked by status and code, and a private app the
//! caller may not see must answer byte for byte like a missing one (but for the request id).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use serde_json::{Value, json};
use sluice::auth::service::Credentials;
use sluice::auth::{ApiKeyScope, ClientInfo, Role};
use sluice::clock::SystemClock;
use sluice::instance::Instance;
use sluice::spec::yaml;
use tower::ServiceExt;

use crate::common::test_instance;

const CATALOG: &str = r#"
datasources:
  mem:
    kind: sqlite
    path: ":memory:"
apps:
  open:
    visibility: public
    grants: { anonymous: true }
    queries:
      hello: { datasource: mem, sql: "SELECT 1 AS one" }
      viewers_only:
        datasource: mem
        sql: "SELECT 1 AS one"
        grants: { roles: [viewer] }
  team:
    visibility: workspace
    grants: { roles: [viewer, developer] }
    queries:
      hello: { datasource: mem, sql: "SELECT 1 AS one" }
  vault:
    visibility: private
    grants: { roles: [viewer, developer] }
    queries:
      hello: { datasource: mem, sql: "SELECT 1 AS one" }
      ungranted:
        datasource: mem
        sql: "SELECT 1 AS one"
        grants: { roles: [admin] }
"#;

const PASSWORD: &str = "a long enough test passphrase 7";

struct Matrix {
    instance: Instance,
    /// Caller name -> the header that authenticates it (none for anonymous).
    callers: HashMap<&'static str, Option<(header::HeaderName, String)>>,
}

impl Matrix {
    async fn new() -> Matrix {
        let spec = yaml::parse(CATALOG).expect("catalog");
        let instance = test_instance(spec, &[], Arc::new(SystemClock)).await;
        let auth = instance.state().auth.service.clone();
        let client = ClientInfo::default();
        let mut callers = HashMap::new();
        callers.insert("anonymous", None);
        for (name, role, member) in [
            ("viewer", Role::Viewer, false),
            ("member", Role::Viewer, true),
            ("developer_member", Role::Developer, true),
        ] {
            let email = format!("{name}@example.com");
            let user = auth
                .create_user(
                    &email,
                    name,
                    role,
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
            let cookie = format!("sluice_session={}", session.token.expose());
            if name == "developer_member" {
                let caller = auth
                    .authenticate_session(session.token.expose())
                    .await
                    .expect("caller");
                for (key_name, query) in [
                    ("key_in_scope", "vault/hello"),
                    ("key_elsewhere", "open/hello"),
                    ("revoked_key", "open/hello"),
                ] {
                    let scope = ApiKeyScope {
                        apps: Vec::new(),
                        queries: vec![query.into()],
                    };
                    let created = auth
                        .create_api_key(&caller, key_name.into(), scope, None, &client)
                        .await
                        .expect("key");
                    callers.insert(
                        key_name,
                        Some((header::AUTHORIZATION, format!("Bearer {}", created.key))),
                    );
                    if key_name == "revoked_key" {
                        auth.revoke_api_key(&caller, created.id.clone(), &client)
                            .await
                            .expect("revoke");
                    }
                }
            }
            callers.insert(name, Some((header::COOKIE, cookie)));
        }
        // Credentials that are not live: each is refused as such (401), whatever it asks for.
        callers.insert("basic", Some((header::AUTHORIZATION, "Basic eDp4".into())));
        callers.insert(
            "fake_key",
            Some((
                header::AUTHORIZATION,
                format!("Bearer slk_{}", "0".repeat(40)),
            )),
        );
        callers.insert(
            "stale_cookie",
            Some((header::COOKIE, format!("sluice_session={}", "x".repeat(43)))),
        );
        Matrix { instance, callers }
    }

    /// Runs `app/query` as `caller`; returns the status, the error code ("" on success)
    /// and the body without its request id.
    async fn run(&self, caller: &str, app: &str, query: &str) -> (u16, String, String) {
        let mut request = Request::post(format!("/v1/apps/{app}/queries/{query}"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some((name, value)) = &self.callers[caller] {
            request = request.header(name, value);
            // A browser page of this instance: passes the CSRF check on cookie writes.
            request = request.header("sec-fetch-site", "same-origin");
        }
        let request = request
            .body(Body::from(json!({"params": {}}).to_string()))
            .expect("request");
        let response = self
            .instance
            .front()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let mut body: Value = serde_json::from_slice(&bytes).expect("JSON body");
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        if let Some(error) = body["error"].as_object_mut() {
            error.remove("request_id");
        }
        (status, code, body.to_string())
    }
}

#[tokio::test]
async fn every_caller_meets_every_kind_of_app_as_the_policy_says() {
    let matrix = Matrix::new().await;
    // (caller, app, query, status, code)
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        ("anonymous", "open", "hello", 200, ""),
        ("anonymous", "open", "viewers_only", 401, "unauthenticated"),
        ("viewer", "open", "viewers_only", 200, ""),
        (
            "developer_member",
            "open",
            "viewers_only",
            403,
            "not_granted",
        ),
        ("anonymous", "team", "hello", 401, "unauthenticated"),
        ("viewer", "team", "hello", 200, ""),
        ("anonymous", "vault", "hello", 404, "not_found"),
        ("viewer", "vault", "hello", 404, "not_found"),
        ("member", "vault", "hello", 200, ""),
        ("member", "vault", "ungranted", 403, "not_granted"),
        ("key_in_scope", "vault", "hello", 200, ""),
        ("key_elsewhere", "vault", "hello", 403, "outside_key_scope"),
        ("key_in_scope", "team", "hello", 403, "outside_key_scope"),
        ("member", "vault", "missing", 404, "not_found"),
        ("member", "nowhere", "hello", 404, "not_found"),
        // A bearer that is not a live key is 401, even on a query anyone may run: a revoked
        // key does not quietly become anonymous.
        ("basic", "open", "hello", 401, "unauthenticated"),
        ("fake_key", "open", "hello", 401, "unauthenticated"),
        ("revoked_key", "open", "hello", 401, "unauthenticated"),
        // A stale cookie on a same-site request is no cookie (docs/API.md).
        ("stale_cookie", "open", "hello", 200, ""),
        ("stale_cookie", "team", "hello", 401, "unauthenticated"),
        ("stale_cookie", "vault", "hello", 404, "not_found"),
    ];
    for (caller, app, query, status, code) in cases {
        let (got_status, got_code, body) = matrix.run(caller, app, query).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (*status, *code),
            "{caller} -> {app}/{query}: {body}"
        );
    }
}

#[tokio::test]
async fn a_private_app_answers_outsiders_exactly_like_a_missing_one() {
    let matrix = Matrix::new().await;
    for caller in [
        "anonymous",
        "viewer",
        "basic",
        "fake_key",
        "revoked_key",
        "stale_cookie",
    ] {
        for query in ["hello", "ungranted", "missing"] {
            let hidden = matrix.run(caller, "vault", query).await;
            let missing = matrix.run(caller, "ghost", query).await;
            let expected = if caller.ends_with("key") || caller == "basic" {
                401
            } else {
                404
            };
            assert_eq!(hidden.0, expected, "{caller} {query}: {}", hidden.2);
            assert_eq!(
                (hidden.0, hidden.1, hidden.2.replace("`vault`", "`APP`")),
                (missing.0, missing.1, missing.2.replace("`ghost`", "`APP`")),
                "{caller} {query}"
            );
        }
    }
}

/// A cross-site write that carries the session cookie is refused before the cookie is looked
/// up, whether the session is live or stale: the check is about where the request comes
/// from, and a stale cookie does not make a forged request safe (docs/POLICY.md, CSRF).
#[tokio::test]
async fn a_cross_site_write_with_a_stale_cookie_is_refused_like_a_live_one() {
    let matrix = Matrix::new().await;
    for caller in ["viewer", "stale_cookie"] {
        let Some((name, value)) = &matrix.callers[caller] else {
            unreachable!("both callers send a cookie")
        };
        let request = Request::post("/v1/apps/open/queries/hello")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, "https://elsewhere.example")
            .header(name, value)
            .body(Body::from("{}"))
            .expect("request");
        let response = matrix
            .instance
            .front()
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status().as_u16(), 403, "{caller}");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON body");
        assert_eq!(body["error"]["code"], "csrf_refused", "{caller}: {body}");
    }
}
