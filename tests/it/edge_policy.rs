//! The edge access policy end to end, through a real gateway on a socket and the local
//! PostgreSQL: IP allowlists (admin API and per app, with trusted proxies), CORS, the CSRF
//! check on cookie-authenticated writes, security headers, grants, the admin run endpoint and
//! the effective-policy report.
//!
//! Refusals are shown not to reach the datasource by counting rows an INSERT query leaves
//! in a PostgreSQL table ([`edge_common::Counter`]). Rate limits and concurrency caps are in
//! `tests/it/edge_limits.rs`.

use crate::auth_common;
use crate::common;
use crate::edge_common;

use std::collections::HashMap;
use std::sync::Arc;

use auth_common::*;
use common::*;
use edge_common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sluice::auth::Role;

/// Audit events named `name`, newest first.
async fn audit_events(gateway: &TestGateway, name: &str) -> Vec<sluice::store::audit::AuditEvent> {
    gateway
        .audit
        .list(500, None)
        .await
        .expect("audit log")
        .into_iter()
        .filter(|e| e.event == name)
        .collect()
}

/// Starts an instance on `catalog` and returns why it refused to start.
async fn start_error(catalog: &str) -> String {
    let spec = sluice::spec::yaml::parse(catalog).unwrap_or_else(|e| panic!("YAML: {e}"));
    let (password, salt) = test_secrets();
    let vars: HashMap<&str, String> = [
        ("SLUICE_LISTEN", "127.0.0.1:0".to_string()),
        ("SLUICE_ENCRYPTION_PASSWORD", password.clone()),
        ("SLUICE_ENCRYPTION_SALT", salt.clone()),
    ]
    .into_iter()
    .collect();
    let config = sluice::config::from_lookup(|name| vars.get(name).cloned()).expect("config");
    let store = sluice::store::SqliteStore::in_memory().expect("store");
    sluice::store::catalog::CatalogStore::replace_catalog(&store, &spec, "test")
        .expect("store catalog");
    let key = sluice::vault::InstanceKey::derive(password, salt).expect("key");
    match sluice::instance::Instance::with_parts(config, key, Arc::new(store)).await {
        Ok(_) => panic!("the instance started with a catalog it should refuse:\n{catalog}"),
        Err(error) => error.to_string(),
    }
}

/// Runs `sluice catalog apply` on `catalog` in a fresh data directory; returns whether it
/// succeeded and its stderr.
fn cli_apply(catalog: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("catalog.yaml");
    std::fs::write(&file, catalog).expect("write catalog");
    let (password, salt) = test_secrets();
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("init")
        .env_clear()
        .env("SLUICE_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("run sluice init");
    assert!(init.status.success(), "sluice init: {init:?}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["catalog", "apply", file.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLUICE_DATA_DIR", dir.path().join("data"))
        .env("SLUICE_ENCRYPTION_PASSWORD", password)
        .env("SLUICE_ENCRYPTION_SALT", salt)
        .output()
        .expect("run sluice");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// ----- IP allowlists ----------------------------------------------------------------------

#[tokio::test]
async fn admin_allowlist_trusts_forwarded_addresses_only_from_trusted_proxies() {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let token = ("authorization", bearer.as_str());
    let admin = async |gateway: &TestGateway, extra: &[(&str, &str)]| {
        let mut headers = vec![token];
        headers.extend_from_slice(extra);
        send(gateway, Method::GET, "/v1/admin/egress", &headers, None).await
    };

    // No trusted proxy: the socket peer (127.0.0.1) is the client, whatever it claims.
    let env = [
        ("SLUICE_ADMIN_ALLOWED_IPS", "10.0.0.0/8"),
        ("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let (gateway, _clock) = gateway_with(&catalog(), &env).await;
    let spoofs: [&[(&str, &str)]; 4] = [
        &[],
        &[("x-forwarded-for", "10.1.2.3")],
        &[("forwarded", "for=10.1.2.3")],
        &[("x-real-ip", "10.1.2.3")],
    ];
    for extra in spoofs {
        let reply = admin(&gateway, extra).await;
        assert_error(&format!("{extra:?}"), &reply, 403, "ip_not_allowed");
        assert_baseline_headers("admin refusal", &reply);
    }
    let refused = audit_events(&gateway, "ip_refused").await;
    assert_eq!(refused.len(), 4, "{refused:?}");
    for event in &refused {
        assert_eq!(event.ip.as_deref(), Some("127.0.0.1"), "{event:?}");
        assert!(
            event.details.as_deref().unwrap_or("").contains("admin"),
            "{event:?}"
        );
    }
    gateway.stop().await;

    // Behind a trusted proxy (127.0.0.1), the address the proxy recorded counts.
    let env = [
        ("SLUICE_ADMIN_ALLOWED_IPS", "10.0.0.0/8"),
        ("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SLUICE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let (gateway, _clock) = gateway_with(&catalog(), &env).await;
    let cases: [(&[(&str, &str)], u16); 11] = [
        (&[("x-forwarded-for", "10.1.2.3")], 200),
        (&[("x-forwarded-for", "192.0.2.1")], 403),
        (&[("forwarded", "for=10.1.2.3")], 200),
        (&[("forwarded", "for=\"10.1.2.3:4711\";proto=https")], 200),
        (&[("forwarded", "for=192.0.2.1")], 403),
        // The client wrote the left-most entry; the proxy appended the address it saw.
        (&[("x-forwarded-for", "10.6.6.6, 192.0.2.1")], 403),
        (
            &[
                ("x-forwarded-for", "10.6.6.6"),
                ("x-forwarded-for", "192.0.2.1"),
            ],
            403,
        ),
        (&[("forwarded", "for=10.6.6.6, for=192.0.2.1")], 403),
        // Whatever is left of the proxy's entry does not matter either way.
        (&[("x-forwarded-for", "192.0.2.1, 10.1.2.3")], 200),
        // Nothing forwarded: the proxy itself, which is not in the list.
        (&[], 403),
        // A hop that is not an address ends the walk at the proxy.
        (&[("x-forwarded-for", "10.1.2.3, unknown")], 403),
    ];
    for (extra, status) in cases {
        let reply = admin(&gateway, extra).await;
        if status == 200 {
            assert_eq!(reply.status, 200, "{extra:?}: {}", reply.text);
            assert!(reply.json()["datasources"].is_array(), "{}", reply.text);
        } else {
            assert_error(&format!("{extra:?}"), &reply, 403, "ip_not_allowed");
        }
    }
    let refused = audit_events(&gateway, "ip_refused").await;
    let ips: Vec<&str> = refused.iter().filter_map(|e| e.ip.as_deref()).collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert!(
        ips.contains(&"192.0.2.1") && ips.contains(&"127.0.0.1"),
        "{ips:?}"
    );
    assert!(!ips.iter().any(|ip| ip.starts_with("10.")), "{ips:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn app_allowlist_refuses_other_networks_before_the_datasource() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  office:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         allowed_ips: [10.0.0.0/8, \"2001:db8::/32\"]\n    queries:\n{}  open:\n    \
         visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "office"),
        counter.query("hit", "open"),
    );

    // Not behind a proxy: forwarded headers are the client's own words and change nothing.
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let spoofs: [&[(&str, &str)]; 4] = [
        &[],
        &[("x-forwarded-for", "10.1.2.3")],
        &[("x-forwarded-for", "2001:db8::5")],
        &[("forwarded", "for=\"[2001:db8::5]\"")],
    ];
    for extra in spoofs {
        let reply = run(&gateway, "office", "hit", extra).await;
        assert_error(&format!("{extra:?}"), &reply, 403, "ip_not_allowed");
        assert_baseline_headers("app refusal", &reply);
    }
    // A preflight is refused alike.
    let reply = preflight(&gateway, "office", "hit", "https://x.example", "POST", "").await;
    assert_error("preflight", &reply, 403, "ip_not_allowed");
    assert_eq!(
        counter.count("office").await,
        0,
        "a refused run reached PostgreSQL"
    );
    // Other apps are not restricted.
    run(&gateway, "open", "hit", &[]).await.expect_ok();
    assert_eq!(counter.count("open").await, 1);
    let refused = audit_events(&gateway, "ip_refused").await;
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(
        refused.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")
            && e.details.as_deref().unwrap_or("").contains("office")),
        "{refused:?}"
    );
    gateway.stop().await;

    // Behind a trusted proxy: its record of the client counts, IPv4 and IPv6.
    let (gateway, _clock) =
        gateway_with(&catalog, &[("SLUICE_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let cases: [(&[(&str, &str)], bool); 9] = [
        (&[("x-forwarded-for", "10.1.2.3")], true),
        (&[("x-forwarded-for", "2001:db8::5")], true),
        (&[("forwarded", "for=\"[2001:db8::5]:4711\"")], true),
        (&[("x-forwarded-for", "192.0.2.1")], false),
        (&[("x-forwarded-for", "2001:db9::5")], false),
        (&[("x-forwarded-for", "10.6.6.6, 192.0.2.1")], false),
        (&[("x-forwarded-for", "2001:db8::6, 2001:db9::5")], false),
        (&[("forwarded", "for=10.6.6.6, for=192.0.2.1")], false),
        (&[], false),
    ];
    for (extra, allowed) in cases {
        let reply = run(&gateway, "office", "hit", extra).await;
        if allowed {
            assert_eq!(reply.status, 200, "{extra:?}: {}", reply.text);
        } else {
            assert_error(&format!("{extra:?}"), &reply, 403, "ip_not_allowed");
        }
    }
    assert_eq!(counter.count("office").await, 3, "exactly the allowed runs");
    let ips: Vec<String> = audit_events(&gateway, "ip_refused")
        .await
        .into_iter()
        .filter_map(|e| e.ip)
        .collect();
    for ip in ["192.0.2.1", "2001:db9::5", "127.0.0.1"] {
        assert!(ips.iter().any(|i| i == ip), "{ip} not in {ips:?}");
    }
    gateway.stop().await;
    counter.drop().await;
}

// ----- CORS -------------------------------------------------------------------------------

#[tokio::test]
async fn cors_preflights_and_answers_name_only_listed_origins() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [viewer, developer] }}\n    \
         cors:\n      origins: [\"https://shop.example.com\"]\n      allow_headers: [X-Trace]\n      \
         max_age_secs: 120\n    queries:\n{}  plain:\n    visibility: workspace\n    \
         grants: {{ roles: [viewer, developer] }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "shop"),
        counter.query("hit", "plain"),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    user(&gateway, "dev@example.com", Role::Developer).await;
    let shop = "https://shop.example.com";

    let ok = preflight(
        &gateway,
        "shop",
        "hit",
        shop,
        "POST",
        "content-type, x-trace",
    )
    .await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(shop));
    assert_eq!(
        header(&ok, "access-control-allow-credentials"),
        Some("true")
    );
    let methods = header(&ok, "access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("POST"), "{methods}");
    let allowed = header(&ok, "access-control-allow-headers").unwrap_or("");
    assert!(
        allowed.contains("content-type") && allowed.contains("x-trace"),
        "{allowed}"
    );
    assert_eq!(header(&ok, "access-control-max-age"), Some("120"));
    assert!(
        header_all(&ok, "vary").contains("Origin"),
        "{:?}",
        ok.headers
    );
    assert_baseline_headers("preflight", &ok);

    let refusals = [
        ("https://evil.example", "POST", "content-type"),
        ("null", "POST", "content-type"),
        (
            "https://shop.example.com.evil.example",
            "POST",
            "content-type",
        ),
        ("http://shop.example.com", "POST", "content-type"),
        (shop, "DELETE", "content-type"),
        (shop, "POST", "x-other"),
    ];
    for (origin, method, headers) in refusals {
        let what = format!("{origin} {method} {headers}");
        let reply = preflight(&gateway, "shop", "hit", origin, method, headers).await;
        assert_error(&what, &reply, 403, "cors_refused");
        assert!(
            reply.headers.get("access-control-allow-origin").is_none(),
            "{what}"
        );
        assert!(
            reply
                .headers
                .get("access-control-allow-credentials")
                .is_none(),
            "{what}"
        );
        assert!(header_all(&reply, "vary").contains("Origin"), "{what}");
    }
    // An app without `cors` is same-origin only.
    let reply = preflight(&gateway, "plain", "hit", shop, "POST", "content-type").await;
    assert_error("no cors", &reply, 403, "cors_refused");
    assert!(reply.headers.get("access-control-allow-origin").is_none());

    // The real request from the listed origin, with the cookie, is answered for it.
    let cookie = session_cookie(&gateway, "vic@example.com").await;
    let reply = run(
        &gateway,
        "shop",
        "hit",
        &[("cookie", &cookie), ("origin", shop)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(header(&reply, "access-control-allow-origin"), Some(shop));
    assert_eq!(
        header(&reply, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(header_all(&reply, "vary").contains("Origin"));
    // Errors are readable by the listed page too (a 401 it can act on).
    let reply = run(&gateway, "shop", "hit", &[("origin", shop)]).await;
    assert_error("anonymous", &reply, 401, "unauthenticated");
    assert_eq!(header(&reply, "access-control-allow-origin"), Some(shop));

    // Another origin gets no CORS grant; a key still runs (CORS only stops a browser
    // from reading the answer), but nothing names the caller's origin.
    let key = api_key(&gateway, "dev@example.com", json!({ "apps": ["shop"] })).await;
    let bearer = format!("Bearer {key}");
    for origin in ["https://evil.example", "null"] {
        let reply = run(
            &gateway,
            "shop",
            "hit",
            &[("authorization", &bearer), ("origin", origin)],
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            reply.headers.get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(
            reply
                .headers
                .get("access-control-allow-credentials")
                .is_none()
        );
        assert!(header_all(&reply, "vary").contains("Origin"), "{origin}");
    }
    assert_eq!(counter.count("shop").await, 3);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn wildcard_cors_is_answered_without_credentials_and_only_for_public_apps() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  open:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         cors: {{ origins: [\"*\"] }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "open"),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let anyone = "https://anyone.example";
    let ok = preflight(&gateway, "open", "hit", anyone, "POST", "content-type").await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some("*"));
    assert!(ok.headers.get("access-control-allow-credentials").is_none());
    let reply = run(&gateway, "open", "hit", &[("origin", anyone)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(header(&reply, "access-control-allow-origin"), Some("*"));
    assert!(
        reply
            .headers
            .get("access-control-allow-credentials")
            .is_none()
    );
    // `*` never vouches for a cookie: a signed-in write from that page is a CSRF refusal.
    user(&gateway, "vic@example.com", Role::Viewer).await;
    let cookie = session_cookie(&gateway, "vic@example.com").await;
    let reply = run(
        &gateway,
        "open",
        "hit",
        &[("cookie", &cookie), ("origin", anyone)],
    )
    .await;
    assert_error("cookie from *", &reply, 403, "csrf_refused");
    assert_eq!(counter.count("open").await, 1);
    gateway.stop().await;

    // On a workspace app `*` does not compile: not at start, not at apply.
    let workspace = format!(
        "{}apps:\n  ws:\n    visibility: workspace\n    grants: {{ roles: [viewer] }}\n    \
         cors: {{ origins: [\"*\"] }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "ws"),
    );
    let error = start_error(&workspace).await;
    assert!(error.contains("apps.ws.cors"), "{error}");
    let (applied, stderr) = cli_apply(&workspace);
    assert!(!applied, "catalog apply accepted `*` on a workspace app");
    assert!(stderr.contains("apps.ws.cors"), "{stderr}");
    // The same catalog with an exact origin applies.
    let exact = workspace.replace("\"*\"", "\"https://shop.example.com\"");
    let (applied, stderr) = cli_apply(&exact);
    assert!(applied, "{stderr}");
    counter.drop().await;
}

// ----- CSRF -------------------------------------------------------------------------------

#[tokio::test]
async fn cookie_writes_from_other_pages_are_refused_before_the_datasource() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [viewer, developer] }}\n    \
         cors: {{ origins: [\"https://shop.example.com\"] }}\n    queries:\n{}",
        datasources(),
        counter.query("hit", "shop"),
    );
    let (gateway, _clock) = gateway_with(
        &catalog,
        &[("SLUICE_PUBLIC_URL", "https://sluice.example.com")],
    )
    .await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    user(&gateway, "dev@example.com", Role::Developer).await;
    let cookie = session_cookie(&gateway, "vic@example.com").await;
    let cookie = ("cookie", cookie.as_str());

    let refused: [&[(&str, &str)]; 8] = [
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("origin", "https://shop.example.com.evil.example")],
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "none")],
        &[],
    ];
    for extra in refused {
        let mut headers = vec![cookie];
        headers.extend_from_slice(extra);
        let reply = run(&gateway, "shop", "hit", &headers).await;
        assert_error(&format!("{extra:?}"), &reply, 403, "csrf_refused");
        assert_baseline_headers("csrf refusal", &reply);
        // The refusal depends on `Origin`: a cache must not serve it to another page.
        assert!(
            header_all(&reply, "vary").contains("Origin"),
            "{extra:?}: no Vary: Origin on the refusal"
        );
    }
    assert_eq!(
        counter.count("shop").await,
        0,
        "a refused write reached PostgreSQL"
    );

    let own = format!("http://{}", gateway.address);
    let allowed: [&[(&str, &str)]; 4] = [
        &[("origin", "https://shop.example.com")],
        &[("origin", &own)],
        &[("origin", "https://sluice.example.com")],
        &[("sec-fetch-site", "same-origin")],
    ];
    for extra in allowed {
        let mut headers = vec![cookie];
        headers.extend_from_slice(extra);
        let reply = run(&gateway, "shop", "hit", &headers).await;
        assert_eq!(reply.status, 200, "{extra:?}: {}", reply.text);
    }
    assert_eq!(counter.count("shop").await, 4);

    // An API key is no ambient credential: no Origin needed, any Origin accepted.
    let key = api_key(&gateway, "dev@example.com", json!({ "apps": ["shop"] })).await;
    let bearer = format!("Bearer {key}");
    for extra in [vec![], vec![("origin", "https://evil.example")]] {
        let mut headers = vec![("authorization", bearer.as_str())];
        headers.extend(extra);
        let reply = run(&gateway, "shop", "hit", &headers).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(counter.count("shop").await, 6);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn account_and_admin_routes_refuse_cross_site_cookie_writes() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    queries:\n{}",
        datasources(),
        counter.query("hit", "shop"),
    );
    let (gateway, clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("vic@example.com").await;
    let cookie = browser.cookie.clone().expect("cookie");
    let session_id = browser.get("/v1/auth/me").await.expect_ok()["session"]["id"]
        .as_str()
        .expect("session id")
        .to_string();

    let cross_site: [&[(&str, &str)]; 3] = [
        &[("origin", "https://evil.example")],
        &[("sec-fetch-site", "cross-site")],
        &[],
    ];
    for extra in cross_site {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        let what = format!("logout {extra:?}");
        let reply = send(
            &gateway,
            Method::POST,
            "/v1/auth/logout",
            &headers,
            Some(json!({})),
        )
        .await;
        assert_error(&what, &reply, 403, "csrf_refused");
        assert!(
            reply.set_cookies().is_empty(),
            "{what}: {:?}",
            reply.headers
        );
        let path = format!("/v1/auth/sessions/{session_id}");
        let reply = send(&gateway, Method::DELETE, &path, &headers, None).await;
        assert_error(
            &format!("end session {extra:?}"),
            &reply,
            403,
            "csrf_refused",
        );
        assert_eq!(browser.me().await, 200, "{what}: the session ended");
    }
    // Reads need no Origin.
    let reply = send(
        &gateway,
        Method::GET,
        "/v1/auth/me",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // The same page may sign out.
    let reply = browser.post("/v1/auth/logout", json!({})).await;
    assert!(reply.status < 300, "{}", reply.text);
    let reply = send(
        &gateway,
        Method::GET,
        "/v1/auth/me",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text);

    // The admin API: an admin's cookie cannot be ridden into running a query.
    let (_admin, mut admin, _secret) = enrolled_admin(&gateway, &clock, "root@example.com").await;
    let admin_cookie = admin.cookie.clone().expect("admin cookie");
    let path = "/v1/admin/apps/shop/queries/hit/run";
    for extra in cross_site {
        let mut headers = vec![("cookie", admin_cookie.as_str())];
        headers.extend_from_slice(extra);
        let reply = send(
            &gateway,
            Method::POST,
            path,
            &headers,
            Some(json!({ "params": {} })),
        )
        .await;
        assert_error(&format!("admin run {extra:?}"), &reply, 403, "csrf_refused");
    }
    assert_eq!(
        counter.count("shop").await,
        0,
        "a refused admin run reached PostgreSQL"
    );
    admin.post(path, json!({ "params": {} })).await.expect_ok();
    assert_eq!(counter.count("shop").await, 1);
    gateway.stop().await;
    counter.drop().await;
}

// ----- Security headers -------------------------------------------------------------------

/// One request of the security-header survey and the status it should get.
struct Probe<'a> {
    what: &'a str,
    method: Method,
    path: String,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<Value>,
    status: u16,
}

fn probe<'a>(
    what: &'a str,
    method: Method,
    path: &str,
    headers: &[(&'a str, &'a str)],
    body: Option<Value>,
    status: u16,
) -> Probe<'a> {
    Probe {
        what,
        method,
        path: path.to_string(),
        headers: headers.to_vec(),
        body,
        status,
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let catalog = format!(
        r#"{}apps:
  pub:
    visibility: public
    grants: {{ anonymous: true }}
    cors: {{ origins: ["https://shop.example.com"] }}
    queries:
      ok:
        datasource: pg
        sql: SELECT 1 AS one
      typed:
        datasource: pg
        sql: SELECT {{{{ params.n }}}}::int AS n
        params:
          n: {{ type: int, required: true }}
      limited:
        datasource: pg
        sql: SELECT 1 AS one
        limits: {{ per_ip: 1/minute }}
      broken:
        datasource: pg
        sql: SELECT 1 / 0 AS boom
  ws:
    visibility: workspace
    grants: {{ roles: [viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
"#,
        datasources()
    );
    let (gateway, _clock) = gateway_with(&catalog, &[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let query = |q: &str| format!("/v1/apps/pub/queries/{q}");
    let params = |v: Value| Some(json!({ "params": v }));
    let shop = ("origin", "https://shop.example.com");
    let preflight_headers = [shop, ("access-control-request-method", "POST")];
    run(&gateway, "pub", "limited", &[]).await.expect_ok();
    let evil_preflight = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "POST"),
    ];
    let wrong_login = json!({ "email": "x@example.com", "password": "wrong-password-123" });
    let same_origin = [("sec-fetch-site", "same-origin")];
    let token = [("authorization", bearer.as_str())];
    let post = Method::POST;
    let get = Method::GET;
    let cases = [
        probe(
            "success",
            post.clone(),
            &query("ok"),
            &[],
            params(json!({})),
            200,
        ),
        probe(
            "cors success",
            post.clone(),
            &query("ok"),
            &[shop],
            params(json!({})),
            200,
        ),
        probe(
            "bad params",
            post.clone(),
            &query("typed"),
            &[],
            params(json!({ "n": "x" })),
            400,
        ),
        probe(
            "unknown query",
            post.clone(),
            &query("nope"),
            &[],
            params(json!({})),
            404,
        ),
        probe("unknown path", get.clone(), "/v1/nope", &[], None, 404),
        probe("wrong method", get.clone(), &query("ok"), &[], None, 405),
        probe(
            "anonymous",
            post.clone(),
            "/v1/apps/ws/queries/q",
            &[],
            params(json!({})),
            401,
        ),
        probe(
            "rate limited",
            post.clone(),
            &query("limited"),
            &[],
            params(json!({})),
            429,
        ),
        probe(
            "database error",
            post.clone(),
            &query("broken"),
            &[],
            params(json!({})),
            400,
        ),
        probe(
            "preflight",
            Method::OPTIONS,
            &query("ok"),
            &preflight_headers,
            None,
            204,
        ),
        probe(
            "refused preflight",
            Method::OPTIONS,
            &query("ok"),
            &evil_preflight,
            None,
            403,
        ),
        probe("healthz", get.clone(), "/healthz", &[], None, 200),
        probe("readyz", get.clone(), "/readyz", &[], None, 200),
        probe("auth me", get.clone(), "/v1/auth/me", &[], None, 401),
        probe(
            "auth login",
            post.clone(),
            "/v1/auth/login",
            &same_origin,
            Some(wrong_login),
            401,
        ),
        probe("admin", get.clone(), "/v1/admin/egress", &token, None, 200),
        probe("admin refused", get, "/v1/admin/egress", &[], None, 401),
    ];
    for case in cases {
        let what = case.what;
        let reply = send(&gateway, case.method, &case.path, &case.headers, case.body).await;
        assert_eq!(reply.status, case.status, "{what}: {}", reply.text);
        assert_baseline_headers(what, &reply);
        if case.status == 429 {
            assert_error(what, &reply, 429, "rate_limited");
            assert!(header(&reply, "retry-after").is_some(), "{what}");
        }
    }
    gateway.stop().await;
}

#[tokio::test]
async fn app_header_overrides_apply_to_that_apps_answers() {
    let catalog = format!(
        r#"{}apps:
  portal:
    visibility: public
    grants: {{ anonymous: true }}
    headers:
      frame_ancestors: ["'self'", "https://portal.example.com"]
      referrer_policy: strict-origin-when-cross-origin
    queries:
      ok:
        datasource: pg
        sql: SELECT 1 AS one
      typed:
        datasource: pg
        sql: SELECT {{{{ params.n }}}}::int AS n
        params:
          n: {{ type: int, required: true }}
  embed:
    visibility: public
    grants: {{ anonymous: true }}
    headers:
      content_security_policy: "default-src 'none'; frame-ancestors https://intranet.example.com"
    queries:
      ok:
        datasource: pg
        sql: SELECT 1 AS one
  plain:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      ok:
        datasource: pg
        sql: SELECT 1 AS one
"#,
        datasources()
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let framed = "default-src 'none'; frame-ancestors 'self' https://portal.example.com";
    let ok = run(&gateway, "portal", "ok", &[]).await;
    let bad = send(
        &gateway,
        Method::POST,
        "/v1/apps/portal/queries/typed",
        &[],
        Some(json!({ "params": { "n": "x" } })),
    )
    .await;
    for (what, reply, status) in [("portal ok", &ok, 200), ("portal 400", &bad, 400)] {
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
        assert_security_headers(what, reply);
        assert_eq!(
            header(reply, "content-security-policy"),
            Some(framed),
            "{what}"
        );
        assert!(
            reply.headers.get("x-frame-options").is_none(),
            "{what}: {:?}",
            reply.headers
        );
        assert_eq!(
            header(reply, "referrer-policy"),
            Some("strict-origin-when-cross-origin"),
            "{what}"
        );
    }
    let embed = run(&gateway, "embed", "ok", &[]).await;
    assert_eq!(embed.status, 200, "{}", embed.text);
    assert_security_headers("embed", &embed);
    assert_eq!(
        header(&embed, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors https://intranet.example.com")
    );
    assert!(embed.headers.get("x-frame-options").is_none());
    assert_eq!(header(&embed, "referrer-policy"), Some("no-referrer"));
    // Other apps keep the baseline.
    let plain = run(&gateway, "plain", "ok", &[]).await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    assert_baseline_headers("plain", &plain);

    // The reset page keeps its own (page) CSP; the baseline only fills the gaps.
    let page = send(&gateway, Method::GET, "/auth/reset", &[], None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_security_headers("reset page", &page);
    assert_eq!(
        header(&page, "content-security-policy"),
        Some(sluice::auth::pages::PAGE_CSP)
    );
    assert_eq!(header(&page, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&page, "referrer-policy"), Some("no-referrer"));
    gateway.stop().await;
}

/// The admin console: its own strict policy over the baseline, every asset with its type and
/// an ETag to revalidate, the same answer on every instance; `SLUICE_CONSOLE=off` makes its
/// paths unknown while the API it calls stays.
#[tokio::test]
async fn the_console_has_its_own_strict_headers_and_can_be_turned_off() {
    let catalog = format!("{}apps: {{}}\n", datasources());
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let reply = send(&gateway, Method::GET, path, &[], None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        // The baseline headers but one: static files are revalidated, not refetched.
        assert_eq!(header(&reply, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header(&reply, "referrer-policy"), Some("no-referrer"));
        assert!(reply.headers.get("strict-transport-security").is_none());
        assert_eq!(header(&reply, "content-type"), Some(content_type), "{path}");
        let csp = header(&reply, "content-security-policy").unwrap_or("");
        assert_eq!(csp, sluice::console::CONSOLE_CSP, "{path}");
        assert!(!csp.contains("unsafe-"), "{path}: {csp}");
        assert_eq!(header(&reply, "x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(header(&reply, "cache-control"), Some("no-cache"), "{path}");
        assert!(reply.headers.get("x-request-id").is_some(), "{path}");
        let etag = header(&reply, "etag").expect("an ETag").to_string();
        let again = send(
            &gateway,
            Method::GET,
            path,
            &[("if-none-match", &etag)],
            None,
        )
        .await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.text.is_empty(), "{path}");
    }
    // Without a session the page loads, and every call it makes is refused.
    for path in [
        "/v1/auth/me",
        "/v1/admin/apps",
        "/v1/admin/users",
        "/v1/auth/api-keys",
    ] {
        let reply = send(&gateway, Method::GET, path, &[], None).await;
        assert_error(path, &reply, 401, "unauthenticated");
    }
    gateway.stop().await;

    let (off, _clock) = gateway_with(&catalog, &[("SLUICE_CONSOLE", "off")]).await;
    for path in ["/console", "/console/console.js", "/console/console.css"] {
        let reply = send(&off, Method::GET, path, &[], None).await;
        assert_error(path, &reply, 404, "not_found");
    }
    let me = send(&off, Method::GET, "/v1/auth/me", &[], None).await;
    assert_error("me with the console off", &me, 401, "unauthenticated");
    off.stop().await;
}

// ----- Grants -----------------------------------------------------------------------------

#[tokio::test]
async fn grants_decide_who_runs_a_query_before_the_datasource() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  ws:\n    visibility: workspace\n    \
         grants: {{ roles: [developer], groups: [finance] }}\n    queries:\n{}{}{}        \
         grants: {{ roles: [viewer] }}\n",
        datasources(),
        counter.query("q", "q"),
        counter.query("other", "other"),
        counter.query("viewers", "viewers"),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "dev@example.com", Role::Developer).await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    gateway
        .auth
        .create_user(
            "fin@example.com",
            "",
            Role::Viewer,
            vec!["finance".into()],
            Some(PASSWORD.into()),
            "test",
        )
        .await
        .expect("create fin");
    let mut dev = Browser::new(&gateway);
    dev.login_ok("dev@example.com").await;
    let mut vic = Browser::new(&gateway);
    vic.login_ok("vic@example.com").await;
    let mut fin = Browser::new(&gateway);
    fin.login_ok("fin@example.com").await;

    // App grant: developers and the finance group.
    dev.run("ws", "q").await.expect_ok();
    fin.run("ws", "q").await.expect_ok();
    let reply = vic.run("ws", "q").await;
    assert_error("viewer", &reply, 403, "not_granted");
    let reply = run(&gateway, "ws", "q", &[]).await;
    assert_error("anonymous", &reply, 401, "unauthenticated");
    assert_eq!(
        counter.count("q").await,
        2,
        "a refused run reached PostgreSQL"
    );

    // A query's own grant replaces the app's: developers and finance are out, viewers in.
    vic.run("ws", "viewers").await.expect_ok();
    fin.run("ws", "viewers").await.expect_ok();
    let reply = dev.run("ws", "viewers").await;
    assert_error("developer on viewers", &reply, 403, "not_granted");
    assert_eq!(counter.count("viewers").await, 2);

    // An API key only reaches its scope, even where its owner is granted.
    let key = api_key(&gateway, "dev@example.com", json!({ "queries": ["ws/q"] })).await;
    let mut client = Browser::with_key(&gateway, &key);
    client.run("ws", "q").await.expect_ok();
    let reply = client.run("ws", "other").await;
    assert_error("key scope", &reply, 403, "outside_key_scope");
    dev.run("ws", "other").await.expect_ok();
    assert_eq!(counter.count("q").await, 3);
    assert_eq!(counter.count("other").await, 1);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn an_ungranted_query_runs_only_through_the_admin_api() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  locked:\n    visibility: workspace\n    queries:\n{}  open:\n    \
         visibility: public\n    queries:\n{}",
        datasources(),
        counter.query("secret", "locked"),
        counter.query("hit", "open"),
    );
    let (gateway, clock) = gateway_with(&catalog, &[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    user(&gateway, "dev@example.com", Role::Developer).await;
    let mut dev = Browser::new(&gateway);
    dev.login_ok("dev@example.com").await;
    let (_admin, mut admin, _secret) = enrolled_admin(&gateway, &clock, "root@example.com").await;
    assert_eq!(admin.me().await, 200);

    assert_error(
        "anonymous",
        &run(&gateway, "locked", "secret", &[]).await,
        401,
        "unauthenticated",
    );
    assert_error(
        "developer",
        &dev.run("locked", "secret").await,
        403,
        "not_granted",
    );
    assert_error(
        "admin session",
        &admin.run("locked", "secret").await,
        403,
        "not_granted",
    );
    // A public app without grants is no more open.
    assert_error(
        "public, anonymous",
        &run(&gateway, "open", "hit", &[]).await,
        401,
        "unauthenticated",
    );
    assert_error(
        "public, developer",
        &dev.run("open", "hit").await,
        403,
        "not_granted",
    );
    assert_eq!(
        counter.count("locked").await + counter.count("open").await,
        0
    );

    // The admin API runs it: with the token, and with an admin session.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let path = "/v1/admin/apps/locked/queries/secret/run";
    let reply = send(
        &gateway,
        Method::POST,
        path,
        &[("authorization", &bearer)],
        Some(json!({ "params": {} })),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["row_count"], 1, "{}", reply.text);
    admin.post(path, json!({ "params": {} })).await.expect_ok();
    assert_eq!(counter.count("locked").await, 2);
    // Nobody else may use it.
    assert_error(
        "developer, admin run",
        &dev.post(path, json!({ "params": {} })).await,
        403,
        "forbidden",
    );
    let reply = send(
        &gateway,
        Method::POST,
        path,
        &[],
        Some(json!({ "params": {} })),
    )
    .await;
    assert_error("anonymous admin run", &reply, 401, "unauthenticated");
    let reply = send(
        &gateway,
        Method::POST,
        path,
        &[("authorization", "Bearer wrong-token")],
        Some(json!({ "params": {} })),
    )
    .await;
    assert_error("wrong token", &reply, 401, "unauthenticated");
    let reply = send(
        &gateway,
        Method::POST,
        "/v1/admin/apps/locked/queries/nope/run",
        &[("authorization", &bearer)],
        Some(json!({ "params": {} })),
    )
    .await;
    assert_error("unknown query", &reply, 404, "not_found");
    assert_eq!(counter.count("locked").await, 2);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn anonymous_grants_outside_public_apps_do_not_compile() {
    let counter = Counter::create().await;
    for (visibility, at_app) in [("workspace", true), ("private", true), ("workspace", false)] {
        let (app_grants, query_grants) = if at_app {
            ("    grants: { anonymous: true }\n", "")
        } else {
            (
                "    grants: { roles: [viewer] }\n",
                "        grants: { anonymous: true }\n",
            )
        };
        let catalog = format!(
            "{}apps:\n  app:\n    visibility: {visibility}\n{app_grants}    queries:\n{}{query_grants}",
            datasources(),
            counter.query("q", "q"),
        );
        let location = if at_app {
            "apps.app.grants"
        } else {
            "apps.app.queries.q.grants"
        };
        let error = start_error(&catalog).await;
        assert!(error.contains(location), "{visibility}: {error}");
        assert!(error.contains("anonymous"), "{visibility}: {error}");
    }
    counter.drop().await;
}

// ----- The effective-policy report -------------------------------------------------------

#[tokio::test]
async fn the_policy_report_shows_the_effective_policy_and_no_secret() {
    let catalog = format!(
        r#"{}apps:
  shop:
    visibility: workspace
    grants: {{ roles: [viewer] }}
    allowed_ips: [10.0.0.0/8, "2001:db8::/32"]
    cors:
      origins: ["https://shop.example.com"]
      max_age_secs: 300
    headers:
      frame_ancestors: ["'self'"]
      referrer_policy: same-origin
    limits:
      per_user: 10/minute
      max_concurrency: 2
    queries:
      list:
        datasource: pg
        sql: SELECT 'canary_sql_text_51f0' AS marker
      special:
        datasource: pg
        sql: SELECT 'canary_sql_text_51f0' AS marker, {{{{ user.id }}}}::text AS me
        grants: {{ groups: [ops] }}
        limits:
          per_user: 3/minute
          per_ip: 20/minute
          max_concurrency: 1
      unlimited:
        datasource: pg
        sql: SELECT 1 AS one
        limits: {{ per_user: "off" }}
  locked:
    visibility: private
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
"#,
        datasources()
    );
    let env = [
        ("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("SLUICE_RATE_LIMIT_PER_KEY", "100/minute"),
        ("SLUICE_RATE_LIMIT_PER_IP", "1000/minute"),
    ];
    let (gateway, _clock) = gateway_with(&catalog, &env).await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let get = async |path: &str| {
        send(
            &gateway,
            Method::GET,
            path,
            &[("authorization", &bearer)],
            None,
        )
        .await
    };
    let reply = get("/v1/admin/apps/shop/policy").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_baseline_headers("policy report", &reply);
    let report = reply.json();
    assert_eq!(report["app"], "shop");
    assert_eq!(report["visibility"], "workspace");
    assert_eq!(
        report["allowed_ips"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    assert_eq!(
        report["cors"]["origins"],
        json!(["https://shop.example.com"])
    );
    assert_eq!(report["cors"]["credentials"], true);
    assert_eq!(report["cors"]["max_age_secs"], 300);
    assert_eq!(
        report["headers"]["content-security-policy"],
        "default-src 'none'; frame-ancestors 'self'"
    );
    assert_eq!(report["headers"]["referrer-policy"], "same-origin");
    assert_eq!(report["headers"]["x-frame-options"], Value::Null);
    assert_eq!(report["headers"]["strict-transport-security"], Value::Null);
    assert_eq!(report["instance"]["per_ip"], "1000 per minute");

    let queries = &report["queries"];
    let list = &queries["list"];
    assert_eq!(list["grants"]["roles"], json!(["viewer"]), "{list}");
    assert_eq!(list["runnable"], true);
    assert_eq!(
        list["limits"]["per_user"]["rule"], "10 per minute",
        "{list}"
    );
    assert_eq!(list["limits"]["per_user"]["set_at"], "app");
    assert_eq!(list["limits"]["per_key"]["rule"], "100 per minute");
    assert_eq!(list["limits"]["per_key"]["set_at"], "instance");
    assert_eq!(list["limits"]["per_ip"], Value::Null);
    assert_eq!(list["limits"]["max_concurrency"], 2);

    let special = &queries["special"];
    assert_eq!(special["grants"]["roles"], json!([]), "{special}");
    assert_eq!(special["grants"]["groups"], json!(["ops"]));
    assert_eq!(special["runnable"], true);
    assert_eq!(special["binds_user"], true);
    assert_eq!(special["limits"]["per_user"]["rule"], "3 per minute");
    assert_eq!(special["limits"]["per_user"]["set_at"], "query");
    assert_eq!(special["limits"]["per_ip"]["rule"], "20 per minute");
    assert_eq!(special["limits"]["per_ip"]["set_at"], "query");
    assert_eq!(special["limits"]["max_concurrency"], 1);
    // `off` at the query wins over the app's limit.
    assert_eq!(queries["unlimited"]["limits"]["per_user"], Value::Null);

    let locked = get("/v1/admin/apps/locked/policy").await.expect_ok();
    assert_eq!(locked["visibility"], "private");
    assert_eq!(locked["queries"]["q"]["runnable"], false, "{locked}");
    assert_eq!(locked["cors"], Value::Null);
    assert_eq!(locked["allowed_ips"], json!([]));
    let missing = get("/v1/admin/apps/nope/policy").await;
    assert_error("unknown app", &missing, 404, "not_found");

    // Names and rules only: no template text, no datasource address or credential.
    for text in [&reply.text, &locked.to_string()] {
        for secret in [
            "canary_sql_text_51f0",
            "SELECT",
            "enc:v1",
            ADMIN_TOKEN,
            "5432",
        ] {
            assert!(
                !text.contains(secret),
                "the report shows `{secret}`: {text}"
            );
        }
    }
    // The view plane's users cannot read it.
    user(&gateway, "vic@example.com", Role::Viewer).await;
    let mut vic = Browser::new(&gateway);
    vic.login_ok("vic@example.com").await;
    assert_error(
        "viewer",
        &vic.get("/v1/admin/apps/shop/policy").await,
        403,
        "forbidden",
    );
    gateway.stop().await;
}

// ----- Names as the router sees them --------------------------------------------------------

#[tokio::test]
async fn percent_encoded_app_names_meet_the_apps_policy() {
    let counter = Counter::create().await;
    let catalog = format!(
        "{}apps:\n  office:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         allowed_ips: [10.0.0.0/8]\n    queries:\n{}  shop:\n    visibility: workspace\n    \
         grants: {{ roles: [viewer] }}\n    cors: {{ origins: [\"https://shop.example.com\"] }}\n    \
         queries:\n{}",
        datasources(),
        counter.query("hit", "office"),
        counter.query("hit", "shop"),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    let cookie = session_cookie(&gateway, "vic@example.com").await;
    let body = || Some(json!({ "params": {} }));

    // The router decodes `%6F` to `o` for the handler; the allowlist must see the same name.
    for path in [
        "/v1/apps/%6Fffice/queries/hit",
        "/v1/apps/%6f%66%66ice/queries/hit",
        "/v1/apps/office/queries/%68it",
    ] {
        let reply = send(&gateway, Method::POST, path, &[], body()).await;
        assert_error(path, &reply, 403, "ip_not_allowed");
    }
    assert_eq!(
        counter.count("office").await,
        0,
        "an encoded name skipped the allowlist"
    );

    // Nor may an encoded name skip the CSRF check.
    let evil = [
        ("cookie", cookie.as_str()),
        ("origin", "https://evil.example"),
    ];
    for path in [
        "/v1/apps/%73hop/queries/hit",
        "/v1/apps/s%68op/queries/%68it",
    ] {
        let reply = send(&gateway, Method::POST, path, &evil, body()).await;
        assert_error(path, &reply, 403, "csrf_refused");
    }
    assert_eq!(
        counter.count("shop").await,
        0,
        "an encoded name skipped the CSRF check"
    );
    // It is the same app, with the same CORS answers.
    let listed = [
        ("cookie", cookie.as_str()),
        ("origin", "https://shop.example.com"),
    ];
    let reply = send(
        &gateway,
        Method::POST,
        "/v1/apps/%73hop/queries/hit",
        &listed,
        body(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        header(&reply, "access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(counter.count("shop").await, 1);
    gateway.stop().await;
    counter.drop().await;
}

#[tokio::test]
async fn the_edge_answers_for_private_apps_as_for_missing_ones() {
    let catalog = format!(
        r#"{}apps:
  hidden:
    visibility: private
    grants: {{ roles: [viewer] }}
    cors: {{ origins: ["https://hidden.example.com"] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
  quiet:
    visibility: private
    grants: {{ roles: [viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 1 AS one
"#,
        datasources()
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "out@example.com", Role::Viewer).await;
    let cookie = session_cookie(&gateway, "out@example.com").await;
    let evil = "https://evil.example";
    let mut answers: Vec<(String, Vec<(u16, String)>)> = Vec::new();
    for app in ["hidden", "quiet", "nothere"] {
        let path = format!("/v1/apps/{app}/queries/q");
        let body = || Some(json!({ "params": {} }));
        let replies = [
            preflight(&gateway, app, "q", evil, "POST", "content-type").await,
            send(&gateway, Method::POST, &path, &[("origin", evil)], body()).await,
            send(
                &gateway,
                Method::POST,
                &path,
                &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
                body(),
            )
            .await,
            send(
                &gateway,
                Method::POST,
                &path,
                &[("cookie", &cookie), ("origin", evil)],
                body(),
            )
            .await,
        ];
        for reply in &replies {
            assert!(
                reply.headers.get("access-control-allow-origin").is_none(),
                "{app}"
            );
        }
        let summary = replies
            .iter()
            .map(|r| {
                (
                    r.status,
                    if r.text.is_empty() {
                        String::new()
                    } else {
                        r.code()
                    },
                )
            })
            .collect();
        answers.push((app.to_string(), summary));
    }
    let expected = vec![
        (403, "cors_refused".to_string()),
        (404, "not_found".to_string()),
        (404, "not_found".to_string()),
        (403, "csrf_refused".to_string()),
    ];
    for (app, summary) in &answers {
        assert_eq!(summary, &expected, "{app}: {answers:?}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn account_routes_answer_cors_only_for_origins_an_app_lists() {
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [viewer] }}\n    \
         cors: {{ origins: [\"https://shop.example.com\"] }}\n    queries:\n      q:\n        \
         datasource: pg\n        sql: SELECT 1 AS one\n  open:\n    visibility: public\n    \
         grants: {{ anonymous: true }}\n    cors: {{ origins: [\"*\"] }}\n    queries:\n      q:\n        \
         datasource: pg\n        sql: SELECT 1 AS one\n",
        datasources(),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "vic@example.com", Role::Viewer).await;
    let shop = "https://shop.example.com";
    let account_preflight = async |path: &str, origin: &str, method: &str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", "content-type"),
        ];
        send(&gateway, Method::OPTIONS, path, &headers, None).await
    };
    let ok = account_preflight("/v1/auth/login", shop, "POST").await;
    assert_eq!(ok.status, 204, "{}", ok.text);
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(shop));
    assert_eq!(
        header(&ok, "access-control-allow-credentials"),
        Some("true")
    );
    assert_baseline_headers("account preflight", &ok);
    // `*` on a public app lists no origin for the account API; nor does a stranger's page.
    for origin in ["https://anyone.example", "https://evil.example", "null"] {
        let reply = account_preflight("/v1/auth/login", origin, "POST").await;
        assert_error(origin, &reply, 403, "cors_refused");
        assert!(
            reply.headers.get("access-control-allow-origin").is_none(),
            "{origin}"
        );
    }
    // The admin API is same-origin only, even for listed origins.
    let reply = account_preflight("/v1/admin/egress", shop, "GET").await;
    assert_error("admin preflight", &reply, 403, "cors_refused");
    assert!(reply.headers.get("access-control-allow-origin").is_none());

    let login = json!({ "email": "vic@example.com", "password": PASSWORD });
    let reply = send(
        &gateway,
        Method::POST,
        "/v1/auth/login",
        &[("origin", shop)],
        Some(login.clone()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(header(&reply, "access-control-allow-origin"), Some(shop));
    let reply = send(
        &gateway,
        Method::POST,
        "/v1/auth/login",
        &[("origin", "https://evil.example")],
        Some(login),
    )
    .await;
    assert!(
        reply.headers.get("access-control-allow-origin").is_none(),
        "{:?}",
        reply.headers
    );
    gateway.stop().await;
}

#[tokio::test]
async fn sign_in_from_another_site_is_refused_even_without_a_cookie() {
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [viewer] }}\n    \
         cors: {{ origins: [\"https://shop.example.com\"] }}\n    queries:\n      q:\n        \
         datasource: pg\n        sql: SELECT 1 AS one\n",
        datasources(),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    user(&gateway, "lin@example.com", Role::Viewer).await;
    let body = serde_json::json!({ "email": "lin@example.com", "password": PASSWORD });
    // Login CSRF: a page elsewhere must not sign the visitor's browser into an account.
    for origin in ["https://evil.example", "null"] {
        let reply = send(
            &gateway,
            Method::POST,
            "/v1/auth/login",
            &[("origin", origin)],
            Some(body.clone()),
        )
        .await;
        assert_error(origin, &reply, 403, "csrf_refused");
        assert!(header(&reply, "set-cookie").is_none(), "{origin}");
    }
    let reset = send(
        &gateway,
        Method::POST,
        "/v1/auth/password-reset",
        &[("origin", "https://evil.example")],
        Some(serde_json::json!({ "email": "lin@example.com" })),
    )
    .await;
    assert_error("reset from evil", &reset, 403, "csrf_refused");
    // The instance itself, an origin an app lists, and clients sending no Origin may.
    let host = format!("http://{}", gateway.address);
    for headers in [
        vec![("origin", host.as_str())],
        vec![("origin", "https://shop.example.com")],
        vec![],
    ] {
        let reply = send(
            &gateway,
            Method::POST,
            "/v1/auth/login",
            &headers,
            Some(body.clone()),
        )
        .await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.text);
        assert!(header(&reply, "set-cookie").is_some(), "{headers:?}");
    }
    gateway.stop().await;
}

/// An origin an app lists may sign users in and out cross-origin, but never reach the
/// account's secrets (MFA enrolment, API keys, password, sessions).
#[tokio::test]
async fn listed_origins_get_cors_only_on_the_sign_in_routes() {
    let catalog = format!(
        "{}apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [viewer] }}\n    \
         cors: {{ origins: [\"https://shop.example.com\"] }}\n    queries:\n      q:\n        \
         datasource: pg\n        sql: SELECT 1 AS one\n",
        datasources(),
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let shop = "https://shop.example.com";
    let preflight = async |path: &str| {
        let headers = [
            ("origin", shop),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ];
        send(&gateway, Method::OPTIONS, path, &headers, None).await
    };
    for path in [
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/auth/password-reset",
    ] {
        let reply = preflight(path).await;
        assert_eq!(reply.status, 204, "{path}: {}", reply.text);
        assert_eq!(
            header(&reply, "access-control-allow-origin"),
            Some(shop),
            "{path}"
        );
    }
    for path in [
        "/v1/auth/mfa/enroll",
        "/v1/auth/api-keys",
        "/v1/auth/password",
        "/v1/auth/logout-everywhere",
        "/v1/auth/reauth",
    ] {
        let reply = preflight(path).await;
        assert_error(path, &reply, 403, "cors_refused");
        assert!(
            header(&reply, "access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    gateway.stop().await;
}
