//! The admin API's egress report (`GET /v1/admin/egress`): off without a token, refused with
//! a wrong one, and never carrying a secret.

mod common;

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
async fn admin_api_is_off_without_a_token() {
    let gateway = TestGateway::start(&catalog()).await;
    let response = gateway
        .client
        .get(gateway.url("/v1/admin/egress"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
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
