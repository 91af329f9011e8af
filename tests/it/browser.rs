//! The browser tests (tests/browser/run.mjs) in Debian's chromium, headless, through
//! playwright-core: the demo page, NDJSON streaming, CORS with credentials from another
//! origin, the CSRF check against a hostile form, framing. This test runs the servers: the
//! `sluice demo` instance, a gateway on the local PostgreSQL, and two static origins (an
//! app's and a hostile site's, each on its own port). The admin console has its own test
//! (tests/browser/console.mjs), which also takes the screenshots of docs/console/.
//!
//! It fails, never skips, when chromium or the npm packages are missing: scripts/test
//! installs both (`apt-get install chromium`, `npm ci --prefix tests/browser`).

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;

use crate::common;

use common::*;

const APP_PAGE: &str = include_str!("../browser/app.html");
const HOSTILE_PAGE: &str = include_str!("../browser/hostile.html");
const FRAME_PAGE: &str = include_str!("../browser/frame.html");

/// Serves the static pages of another origin on `listener`.
fn serve_origin(listener: tokio::net::TcpListener) {
    let html = |body: &'static str| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body);
    let router = Router::new()
        .route("/app.html", get(move || async move { html(APP_PAGE) }))
        .route(
            "/hostile.html",
            get(move || async move { html(HOSTILE_PAGE) }),
        )
        .route("/frame.html", get(move || async move { html(FRAME_PAGE) }))
        .route(
            "/client.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    sluice::demo::page::CLIENT,
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
}

/// Runs `command` (a node script that prints `ok: NAME` or `FAILED: NAME` per check) within
/// `limit`; fails unless it exits 0 and printed `ok:` for each of `checks`. Its output is
/// printed for the test log.
async fn run_checks(
    mut command: tokio::process::Command,
    what: &str,
    limit: Duration,
    checks: &[&str],
) {
    let output = tokio::time::timeout(limit, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("the {what} finish within {limit:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    for name in checks {
        assert!(stdout.contains(&format!("ok: {name}")), "{name}: {stdout}");
    }
}

fn chromium() -> String {
    let path = std::env::var("SLUICE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "chromium is missing at {path}: scripts/test installs it (apt-get install chromium)"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_work_in_real_chromium() {
    let chromium = chromium();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: scripts/test installs it (npm ci --prefix tests/browser)"
    );

    // The demo instance, as `sluice demo` serves it.
    let demo = sluice::demo::prepare("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo");
    let demo_listener = demo.instance.bind().await.unwrap();
    let demo_address = demo_listener.local_addr().unwrap();
    let (_stop_demo, demo_stopped) = tokio::sync::oneshot::channel::<()>();
    let demo_directory = demo.directory;
    tokio::spawn(demo.instance.serve(demo_listener, async move {
        let _ = demo_stopped.await;
    }));

    // The two other origins.
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_origin = format!("http://{}", app_listener.local_addr().unwrap());
    let hostile_origin = format!("http://{}", hostile_listener.local_addr().unwrap());
    serve_origin(app_listener);
    serve_origin(hostile_listener);

    // A gateway on PostgreSQL whose apps list (or not) the app's origin.
    let catalog = format!(
        r#"
datasources:
{pg}
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    cors: {{ origins: ["{app_origin}"] }}
    queries:
      slow:
        datasource: pg
        sql: SELECT g, pg_sleep(0.3)::text AS slept FROM generate_series(1, 5) g
        timeout_ms: 10000
  staff:
    visibility: workspace
    grants: {{ roles: [viewer] }}
    cors: {{ origins: ["{app_origin}"] }}
    queries:
      q: {{ datasource: pg, sql: SELECT 1 AS one }}
  closed:
    visibility: workspace
    grants: {{ roles: [viewer] }}
    queries:
      q: {{ datasource: pg, sql: SELECT 1 AS one }}
"#,
        pg = pg_datasource_yaml("pg").trim_end(),
    );
    let gateway = TestGateway::start(&catalog).await;
    let email = format!("{}@example.com", unique_name("viewer"));
    let password = "correct horse battery staple 42";
    gateway
        .auth
        .create_user(
            &email,
            "",
            sluice::auth::Role::Viewer,
            vec![],
            Some(password.into()),
            "test",
        )
        .await
        .expect("user");

    let mut run = tokio::process::Command::new("node");
    run.arg(root.join("tests/browser/run.mjs"))
        .env("CHROMIUM", &chromium)
        .env("DEMO", format!("http://{demo_address}"))
        .env("GATEWAY", gateway.url(""))
        .env("APP_ORIGIN", &app_origin)
        .env("HOSTILE_ORIGIN", &hostile_origin)
        .env("EMAIL", &email)
        .env("PASSWORD", password);
    run_checks(
        run,
        "browser tests",
        Duration::from_secs(180),
        &[
            "the demo page runs a query and the rows appear",
            "NDJSON: the first rows show before the last are produced",
            "another origin calls with credentials when allowed, and is refused when not",
            "a hostile page's form POST with the session cookie is refused by the CSRF check",
        ],
    )
    .await;
    drop(demo_directory);
}

/// The admin console (tests/browser/console.mjs): sign-in and MFA enrolment, editing a
/// query (served at once, a stale tab's conflict, a compile error at its line, preview,
/// history and rollback), datasources, users, keys, the audit log and egress pages, a
/// viewer's view, no data without a session, and framing. Takes a screenshot of each page
/// (into docs/console/ with `UPDATE_SCREENSHOTS=1`, else into a temporary folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_real_chromium() {
    let chromium = chromium();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: scripts/test installs it (npm ci --prefix tests/browser)"
    );
    // The hostile site that frames the console.
    let hostile_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile_origin = format!("http://{}", hostile_listener.local_addr().unwrap());
    serve_origin(hostile_listener);

    let catalog = format!(
        r#"
datasources:
{pg}
apps:
  shop:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      greeting:
        datasource: pg
        description: A word of welcome
        sql: SELECT 'hello' AS word
"#,
        pg = pg_datasource_yaml("pg").trim_end(),
    );
    let gateway = TestGateway::start_with(
        &catalog,
        &[
            ("SLUICE_EGRESS_PUBLIC_IPS", "203.0.113.7"),
            ("SLUICE_AUTH_RATE_PER_MINUTE", "1000"),
        ],
    )
    .await;
    let password = "correct horse battery staple 42";
    // Fixed names (each gateway has a store of its own): they show in the screenshots.
    let admin = "ada@example.com".to_string();
    let viewer = "vera@example.com".to_string();
    for (email, role) in [
        (&admin, sluice::auth::Role::Admin),
        (&viewer, sluice::auth::Role::Viewer),
    ] {
        gateway
            .auth
            .create_user(email, "", role, vec![], Some(password.into()), "test")
            .await
            .expect("user");
    }

    // A second gateway whose clock the test moves (through a small endpoint of its own), so
    // a developer's sign-in is no longer fresh and the console must ask for the password.
    let clock = sluice::clock::ManualClock::new();
    let recheck = TestGateway::start_clocked(
        sluice::spec::yaml::parse(&catalog).expect("catalog"),
        &[("SLUICE_AUTH_RATE_PER_MINUTE", "1000")],
        std::sync::Arc::new(clock.clone()),
    )
    .await;
    let developer = "dev@example.com".to_string();
    recheck
        .auth
        .create_user(
            &developer,
            "",
            sluice::auth::Role::Developer,
            vec![],
            Some(password.into()),
            "test",
        )
        .await
        .expect("developer");
    let clock_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock_url = format!("http://{}/advance", clock_listener.local_addr().unwrap());
    let advance = Router::new().route(
        "/advance",
        axum::routing::post(move || {
            let clock = clock.clone();
            async move {
                clock.advance_secs(600);
                "advanced"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(clock_listener, advance).await });

    // Every run takes the screenshots; they replace the committed ones in docs/console/ only
    // when asked (UPDATE_SCREENSHOTS=1), so a test run leaves the tree clean.
    let shot_dir = tempfile::tempdir().unwrap();
    let shots = if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        root.join("docs/console")
    } else {
        shot_dir.path().to_path_buf()
    };
    let mut run = tokio::process::Command::new("node");
    run.arg(root.join("tests/browser/console.mjs"))
        .env("RECHECK_GATEWAY", recheck.url(""))
        .env("DEVELOPER_EMAIL", &developer)
        .env("ADVANCE_CLOCK", &clock_url)
        .env("CHROMIUM", &chromium)
        .env("GATEWAY", gateway.url(""))
        .env("HOSTILE_ORIGIN", &hostile_origin)
        .env("ADMIN_EMAIL", &admin)
        .env("VIEWER_EMAIL", &viewer)
        .env("PASSWORD", password)
        .env("PG_HOST", PG_HOST)
        .env("PG_PORT", PG_PORT.to_string())
        .env("SHOTS", &shots);
    run_checks(
        run,
        "console tests",
        Duration::from_secs(240),
        &[
            "the console has a strict CSP and no console API call works without a session",
            "sign in, enrol MFA (QR code, secret, recovery codes), sign out, sign in with MFA",
            "the console edits a query, the change serves at once, and a stale second tab gets the conflict",
            "datasources: create one with a write-only password, set it again, test it step by step",
            "users (disable, enable), API keys (shown once, revoked), audit log filters, egress",
            "a viewer sees no admin pages, and the API refuses them anyway",
            "a change that needs fresh authentication asks for the password, then goes through",
            "the console cannot be framed",
        ],
    )
    .await;
    gateway.stop().await;
    recheck.stop().await;
}

/// The console on an SSO-only instance (tests/browser/console-sso.mjs), with the real test
/// OpenID provider: the provider's link instead of a password form, and a sign-in through it
/// that lands back on the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_through_single_sign_on() {
    let chromium = chromium();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let setup = crate::sso::setup(
        "normal",
        "    create_users: true\n",
        &[("SLUICE_SSO_ONLY", "true")],
    )
    .await;
    let mut run = tokio::process::Command::new("node");
    run.arg(root.join("tests/browser/console-sso.mjs"))
        .env("CHROMIUM", &chromium)
        .env("GATEWAY", setup.gateway.url(""));
    run_checks(
        run,
        "console SSO checks",
        Duration::from_secs(120),
        &[
            "the sign-in page offers the provider and no password",
            "the provider signs in and the console shows the account",
        ],
    )
    .await;
}
