//! External bearer JWTs (`Authorization: Bearer <JWT>`, the Auth0 / Clerk pattern): a token
//! from a configured issuer runs queries as `<issuer>:<sub>`, with its email, groups, a role
//! mapped from its groups (never above developer) and its declared claims as
//! `{{ user.claims.NAME }}`; every token on the attack list is refused with one answer.
//!
//! The issuers' key sets are served by a small HTTP server in this test (real HTTP, real
//! RSA and ECDSA keys made by rcgen, tokens signed by jsonwebtoken), which also counts how
//! often Sluice fetches them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::auth_common::{self, ADMIN_TOKEN};
use crate::common::{TestGateway, pg_datasource_yaml};

const AUDIENCE: &str = "api://orders";
const ISSUER: &str = "https://tenant.example/";
const OTHER_ISSUER: &str = "https://clerk.example";
const OTHER_AUDIENCE: &str = "api://clerk";

/// A signing key and its public JWK (with `kid`).
struct Key {
    encoding: EncodingKey,
    jwk: Jwk,
    alg: Algorithm,
    public_pem: String,
}

impl Key {
    fn rsa(kid: &str) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        Key::from_pair(&pair, kid, Algorithm::RS256)
    }

    fn ec(kid: &str) -> Key {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
        Key::from_pair(&pair, kid, Algorithm::ES256)
    }

    fn from_pair(pair: &rcgen::KeyPair, kid: &str, alg: Algorithm) -> Key {
        let pem = pair.serialize_pem();
        let encoding = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("public JWK");
        jwk.common.key_id = Some(kid.into());
        Key {
            encoding,
            jwk,
            alg,
            public_pem: pair.public_key_pem(),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = self.jwk.common.key_id.clone();
        header
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1",
        "exp": now() + 600, "iat": now() - 5,
        "email": "ann@example.com", "email_verified": true, "groups": ["devs"],
        "tenant": "t-42", "plan": "gold",
    })
}

fn with(changes: Value) -> Value {
    let mut base = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            base.as_object_mut().unwrap().remove(name);
        } else {
            base[name] = value.clone();
        }
    }
    base
}

/// Serves `/jwks` (the issuer's keys) and `/other-jwks` and `/attacker-jwks`, counting
/// fetches of `/jwks`.
struct KeyServer {
    base: String,
    fetches: Arc<AtomicUsize>,
    /// Requests for the discovery document of the issuer at `{base}/down` (always 503).
    discoveries: Arc<AtomicUsize>,
}

async fn key_server(issuer: JwkSet, other: JwkSet, attacker: JwkSet) -> KeyServer {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    let discoveries = Arc::new(AtomicUsize::new(0));
    let asked = discoveries.clone();
    let app = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(move || {
                let counted = counted.clone();
                let body = serde_json::to_string(&issuer).unwrap();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    body
                }
            }),
        )
        .route(
            "/other-jwks",
            axum::routing::get(move || {
                let body = serde_json::to_string(&other).unwrap();
                async move { body }
            }),
        )
        .route(
            "/attacker-jwks",
            axum::routing::get(move || {
                let body = serde_json::to_string(&attacker).unwrap();
                async move { body }
            }),
        )
        .route(
            "/down/.well-known/openid-configuration",
            axum::routing::get(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::SERVICE_UNAVAILABLE }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    KeyServer {
        base,
        fetches,
        discoveries,
    }
}

struct Setup {
    gateway: TestGateway,
    keys: KeyServer,
    rsa: Key,
    ec: Key,
    attacker: Key,
    _dir: tempfile::TempDir,
}

fn catalog() -> String {
    format!(
        r#"
datasources:
{}apps:
  api:
    visibility: workspace
    grants: {{ roles: [viewer, developer] }}
    queries:
      whoami:
        datasource: pg
        sql: >-
          SELECT {{{{ user.id }}}}::text AS id, {{{{ user.email }}}}::text AS email,
          {{{{ user.role }}}}::text AS role, {{{{ user.claims.tenant }}}}::text AS tenant,
          {{{{ user.claims.plan }}}}::text AS plan, array_to_string({{{{ user.groups }}}}::text[], ',') AS groups
  priv:
    visibility: private
    grants: {{ roles: [viewer, developer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
"#,
        pg_datasource_yaml("pg")
    )
}

async fn setup() -> Setup {
    let (rsa, ec, other, attacker) = (
        Key::rsa("rsa-1"),
        Key::ec("ec-1"),
        Key::rsa("other-1"),
        Key::rsa("attacker"),
    );
    let keys = key_server(
        JwkSet {
            keys: vec![rsa.jwk.clone(), ec.jwk.clone()],
        },
        JwkSet {
            keys: vec![other.jwk.clone()],
        },
        JwkSet {
            keys: vec![attacker.jwk.clone()],
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sso.yaml");
    std::fs::write(
        &file,
        format!(
            "egress_allow: [127.0.0.0/8]
jwt:
  - name: auth0
    issuer: '{ISSUER}'
    jwks_url: {base}/jwks
    audience: ['{AUDIENCE}']
    algorithms: [RS256, ES256]
    groups_claim: groups
    role_groups: {{ developer: [devs], admin: [admins] }}
    claims: [tenant]
  - name: clerk
    issuer: '{OTHER_ISSUER}'
    jwks_url: {base}/other-jwks
    audience: ['{OTHER_AUDIENCE}']
  - name: down
    issuer: {base}/down
    audience: ['{AUDIENCE}']
",
            base = keys.base
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    let (gateway, _clock) = auth_common::gateway_with(
        &catalog(),
        &[
            ("SLUICE_SSO_FILE", &file),
            ("SLUICE_PUBLIC_URL", "http://127.0.0.1:1"),
            ("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    Setup {
        gateway,
        keys,
        rsa,
        ec,
        attacker,
        _dir: dir,
    }
}

/// Runs `whoami` with `token`; status and body (request id replaced).
async fn run(setup: &Setup, app: &str, query: &str, token: &str) -> (u16, String) {
    let response = setup
        .gateway
        .client
        .post(
            setup
                .gateway
                .url(&format!("/v1/apps/{app}/queries/{query}")),
        )
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(r#"{"params": {}}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, response.text().await.unwrap().replace(&id, "<id>"))
}

fn unsigned(header: Value, claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(&header), part(claims))
}

#[tokio::test]
async fn a_valid_token_runs_as_its_issuer_and_subject_with_declared_claims() {
    let setup = setup().await;
    for key in [&setup.rsa, &setup.ec] {
        let (status, body) = run(&setup, "api", "whoami", &key.sign(&claims())).await;
        assert_eq!(status, 200, "{body}");
        let rows: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            rows["rows"][0],
            json!([
                "auth0:user-1",
                "ann@example.com",
                "developer",
                "t-42",
                null,
                "devs"
            ]),
            "the id is prefixed, the role comes from the groups, the undeclared `plan` is \
             NULL: {body}"
        );
    }
    // An email the issuer does not say is verified is not bound.
    let token = setup.rsa.sign(&with(json!({ "email_verified": null })));
    let (status, body) = run(&setup, "api", "whoami", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("ann@example.com"), "{body}");
    // A group that maps to admin still makes a developer: tokens never make admins.
    let token = setup.rsa.sign(&with(json!({ "groups": ["admins"] })));
    let (status, body) = run(&setup, "api", "whoami", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"developer\""), "{body}");

    // A token caller is no member of a private app (answered as missing), may not manage
    // an account, and never reaches the admin API.
    let token = setup.rsa.sign(&claims());
    let (status, _) = run(&setup, "priv", "q", &token).await;
    assert_eq!(status, 404);
    let client = &setup.gateway.client;
    let sessions = client
        .get(setup.gateway.url("/v1/auth/sessions"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(sessions.status().as_u16(), 403);
    let admin = client
        .get(setup.gateway.url("/v1/admin/users"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 401);
    let me: Value = client
        .get(setup.gateway.url("/v1/auth/me"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], "auth0:user-1", "{me}");
    assert_eq!(me["token"]["issuer"], "auth0", "{me}");
}

#[tokio::test]
async fn every_token_on_the_attack_list_is_refused_with_one_answer() {
    let setup = setup().await;
    let (rsa, attacker) = (&setup.rsa, &setup.attacker);
    let valid = claims();
    let header_with = |change: &dyn Fn(&mut Header)| {
        let mut header = rsa.header();
        change(&mut header);
        header
    };
    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            unsigned(
                json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" }),
                &valid,
            ),
        ),
        (
            "alg none, no kid",
            unsigned(json!({ "alg": "none" }), &valid),
        ),
        ("HS256 keyed with the RSA public key", {
            let key = EncodingKey::from_secret(rsa.public_pem.as_bytes()).unwrap();
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("rsa-1".into());
            jsonwebtoken::encode(&header, &valid, &key).unwrap()
        }),
        (
            "unknown kid",
            attacker.sign_with(header_with(&|h| h.kid = Some("nope".into())), &valid),
        ),
        (
            "kid with a path",
            attacker.sign_with(
                header_with(&|h| h.kid = Some("../../../../etc/passwd".into())),
                &valid,
            ),
        ),
        (
            "kid with SQL",
            attacker.sign_with(
                header_with(&|h| h.kid = Some("' OR '1'='1' --".into())),
                &valid,
            ),
        ),
        (
            "jku to the attacker's keys",
            attacker.sign_with(
                {
                    let mut h = attacker.header();
                    h.jku = Some(format!("{}/attacker-jwks", setup.keys.base));
                    h
                },
                &valid,
            ),
        ),
        (
            "x5u to the attacker's keys",
            attacker.sign_with(
                {
                    let mut h = attacker.header();
                    h.x5u = Some(format!("{}/attacker-jwks", setup.keys.base));
                    h
                },
                &valid,
            ),
        ),
        (
            "embedded jwk",
            attacker.sign_with(
                {
                    let mut h = attacker.header();
                    h.jwk = Some(attacker.jwk.clone());
                    h
                },
                &valid,
            ),
        ),
        (
            "embedded jwk under the issuer's kid",
            attacker.sign_with(
                {
                    let mut h = attacker.header();
                    h.kid = Some("rsa-1".into());
                    h.jwk = Some(attacker.jwk.clone());
                    h
                },
                &valid,
            ),
        ),
        ("expired", rsa.sign(&with(json!({ "exp": now() - 3600 })))),
        (
            "not yet valid",
            rsa.sign(&with(json!({ "nbf": now() + 3600 }))),
        ),
        (
            "issued in the future",
            rsa.sign(&with(json!({ "iat": now() + 3600 }))),
        ),
        ("no exp", rsa.sign(&with(json!({ "exp": null })))),
        (
            "wrong audience",
            rsa.sign(&with(json!({ "aud": "api://other" }))),
        ),
        ("no audience", rsa.sign(&with(json!({ "aud": null })))),
        (
            "unknown issuer",
            rsa.sign(&with(json!({ "iss": "https://evil.example/" }))),
        ),
        (
            "issuer spelled otherwise",
            rsa.sign(&with(json!({ "iss": "https://tenant.example" }))),
        ),
        ("no sub", rsa.sign(&with(json!({ "sub": null })))),
        (
            "one issuer's token presented as another's",
            rsa.sign(&with(json!({ "iss": OTHER_ISSUER, "aud": OTHER_AUDIENCE }))),
        ),
        (
            "another issuer's audience",
            rsa.sign(&with(json!({ "aud": OTHER_AUDIENCE }))),
        ),
        ("a tampered payload", {
            let token = rsa.sign(&valid);
            let parts: Vec<&str> = token.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(with(json!({ "sub": "admin" })).to_string());
            format!("{}.{forged}.{}", parts[0], parts[2])
        }),
        ("not a JWT", "a.b.c".into()),
    ];
    // The attacker's key under its own kid, on its own (no jku): unknown to the issuer.
    cases.push(("the attacker's own key", attacker.sign(&valid)));
    let mut answers = std::collections::BTreeSet::new();
    for (name, token) in &cases {
        let (status, body) = run(&setup, "api", "whoami", token).await;
        assert_eq!(status, 401, "{name}: {body}");
        answers.insert(body);
    }
    assert_eq!(answers.len(), 1, "refusals differ: {answers:#?}");
    // The valid token still works afterwards (nothing was poisoned).
    let (status, body) = run(&setup, "api", "whoami", &rsa.sign(&valid)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn unknown_kids_refetch_the_issuers_keys_at_most_once_per_interval() {
    let setup = setup().await;
    let (status, _) = run(&setup, "api", "whoami", &setup.rsa.sign(&claims())).await;
    assert_eq!(status, 200);
    let before = setup.keys.fetches.load(Ordering::SeqCst);
    assert_eq!(before, 1, "one fetch for the first token");
    for n in 0..30 {
        let token = setup.attacker.sign_with(
            {
                let mut h = setup.attacker.header();
                h.kid = Some(format!("made-up-{n}"));
                h
            },
            &claims(),
        );
        let (status, _) = run(&setup, "api", "whoami", &token).await;
        assert_eq!(status, 401);
    }
    let after = setup.keys.fetches.load(Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "30 made-up kids fetched the key set {} times",
        after - before
    );
    // An issuer whose discovery fails is not asked again for every token.
    for _ in 0..20 {
        let token = setup
            .rsa
            .sign(&with(json!({ "iss": format!("{}/down", setup.keys.base) })));
        let (status, _) = run(&setup, "api", "whoami", &token).await;
        assert_eq!(status, 401);
    }
    let asked = setup.keys.discoveries.load(Ordering::SeqCst);
    assert_eq!(
        asked, 1,
        "20 tokens asked the failing discovery {asked} times"
    );
}
