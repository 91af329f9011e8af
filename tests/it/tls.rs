//! HTTPS from certificate files: a real TLS handshake with a certificate made for the test,
//! `Strict-Transport-Security` on every answer over TLS (and never over plain HTTP), and the
//! session cookie becoming `__Host-` + `Secure`.

use crate::common;

use common::*;
use sluice::auth::Role;

const CATALOG: &str = r#"
datasources:
  local:
    kind: sqlite
    path: ":memory:"
apps:
  open:
    visibility: public
    grants: { anonymous: true }
    queries:
      one:
        datasource: local
        sql: SELECT 1 AS one
"#;

/// A self-signed certificate for `localhost`, written to files: (dir, cert path, key path,
/// cert PEM).
fn certificate() -> (tempfile::TempDir, String, String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (
        dir,
        cert.display().to_string(),
        key.display().to_string(),
        made.cert.pem(),
    )
}

#[tokio::test]
async fn https_answers_carry_hsts_and_secure_host_cookies() {
    let (_dir, cert, key, pem) = certificate();
    let gateway = TestGateway::start_with(
        CATALOG,
        &[
            ("SLUICE_TLS_CERT_FILE", &cert),
            ("SLUICE_TLS_KEY_FILE", &key),
        ],
    )
    .await;
    // Only the test certificate is trusted, so the handshake really verified it.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .resolve("localhost", gateway.address)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", gateway.address.port());
    let password = "granite-willow-signal-64";
    gateway
        .auth
        .create_user(
            "tls@example.com",
            "",
            Role::Viewer,
            vec![],
            Some(password.into()),
            "test",
        )
        .await
        .unwrap();

    let answers = [
        client.get(format!("{base}/healthz")).send().await.unwrap(),
        client
            .post(format!("{base}/v1/apps/open/queries/one"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
        client
            .post(format!("{base}/v1/apps/nope/queries/none"))
            .send()
            .await
            .unwrap(),
        client
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({ "email": "tls@example.com", "password": password }))
            .send()
            .await
            .unwrap(),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 404, 200]);
    for answer in &answers {
        assert_eq!(
            answer.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains",
            "{}",
            answer.url()
        );
    }
    let cookie = answers[3].headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-sluice_session="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP to the TLS port gets no answer at all, let alone one without HSTS.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", gateway.address))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // A client that does not trust the certificate fails the handshake.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", gateway.address)
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_http_never_sends_hsts() {
    let gateway = TestGateway::start(CATALOG).await;
    for path in ["/healthz", "/v1/apps/open/queries/one", "/v1/nothing"] {
        let answer = gateway.client.post(gateway.url(path)).send().await.unwrap();
        assert!(
            answer.headers().get("strict-transport-security").is_none(),
            "{path}"
        );
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn start_up_refuses_a_key_that_does_not_fit_the_certificate() {
    let (_dir, cert, _key, _) = certificate();
    let (_other_dir, _, other_key, _) = certificate();
    let vars = [
        ("SLUICE_ENCRYPTION_PASSWORD", test_secrets().0.clone()),
        ("SLUICE_ENCRYPTION_SALT", test_secrets().1.clone()),
        ("SLUICE_LISTEN", "127.0.0.1:0".to_string()),
        ("SLUICE_TLS_CERT_FILE", cert),
        ("SLUICE_TLS_KEY_FILE", other_key),
    ];
    let config = sluice::config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let store = sluice::store::SqliteStore::in_memory().unwrap();
    let key = sluice::vault::InstanceKey::derive(&test_secrets().0, &test_secrets().1).unwrap();
    let error =
        match sluice::instance::Instance::with_parts(config, key, std::sync::Arc::new(store)).await
        {
            Ok(_) => panic!("a mismatched key was accepted"),
            // The error and its causes, as the CLI prints them.
            Err(error) => crate::common::error_chain(&error),
        };
    assert!(error.contains("SLUICE_TLS_CERT_FILE"), "{error}");
    assert!(error.contains("does not fit"), "{error}");
}
