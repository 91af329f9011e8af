//! The admin API: who may call it (an admin session with MFA, or `SLUICE_ADMIN_TOKEN`),
//! the egress report without secrets, and user administration that never shows a password
//! hash.

use crate::common;

use common::*;

const TOKEN: &str = "admin-token-for-tests-0123456789abcdef";

fn catalog() -> String {
    r#"
datasources:
DATASOURCES
apps: {}
"#
    .replace("DATASOURCES", pg_datasource_yaml("pg").trim_end())
}

#[tokio::test]
async fn no_token_is_accepted_when_none_is_configured() {
    let gateway = TestGateway::start(&catalog()).await;
    for auth in [Some(TOKEN), Some(""), None] {
        let mut request = gateway.client.get(gateway.url("/v1/admin/egress"));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
}

#[tokio::test]
async fn non_admin_sessions_are_refused_and_users_never_show_secrets() {
    use sluice::auth::Role;
    let gateway = TestGateway::start_with(&catalog(), &[("SLUICE_ADMIN_TOKEN", TOKEN)]).await;
    let password = "plum-orbit-cellar-9431";
    for (email, role) in [
        ("dev@example.com", Role::Developer),
        ("viewer@example.com", Role::Viewer),
    ] {
        gateway
            .auth
            .create_user(email, "", role, vec![], Some(password.into()), "test")
            .await
            .unwrap();
        let login = gateway
            .client
            .post(gateway.url("/v1/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status().as_u16(), 200);
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        for path in ["/v1/admin/egress", "/v1/admin/users", "/v1/admin/audit"] {
            let response = gateway
                .client
                .get(gateway.url(path))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 403, "{email} {path}");
        }
    }
    // The token creates a user; neither the answer nor the listing carries a hash.
    let created = gateway
        .client
        .post(gateway.url("/v1/admin/users"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({
            "email": "New.Person@Example.com", "role": "viewer", "groups": ["sales"],
            "password": "quartz-lantern-meadow-77"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["email"], "new.person@example.com");
    assert_eq!(created["groups"], serde_json::json!(["sales"]));
    let listing = gateway
        .client
        .get(gateway.url("/v1/admin/users"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for forbidden in ["argon2", "quartz-lantern", "password", "totp"] {
        assert!(!listing.contains(forbidden), "{forbidden} in {listing}");
    }
    let weak = gateway
        .client
        .post(gateway.url("/v1/admin/users"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "email": "weak@example.com", "role": "viewer", "password": "password123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status().as_u16(), 400);
    let body: serde_json::Value = weak.json().await.unwrap();
    assert_eq!(body["error"]["code"], "weak_password");
    let audit: serde_json::Value = gateway
        .client
        .get(gateway.url("/v1/admin/audit"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created_events = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "user_created")
        .count();
    assert_eq!(created_events, 3, "{audit}");
}

#[tokio::test]
async fn egress_report_needs_the_token_and_lists_addresses_without_secrets() {
    let gateway = TestGateway::start_with(
        &catalog(),
        &[
            ("SLUICE_ADMIN_TOKEN", TOKEN),
            ("SLUICE_EGRESS_BIND", "127.0.0.2"),
            ("SLUICE_EGRESS_PUBLIC_IPS", "203.0.113.7"),
            ("SLUICE_EGRESS_ALLOW", "10.20.0.0/16"),
        ],
    )
    .await;
    for auth in [None, Some("wrong-token"), Some("")] {
        let mut request = gateway.client.get(gateway.url("/v1/admin/egress"));
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{auth:?}");
    }
    let response = gateway
        .client
        .get(gateway.url("/v1/admin/egress"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["bind_addresses"], serde_json::json!(["127.0.0.2"]));
    assert_eq!(body["public_ips"], serde_json::json!(["203.0.113.7"]));
    assert_eq!(body["instance_allow"], serde_json::json!(["10.20.0.0/16"]));
    assert_eq!(body["datasources"][0]["name"], "pg");
    assert_eq!(body["datasources"][0]["destination"], "127.0.0.1:5432");
    assert!(!text.contains("enc:v1:"), "{text}");
    assert!(!text.contains("unused-with-trust-auth"), "{text}");
}

#[tokio::test]
async fn wrong_methods_on_account_and_admin_routes_get_json_405s() {
    let gateway = TestGateway::start(&catalog()).await;
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/auth/login"),
        (reqwest::Method::GET, "/v1/auth/logout"),
        (reqwest::Method::PATCH, "/v1/admin/users"),
    ] {
        let response = gateway
            .client
            .request(method.clone(), gateway.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn bad_query_strings_get_json_400s() {
    let gateway = TestGateway::start_with(&catalog(), &[("SLUICE_ADMIN_TOKEN", TOKEN)]).await;
    let response = gateway
        .client
        .get(gateway.url("/v1/admin/audit?limit=abc"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
}

/// `GET /v1/admin/scan`: the security scan of the served catalog and the settings, as JSON
/// or SARIF, for the admin token; a bad format is a JSON 400.
#[tokio::test]
async fn the_scan_reports_the_served_catalog_and_the_settings() {
    let gateway = TestGateway::start_with(&catalog(), &[("SLUICE_ADMIN_TOKEN", TOKEN)]).await;
    let get = |query: &'static str| {
        gateway
            .client
            .get(gateway.url(&format!("/v1/admin/scan{query}")))
            .bearer_auth(TOKEN)
            .send()
    };
    let response = get("").await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: serde_json::Value = response.json().await.unwrap();
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    // The admin token works from every address in this test instance.
    assert!(rules.contains(&"SLU-S008"), "{report}");
    let sarif: serde_json::Value = get("?format=sarif").await.unwrap().json().await.unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(crate::common::sarif_problems(&sarif), Vec::<String>::new());
    let bad = get("?format=xml").await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
    let anonymous = gateway
        .client
        .get(gateway.url("/v1/admin/scan"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}
