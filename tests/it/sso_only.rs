//! SSO-only mode closes every local sign-in path, and the list of what it closes is checked
//! against the router itself.
//!
//! Every account route (`/v1/auth/*`, the link pages under `/auth/`, and the admin API's
//! user routes) is read from the source by the OpenAPI suite's route walk, not from a list
//! written here. Each must be classified below as CLOSED (a local path) or OPEN (with why it
//! stays open); a route added later fails this test until it is classified. Every CLOSED
//! route must answer the same refusal byte for byte (request id aside) whatever is sent, and
//! must be exactly the gateway's own list; every OPEN one must not answer it.

use std::collections::BTreeSet;

use serde_json::json;
use sluice::auth::Role;

use crate::auth_common::{self, Browser, PASSWORD};
use crate::openapi::routes::walk_src;

/// Local sign-in paths: closed in SSO-only mode.
const CLOSED: &[(&str, &str)] = &[
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/reauth"),
    ("POST", "/v1/auth/password"),
    ("POST", "/v1/auth/email"),
    ("POST", "/v1/auth/email/confirm"),
    ("POST", "/v1/auth/password-reset"),
    ("POST", "/v1/auth/password-reset/complete"),
    ("POST", "/v1/auth/signup"),
    ("POST", "/v1/auth/signup/complete"),
    ("GET", "/auth/reset"),
    ("GET", "/auth/signup"),
    ("GET", "/auth/email"),
    ("POST", "/v1/admin/users"),
];

/// Account routes that stay open, and why.
const OPEN: &[(&str, &str, &str)] = &[
    ("POST", "/v1/auth/logout", "ends a session"),
    ("POST", "/v1/auth/logout-everywhere", "ends sessions"),
    ("GET", "/v1/auth/me", "reads the caller"),
    ("GET", "/v1/auth/sessions", "lists sessions"),
    ("DELETE", "/v1/auth/sessions/{id}", "ends a session"),
    (
        "POST",
        "/v1/auth/mfa/enroll",
        "a second factor on top of the provider",
    ),
    (
        "POST",
        "/v1/auth/mfa/confirm",
        "a second factor on top of the provider",
    ),
    (
        "POST",
        "/v1/auth/mfa/disable",
        "a second factor on top of the provider",
    ),
    (
        "POST",
        "/v1/auth/mfa/recovery-codes",
        "a second factor on top of the provider",
    ),
    (
        "GET",
        "/v1/auth/api-keys",
        "keys run queries, they do not sign in",
    ),
    (
        "POST",
        "/v1/auth/api-keys",
        "keys run queries, they do not sign in",
    ),
    (
        "DELETE",
        "/v1/auth/api-keys/{id}",
        "keys run queries, they do not sign in",
    ),
    ("GET", "/v1/auth/sso", "lists the providers"),
    (
        "GET",
        "/auth/link.js",
        "the link pages' script (the pages are closed)",
    ),
    ("GET", "/v1/auth/oidc/{provider}/start", "SSO sign-in"),
    ("GET", "/v1/auth/oidc/{provider}/callback", "SSO sign-in"),
    ("POST", "/v1/auth/oidc/{provider}/link", "SSO"),
    ("GET", "/v1/auth/identities", "SSO"),
    ("DELETE", "/v1/auth/identities/{provider}", "SSO"),
    ("GET", "/v1/admin/users", "lists accounts"),
    (
        "PUT",
        "/v1/admin/users/{id}/role",
        "changes an existing account",
    ),
    (
        "PUT",
        "/v1/admin/users/{id}/groups",
        "changes an existing account",
    ),
    (
        "PUT",
        "/v1/admin/users/{id}/disabled",
        "changes an existing account",
    ),
    (
        "POST",
        "/v1/admin/users/{id}/unlock",
        "changes an existing account",
    ),
];

/// The account routes of the router: auth, link pages, and the admin API's users.
fn account_routes() -> BTreeSet<(String, String)> {
    let walk = walk_src();
    assert!(walk.unreadable.is_empty(), "{:#?}", walk.unreadable);
    walk.routes
        .iter()
        .filter(|r| {
            r.path.starts_with("/v1/auth")
                || r.path.starts_with("/auth/")
                || r.path.starts_with("/v1/admin/users")
        })
        .map(|r| (r.method.to_uppercase(), r.path.clone()))
        .collect()
}

#[test]
fn every_account_route_is_classified_and_the_closed_list_is_the_gateways() {
    let routes = account_routes();
    assert!(
        routes.len() >= 30,
        "the walk found too few routes: {routes:?}"
    );
    let classified: BTreeSet<(String, String)> = CLOSED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(OPEN.iter().map(|(m, p, _)| (m.to_string(), p.to_string())))
        .collect();
    let unclassified: Vec<_> = routes.difference(&classified).collect();
    assert!(
        unclassified.is_empty(),
        "account routes not classified for SSO-only mode (add each to CLOSED, and to \
         instance::sso_only::LOCAL_PATHS, or to OPEN with why): {unclassified:?}"
    );
    let gone: Vec<_> = classified.difference(&routes).collect();
    assert!(
        gone.is_empty(),
        "classified routes that no longer exist: {gone:?}"
    );
    let gateway: BTreeSet<(String, String)> = sluice::instance::sso_only::LOCAL_PATHS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let closed: BTreeSet<(String, String)> = CLOSED
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        gateway, closed,
        "the gateway closes other paths than CLOSED"
    );
}

async fn sso_only_gateway() -> (crate::common::TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // A provider that is never contacted: SSO-only needs one to exist.
    let file = crate::sso::sso_file(dir.path(), "http://127.0.0.1:9", "");
    let file = file.to_str().unwrap().to_owned();
    let (gateway, _clock) = auth_common::gateway(&[
        ("SLUICE_SSO_FILE", &file),
        ("SLUICE_SSO_ONLY", "true"),
        ("SLUICE_PUBLIC_URL", "http://127.0.0.1:1"),
        ("SLUICE_ADMIN_TOKEN", auth_common::ADMIN_TOKEN),
    ])
    .await;
    (gateway, dir)
}

/// Status and body with the request id replaced, so answers compare byte for byte.
async fn answer(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.text().await.unwrap();
    (status, body.replace(&id, "<request-id>"))
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "x1").replace("{provider}", "corp")
}

#[tokio::test]
async fn every_closed_path_answers_the_same_refusal_whatever_is_sent() {
    let (gateway, _dir) = sso_only_gateway().await;
    // A real account (made by the CLI's path, the break-glass), with a password.
    auth_common::user(&gateway, "local@example.com", Role::Viewer).await;
    let client = reqwest::Client::new();
    let mut answers = BTreeSet::new();
    for (method, path) in CLOSED {
        let url = gateway.url(&concrete(path));
        let method: reqwest::Method = method.parse().unwrap();
        let bodies = [
            None,
            Some(json!({ "email": "local@example.com", "password": PASSWORD }).to_string()),
            Some(json!({ "email": "nobody@example.com", "role": "admin" }).to_string()),
            Some("{not json".to_owned()),
        ];
        for body in bodies {
            for authorization in [None, Some(format!("Bearer {}", auth_common::ADMIN_TOKEN))] {
                let mut request = client
                    .request(method.clone(), &url)
                    .header("sec-fetch-site", "cross-site")
                    .header("cookie", "sluice_session=made-up");
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                if let Some(body) = &body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.clone());
                }
                answers.insert(answer(request).await);
            }
        }
    }
    assert_eq!(
        answers.len(),
        1,
        "closed paths answered differently: {answers:#?}"
    );
    let (status, body) = answers.into_iter().next().unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#""code":"sso_only""#), "{body}");

    // HEAD, which the GET handlers answer, is closed with GET.
    for (method, path) in CLOSED.iter().filter(|(m, _)| *m == "GET") {
        let _ = method;
        let response = client.head(gateway.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403, "HEAD {path}");
    }

    // The password really is refused: no session came of it.
    let mut browser = Browser::new(&gateway);
    let reply = browser.login("local@example.com", PASSWORD).await;
    reply.expect_error(403, "sso_only");
    assert!(browser.cookie.is_none());
}

#[tokio::test]
async fn open_paths_do_not_answer_the_sso_only_refusal() {
    let (gateway, _dir) = sso_only_gateway().await;
    let client = reqwest::Client::new();
    for (method, path, _) in OPEN {
        let method: reqwest::Method = method.parse().unwrap();
        let (status, body) = answer(
            client
                .request(method.clone(), gateway.url(&concrete(path)))
                .header("sec-fetch-site", "same-origin")
                .header(
                    "authorization",
                    format!("Bearer {}", auth_common::ADMIN_TOKEN),
                ),
        )
        .await;
        assert!(
            !body.contains(r#""code":"sso_only""#),
            "{method} {path} answered {status} {body}"
        );
    }
    // The sign-in page's list says so.
    let mut browser = Browser::new(&gateway);
    let offered = browser.get("/v1/auth/sso").await.expect_ok();
    assert_eq!(offered["sso_only"], true, "{offered}");
}

#[test]
fn sso_only_without_a_provider_or_with_signup_does_not_start() {
    let bad = [
        vec![("SLUICE_SSO_ONLY", "true")],
        vec![
            ("SLUICE_SSO_ONLY", "true"),
            ("SLUICE_SSO_FILE", "/x.yaml"),
            ("SLUICE_PUBLIC_URL", "https://sluice.example"),
            ("SLUICE_SIGNUP_ENABLED", "true"),
            ("SLUICE_SMTP_URL", "smtp://127.0.0.1:25"),
            ("SLUICE_MAIL_FROM", "a@example.com"),
        ],
        vec![("SLUICE_SSO_FILE", "/x.yaml")],
    ];
    for vars in bad {
        let config = sluice::config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("SLUICE_"), "{vars:?}: {error}");
    }
}
