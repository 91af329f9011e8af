//! Prometheus `/metrics` and a `/readyz` that means something (docs/DEPLOY.md, "Metrics" and
//! "Health checks").
//!
//! The scrape is parsed by the reference parser, PyPI `prometheus-client`
//! (`scripts/parse-metrics.py`), and checked for the families and values the requests before
//! it must have produced: answers by app, query and status (a canary param value, a failing
//! query, an unreachable datasource, an egress refusal, a rate limit, an unknown name), pool
//! use, sign-in failures and a lockout, the catalog revision and the build. The canary value,
//! the email tried and the client address must appear nowhere in it. `/metrics` on the main
//! listener opens only with its token (anything else is the unknown-path 404), and the
//! metrics listener of the real binary serves it without one.
//!
//! `/readyz` runs against a store on disk whose database file is moved away and back: 503
//! `store_unavailable` while it is gone, 200 again once it is back, and `/healthz` 200
//! throughout.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::auth::Role;
use sluice::spec::yaml;
use sluice::store::SqliteStore;

use crate::auth_common::{Browser, OTHER_PASSWORD, user};
use crate::common::served::{Served, apply_catalog, free_port, sluice_with_test_key};
use crate::common::{TestGateway, pg_datasource_yaml, seal, unique_name};

/// The metrics token of the gateways that enable it.
const TOKEN: &str = "test-metrics-token-5a4b3c2d1e0f9a8b7c6d5e4f";

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: Value,
}

/// A scrape as the reference parser read it: family name -> (type, samples).
struct Scrape {
    text: String,
    families: BTreeMap<String, (String, Vec<Sample>)>,
}

impl Scrape {
    /// Parses `text` with `scripts/parse-metrics.py`; fails the test if the parser refuses it.
    fn parse(text: String) -> Scrape {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/parse-metrics.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3 scripts/parse-metrics.py");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the Prometheus parser refused the scrape (install it with `pip install \
             prometheus-client`; scripts/test does): {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Value = serde_json::from_slice(&out.stdout).expect("parser output");
        let mut families = BTreeMap::new();
        for family in parsed.as_array().expect("a list of families") {
            let samples = family["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| Sample {
                    name: s["name"].as_str().unwrap().to_string(),
                    labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                    value: s["value"].clone(),
                })
                .collect();
            families.insert(
                family["name"].as_str().unwrap().to_string(),
                (family["type"].as_str().unwrap().to_string(), samples),
            );
        }
        Scrape { text, families }
    }

    fn family(&self, name: &str) -> &(String, Vec<Sample>) {
        self.families.get(name).unwrap_or_else(|| {
            panic!(
                "no family {name}; the parser read {:?}",
                self.families.keys().collect::<Vec<_>>()
            )
        })
    }

    /// The value of the sample `name` with exactly `labels`, if there is one.
    fn value(&self, family: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.family(family)
            .1
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value.as_f64().expect("a finite value"))
    }

    fn requests(&self, app: &str, query: &str, status: &str) -> Option<f64> {
        self.value(
            "sluice_query_requests",
            "sluice_query_requests_total",
            &[("app", app), ("query", query), ("status", status)],
        )
    }
}

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// A 404 body without its request id, to compare two of them.
fn without_request_id(body: &str) -> Value {
    let mut json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["error"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("not an error: {body}"))
        .remove("request_id");
    json
}

fn catalog() -> String {
    // `down` listens nowhere; `walled` is this machine, which no egress list allows.
    let down_port = free_port();
    format!(
        "datasources:\n{}  down:\n    kind: postgres\n    host: 127.0.0.1\n    port: {down_port}\n    \
         database: test\n    user: postgres\n    password: {}\n    egress_allow: [127.0.0.1/32]\n  \
         walled:\n    kind: postgres\n    host: 127.0.0.1\n    port: 5432\n    database: test\n    \
         user: postgres\n    password: {}\n\
         apps:\n  shop:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n      \
         echo:\n        datasource: pg\n        sql: SELECT {{{{ params.word }}}}::text AS word\n        \
         params:\n          word: {{ type: text, required: true }}\n      \
         broken:\n        datasource: pg\n        sql: SELECT * FROM no_such_table_for_metrics\n      \
         unreachable:\n        datasource: down\n        sql: SELECT 1 AS one\n      \
         fenced:\n        datasource: walled\n        sql: SELECT 1 AS one\n  \
         busy:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         limits: {{ per_ip: 1/minute }}\n    queries:\n      \
         once:\n        datasource: pg\n        sql: SELECT 1 AS one\n",
        pg_datasource_yaml("pg"),
        seal("down", "password", "unused"),
        seal("walled", "password", "unused"),
    )
}

#[tokio::test]
async fn the_scrape_parses_and_counts_names_and_codes_never_values() {
    let canary = unique_name("canary");
    let email = format!("{}@example.com", unique_name("nobody"));
    let spec = yaml::parse(&catalog()).unwrap();
    let gateway = TestGateway::start_spec(
        spec,
        &[
            ("SLUICE_METRICS_TOKEN", TOKEN),
            ("SLUICE_LOCKOUT_THRESHOLD", "2"),
            ("SLUICE_AUTH_RATE_PER_MINUTE", "1000"),
        ],
    )
    .await;

    let (status, body) = gateway
        .call("shop", "echo", json!({ "word": canary }))
        .await;
    assert_eq!(
        (status, body["rows"][0][0].as_str()),
        (200, Some(canary.as_str()))
    );
    gateway
        .call("shop", "echo", json!({ "word": "again" }))
        .await;
    let (status, _) = gateway
        .call("shop", "echo", json!({ "wrod": canary }))
        .await;
    assert_eq!(status, 400);
    let (status, body) = gateway.call("shop", "broken", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("query_failed"))
    );
    let (status, body) = gateway.call("shop", "unreachable", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("datasource_unavailable"))
    );
    let (status, body) = gateway.call("shop", "fenced", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("egress_refused"))
    );
    assert_eq!(gateway.call("busy", "once", json!({})).await.0, 200);
    assert_eq!(gateway.call("busy", "once", json!({})).await.0, 429);
    // Names the catalog does not have are all one series, whatever they are.
    let (status, _) = gateway.call(&canary, "echo", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(gateway.call("shop", &canary, json!({})).await.0, 404);
    // Sign-in failures: an unknown account, then an account locked by two wrong passwords.
    let mut browser = Browser::new(&gateway);
    assert_eq!(browser.login(&email, OTHER_PASSWORD).await.status, 401);
    let locked = format!("{}@example.com", unique_name("locked"));
    user(&gateway, &locked, Role::Viewer).await;
    for _ in 0..3 {
        assert_eq!(browser.login(&locked, OTHER_PASSWORD).await.status, 401);
    }

    let (status, content_type, text) =
        get(&gateway.client, &gateway.url("/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let scrape = Scrape::parse(text);

    assert_eq!(scrape.family("sluice_query_requests").0, "counter");
    assert_eq!(scrape.requests("shop", "echo", "200"), Some(2.0));
    assert_eq!(scrape.requests("shop", "echo", "400"), Some(1.0));
    assert_eq!(scrape.requests("shop", "broken", "502"), Some(1.0));
    assert_eq!(scrape.requests("shop", "unreachable", "503"), Some(1.0));
    assert_eq!(scrape.requests("shop", "fenced", "502"), Some(1.0));
    assert_eq!(scrape.requests("busy", "once", "200"), Some(1.0));
    assert_eq!(scrape.requests("busy", "once", "429"), Some(1.0));
    assert_eq!(scrape.requests("(unknown)", "(unknown)", "404"), Some(2.0));
    let apps: std::collections::BTreeSet<&str> = scrape
        .family("sluice_query_requests")
        .1
        .iter()
        .map(|s| s.labels["app"].as_str())
        .collect();
    assert_eq!(apps, ["(unknown)", "busy", "shop"].into_iter().collect());

    let (kind, samples) = scrape.family("sluice_query_duration_seconds");
    assert_eq!(kind, "histogram");
    let echo_200 = [("app", "shop"), ("query", "echo"), ("status", "200")];
    assert_eq!(
        scrape.value(
            "sluice_query_duration_seconds",
            "sluice_query_duration_seconds_count",
            &echo_200
        ),
        Some(2.0)
    );
    let mut with_inf = echo_200.to_vec();
    with_inf.push(("le", "+Inf"));
    assert_eq!(
        scrape.value(
            "sluice_query_duration_seconds",
            "sluice_query_duration_seconds_bucket",
            &with_inf
        ),
        Some(2.0)
    );
    assert!(samples.iter().any(|s| s.name.ends_with("_sum")));

    for datasource in ["pg", "down", "walled"] {
        assert_eq!(
            scrape.value(
                "sluice_datasource_pool_in_use",
                "sluice_datasource_pool_in_use",
                &[("datasource", datasource)]
            ),
            Some(0.0),
            "{datasource}"
        );
    }
    assert_eq!(
        scrape.value(
            "sluice_datasource_pool_size",
            "sluice_datasource_pool_size",
            &[("datasource", "pg")]
        ),
        Some(4.0)
    );
    assert_eq!(
        scrape.value(
            "sluice_datasource_pool_waiting",
            "sluice_datasource_pool_waiting",
            &[("datasource", "pg")]
        ),
        Some(0.0)
    );
    assert_eq!(
        scrape.value(
            "sluice_datasource_connect_failures",
            "sluice_datasource_connect_failures_total",
            &[("datasource", "down"), ("class", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "sluice_egress_refusals",
            "sluice_egress_refusals_total",
            &[("datasource", "walled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "sluice_rate_limit_refusals",
            "sluice_rate_limit_refusals_total",
            &[("limit", "query_address")]
        ),
        Some(1.0)
    );
    let failures = |reason| {
        scrape.value(
            "sluice_sign_in_failures",
            "sluice_sign_in_failures_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(failures("unknown_account"), Some(1.0));
    assert_eq!(failures("wrong_password"), Some(2.0));
    assert_eq!(failures("locked"), Some(1.0));
    assert_eq!(
        scrape.value(
            "sluice_account_lockouts",
            "sluice_account_lockouts_total",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("sluice_catalog_revision", "sluice_catalog_revision", &[]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            "sluice_build_info",
            "sluice_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", sluice::COMMIT)
            ]
        ),
        Some(1.0)
    );

    // Names and codes only: not the param value, the email tried, or the client's address.
    for secret in [
        canary.as_str(),
        email.as_str(),
        locked.as_str(),
        "127.0.0.1",
    ] {
        assert!(
            !scrape.text.contains(secret),
            "{secret} is in the scrape:\n{}",
            scrape.text
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn metrics_on_the_main_listener_open_only_with_the_token() {
    let spec = yaml::parse("apps: {}\n").unwrap();
    let gateway = TestGateway::start_spec(spec.clone(), &[("SLUICE_METRICS_TOKEN", TOKEN)]).await;
    let client = &gateway.client;
    let (status, _, unknown) = get(client, &gateway.url("/no-such-path"), None).await;
    assert_eq!(status, 404);
    let unknown = without_request_id(&unknown);
    let wrong = format!("{TOKEN}x");
    for token in [None, Some(wrong.as_str()), Some(""), Some(&TOKEN[..32])] {
        let (status, _, body) = get(client, &gateway.url("/metrics"), token).await;
        assert_eq!(status, 404, "{token:?}: {body}");
        assert_eq!(without_request_id(&body), unknown, "{token:?}");
    }
    // Without the token, another method is not a 405 either (that would tell the path exists).
    let response = client
        .post(gateway.url("/metrics"))
        .header("authorization", "Bearer nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    // A token in another scheme is no token.
    let response = client
        .get(gateway.url("/metrics"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = client
        .post(gateway.url("/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let (status, _, text) = get(client, &gateway.url("/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    Scrape::parse(text);
    gateway.stop().await;

    // Without a token configured, /metrics is an unknown path, token or not.
    let gateway = TestGateway::start_spec(spec, &[]).await;
    let (status, _, body) = get(&gateway.client, &gateway.url("/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 404);
    assert_eq!(without_request_id(&body), unknown);
    gateway.stop().await;
}

#[tokio::test]
async fn the_instance_rate_limit_is_counted_without_the_address() {
    let spec = yaml::parse("apps: {}\n").unwrap();
    let gateway = TestGateway::start_spec(
        spec,
        &[
            ("SLUICE_METRICS_TOKEN", TOKEN),
            ("SLUICE_RATE_LIMIT_PER_IP", "2/minute"),
            ("SLUICE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let client = &gateway.client;
    let address = "203.0.113.77";
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(gateway.url("/v1/auth/me"))
            .header("x-forwarded-for", address)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // The scraper is another address, with a bucket of its own.
    let (status, _, text) = get(client, &gateway.url("/metrics"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    let scrape = Scrape::parse(text);
    assert_eq!(
        scrape.value(
            "sluice_rate_limit_refusals",
            "sluice_rate_limit_refusals_total",
            &[("limit", "address")]
        ),
        Some(1.0)
    );
    assert!(!scrape.text.contains(address));
    gateway.stop().await;
}

#[tokio::test]
async fn the_metrics_listener_of_the_binary_serves_metrics_only() {
    let dir = tempfile::tempdir().unwrap();
    apply_catalog(
        dir.path(),
        &format!(
            "datasources:\n{}apps:\n  shop:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
             queries:\n      one:\n        datasource: pg\n        sql: SELECT 1 AS one\n",
            pg_datasource_yaml("pg")
        ),
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut served = Served::start(
        sluice_with_test_key(dir.path(), &["serve"]).env("SLUICE_METRICS_LISTEN", &metrics),
    )
    .await;
    let client = &served.client;
    let response = client
        .post(served.url("/v1/apps/shop/queries/one"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let url = |path: &str| format!("http://{metrics}{path}");
    let (status, content_type, text) = get(client, &url("/metrics"), None).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let scrape = Scrape::parse(text);
    assert_eq!(scrape.requests("shop", "one", "200"), Some(1.0));
    // It serves nothing else, and the main listener has no /metrics (no token is set).
    for path in ["/healthz", "/v1/apps/shop/queries/one", "/metrics/"] {
        let (status, _, body) = get(client, &url(path), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
            "not_found"
        );
    }
    let response = client.post(url("/metrics")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let (status, _, _) = get(client, &served.url("/metrics"), None).await;
    assert_eq!(status, 404);
    served.terminate().await;
}

#[tokio::test]
async fn readyz_fails_while_the_store_file_is_gone_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let spec = yaml::parse("apps: {}\n").unwrap();
    let gateway = TestGateway::start_on_store(store, spec, &[]).await;
    let client = &gateway.client;
    let (status, _, body) = get(client, &gateway.url("/readyz"), None).await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ready\"}"));

    // The volume went away: the file is no longer where the store opened it.
    let away = dir.path().join("away.db");
    std::fs::rename(&path, &away).unwrap();
    let body = wait_for_readyz(&gateway, 503).await;
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "store_unavailable", "{body}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("metadata store") && message.contains("missing"),
        "{message}"
    );
    assert!(!message.contains(dir.path().to_str().unwrap()), "{message}");
    // Liveness does not depend on the store.
    let (status, _, _) = get(client, &gateway.url("/healthz"), None).await;
    assert_eq!(status, 200);

    std::fs::rename(&away, &path).unwrap();
    let body = wait_for_readyz(&gateway, 200).await;
    assert_eq!(body, "{\"status\":\"ready\"}");
    gateway.stop().await;
}

/// Polls `/readyz` until it answers `status` (an answer is reused for a second), and returns
/// the body.
async fn wait_for_readyz(gateway: &TestGateway, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (got, _, body) = get(&gateway.client, &gateway.url("/readyz"), None).await;
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {got} ({body}), not {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
