//! Key rotation against the real binary: `sluice key rotate` SIGKILLed at several points over
//! 150 PostgreSQL datasources (three catalog revisions) and a TOTP-enrolled admin sealed under
//! key A, with key B current and A as `SLUICE_ENCRYPTION_PASSWORD_OLD`. After every kill,
//! `sluice key status` finds every value under A or B and opening for its owner, and a
//! gateway with B + A-old starts (every pool opens its secret) and answers; a rerun
//! completes; a gateway keeps answering while a rotation runs; then a gateway without the
//! old key serves, the admin signs in with a TOTP code, and a rollback to the first revision
//! still works. The admin endpoint: rotation needs an admin with fresh auth; viewers,
//! developers and API keys get 403.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::auth::Role;
use sluice::store::SqliteStore;
use sluice::store::mfa::MfaStore;
use sluice::store::users::UserStore;
use sluice::vault::{InstanceKey, Owner};

use crate::auth_common::{self, Browser, PASSWORD, enrolled_admin, user};
use crate::common::served::{Served, sluice};
use crate::common::{PG_HOST, PG_PORT, seal, test_key, test_secrets};

const DATASOURCES: usize = 150;
const ADMIN_EMAIL: &str = "rotation-admin@example.com";

/// Key B: a second password and salt, fresh per test process.
fn key_b() -> &'static (String, String) {
    static B: OnceLock<(String, String)> = OnceLock::new();
    B.get_or_init(sluice::vault::keygen)
}

fn key_b_derived() -> &'static InstanceKey {
    static B: OnceLock<InstanceKey> = OnceLock::new();
    B.get_or_init(|| InstanceKey::derive(&key_b().0, &key_b().1).unwrap())
}

/// `sluice <args>` in `dir` with `current` as the instance key and `old` as the fallback.
fn with_keys(
    dir: &Path,
    current: &(String, String),
    old: Option<&(String, String)>,
    args: &[&str],
) -> Command {
    let mut command = sluice(dir, args);
    command
        .env("SLUICE_ENCRYPTION_PASSWORD", &current.0)
        .env("SLUICE_ENCRYPTION_SALT", &current.1)
        .env("SLUICE_DATA_DIR", dir.join("data"))
        .env("SLUICE_CATALOG_RELOAD_SECS", "1");
    if let Some(old) = old {
        command
            .env("SLUICE_ENCRYPTION_PASSWORD_OLD", &old.0)
            .env("SLUICE_ENCRYPTION_SALT_OLD", &old.1);
    }
    command
}

fn key_a() -> &'static (String, String) {
    test_secrets()
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// 150 PostgreSQL datasources (passwords sealed under key A) and an app with `queries`
/// queries on the first and the last of them.
fn catalog(queries: usize) -> String {
    let mut text = String::from("datasources:\n");
    for n in 0..DATASOURCES {
        let name = format!("pg{n:03}");
        text.push_str(&format!(
            "  {name}:\n    kind: postgres\n    host: {PG_HOST}\n    port: {PG_PORT}\n    database: test\n    user: postgres\n    password: {}\n    pool_size: 1\n    egress_allow: [127.0.0.1/32]\n",
            seal(&name, "password", &format!("pw-{name}"))
        ));
    }
    text.push_str(
        "apps:\n  rot:\n    visibility: public\n    grants: { anonymous: true }\n    queries:\n",
    );
    for q in 0..queries {
        let datasource = if q % 2 == 0 { "pg000" } else { "pg149" };
        text.push_str(&format!(
            "      q{q}:\n        datasource: {datasource}\n        sql: SELECT {q} AS n\n"
        ));
    }
    text
}

/// `sluice key status --json` with B current and A old.
fn status(dir: &Path) -> Value {
    let out = run_ok(
        &mut with_keys(dir, key_b(), Some(key_a()), &["key", "status", "--json"]),
        "key status",
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status JSON ({e}): {out}"))
}

fn count(status: &Value, role: &str) -> u64 {
    status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["role"] == role)
        .map(|k| k["total"].as_u64().unwrap())
        .sum()
}

/// Every sealed value: the catalog's 150, three revisions of 150, one TOTP secret.
const TOTAL: u64 = (DATASOURCES as u64) * 4 + 1;

/// Asserts that every value is under A or B and opens for its owner; returns how many are
/// under B.
fn assert_all_open(dir: &Path, when: &str) -> u64 {
    let status = status(dir);
    assert_eq!(
        status["problems"].as_array().unwrap().len(),
        0,
        "{when}: {status}"
    );
    assert_eq!(count(&status, "unknown"), 0, "{when}: {status}");
    let (current, old) = (count(&status, "current"), count(&status, "old"));
    assert_eq!(current + old, TOTAL, "{when}: {status}");
    current
}

/// Starts `rotate` with small batches and a pause, waits until `batches` batches committed
/// (0: not at all, kill during start-up), then SIGKILLs it.
fn kill_rotation_after(dir: &Path, batches: usize) {
    let mut child = with_keys(
        dir,
        key_b(),
        Some(key_a()),
        &["key", "rotate", "--batch-size", "5", "--pause-ms", "20"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start key rotate");
    // The reader stays open until the kill, so the child never writes to a closed pipe.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    if batches > 0 {
        let wanted = format!("batch {batches} committed");
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with(&wanted) => break,
                Some(Ok(_)) => {}
                _ => panic!("key rotate ended before batch {batches}"),
            }
        }
    } else {
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("SIGKILL key rotate");
    child.wait().unwrap();
    drop(lines);
}

async fn query_ok(served: &Served, q: usize) {
    let response = served
        .client
        .post(served.url(&format!("/v1/apps/rot/queries/q{q}")))
        .json(&json!({ "params": {} }))
        .send()
        .await
        .expect("query");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "q{q}: {body}");
    assert_eq!(body["rows"][0][0], q as i64, "{body}");
}

fn serve(dir: &Path, old: bool) -> Command {
    let mut command = with_keys(dir, key_b(), old.then_some(key_a()), &["serve"]);
    // The test sends more requests from 127.0.0.1 than a client should.
    command.env("SLUICE_RATE_LIMIT_PER_IP", "off");
    command
}

/// Creates the admin (password [`PASSWORD`]) and enrols TOTP sealed under key A, directly in
/// the store; returns the base32 secret.
fn enrol_admin_under_a(dir: &Path) -> String {
    let mut add = with_keys(
        dir,
        key_a(),
        None,
        &["user", "add", ADMIN_EMAIL, "--role", "admin"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = add.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let store = SqliteStore::open_existing(&dir.join("data/sluice.db")).unwrap();
    let user = store.user_by_email(ADMIN_EMAIL).unwrap().unwrap();
    let secret = sluice::auth::totp::encode_secret(&sluice::auth::totp::new_secret());
    let sealed = test_key().seal(&Owner::user(&user.id, "totp").unwrap(), &secret);
    store.set_totp_secret(&user.id, &sealed).unwrap();
    store.enable_mfa(&user.id, &[], None).unwrap();
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_survives_sigkill_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Three revisions, each holding the 150 sealed passwords.
    run_ok(&mut with_keys(dir, key_a(), None, &["init"]), "init");
    for queries in [1, 2, 3] {
        std::fs::write(dir.join("catalog.yaml"), catalog(queries)).unwrap();
        run_ok(
            &mut with_keys(dir, key_a(), None, &["catalog", "apply", "catalog.yaml"]),
            "catalog apply",
        );
    }
    let totp_secret = enrol_admin_under_a(dir);
    assert_eq!(assert_all_open(dir, "before"), 0);

    // Without the old key, the values under A are unknown: reported by owner, never shown.
    let refused = with_keys(dir, key_b(), None, &["key", "rotate"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("not re-sealed: datasource/pg000/password (catalog)")
            && text.contains("user/")
            && text.contains(test_key().key_id()),
        "{text}"
    );
    assert!(!text.contains("pw-pg000"), "{text}");

    // SIGKILL at several points: during start-up, in the first batches, in the middle of
    // the catalog, at the revisions, at the users.
    let mut under_b = 0;
    for batches in [0, 1, 7, 18, 31, 32] {
        kill_rotation_after(dir, batches);
        let now = assert_all_open(dir, &format!("after a kill at batch {batches}"));
        assert!(now >= under_b, "values went back to the old key");
        under_b = now;
        if batches == 7 {
            // Half-rotated: a gateway with B + A-old starts (every pool opens its secret).
            let mut served = Served::start(&mut serve(dir, true)).await;
            query_ok(&served, 0).await;
            query_ok(&served, 1).await;
            served.terminate().await;
            // Without the old key a half-rotated store does not serve, and says why.
            let refused = serve(dir, false)
                .env("SLUICE_LISTEN", "127.0.0.1:0")
                .output()
                .unwrap();
            assert!(!refused.status.success());
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&refused.stderr),
                String::from_utf8_lossy(&refused.stdout)
            );
            assert!(text.contains("rotate or re-seal"), "{text}");
            assert!(!text.contains("pw-pg"), "{text}");
        }
    }
    assert!(under_b > 0 && under_b < TOTAL, "{under_b}");
    // A gateway keeps answering while the rotation finishes.
    let mut served = Served::start(&mut serve(dir, true)).await;
    let mut rotation = with_keys(
        dir,
        key_b(),
        Some(key_a()),
        &["key", "rotate", "--batch-size", "5", "--pause-ms", "30"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    let mut answered = 0;
    while rotation.try_wait().unwrap().is_none() {
        query_ok(&served, answered % 3).await;
        answered += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "rotation hangs"
        );
    }
    let output = rotation.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(answered > 0);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("every sealed value is under the current key"),
        "{report}"
    );
    query_ok(&served, 2).await;
    served.terminate().await;
    assert_eq!(assert_all_open(dir, "after the rerun"), TOTAL);
    // A rerun has nothing left to do.
    let again = run_ok(
        &mut with_keys(dir, key_b(), Some(key_a()), &["key", "rotate"]),
        "key rotate again",
    );
    assert!(again.starts_with("re-sealed 0 values"), "{again}");
    // The catalog's revisions are what they were: rotation records none.
    let history = run_ok(
        &mut with_keys(dir, key_b(), None, &["catalog", "history"]),
        "history",
    );
    assert_eq!(history.lines().count(), 3, "{history}");

    // Without the old key: serves, and the admin's TOTP (re-sealed under B) signs in.
    let mut served = Served::start(&mut serve(dir, false)).await;
    query_ok(&served, 0).await;
    query_ok(&served, 1).await;
    let code = sluice::auth::totp::code_at(
        &sluice::auth::totp::decode_secret(&totp_secret).unwrap(),
        chrono::Utc::now().timestamp(),
    );
    let login = served
        .client
        .post(served.url("/v1/auth/login"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": PASSWORD, "totp_code": code }))
        .send()
        .await
        .unwrap();
    let status = login.status().as_u16();
    assert_eq!(status, 200, "{}", login.text().await.unwrap());
    served.terminate().await;

    // The first revision's secrets were re-sealed too: a rollback opens them with B alone.
    run_ok(
        &mut with_keys(dir, key_b(), None, &["catalog", "rollback", "1", "--prune"]),
        "rollback",
    );
    let mut served = Served::start(&mut serve(dir, false)).await;
    query_ok(&served, 0).await;
    served.terminate().await;
    assert!(!served.output().contains("pw-pg"));
    // No value was ever printed.
    let status_text = run_ok(
        &mut with_keys(dir, key_b(), None, &["key", "status"]),
        "status text",
    );
    assert!(
        status_text.contains(key_b_derived().key_id()),
        "{status_text}"
    );
    assert!(!status_text.contains("enc:v1:"), "{status_text}");
}

#[tokio::test]
async fn the_admin_endpoint_needs_an_admin_with_fresh_auth() {
    let (b_password, b_salt) = key_b();
    let (a_password, a_salt) = key_a();
    let env = [
        ("SLUICE_ENCRYPTION_PASSWORD", b_password.as_str()),
        ("SLUICE_ENCRYPTION_SALT", b_salt.as_str()),
        ("SLUICE_ENCRYPTION_PASSWORD_OLD", a_password.as_str()),
        ("SLUICE_ENCRYPTION_SALT_OLD", a_salt.as_str()),
        ("SLUICE_ADMIN_TOKEN", auth_common::ADMIN_TOKEN),
    ];
    // The catalog's password is sealed under A (the test key); the gateway holds B + A-old.
    let (gateway, clock) = auth_common::gateway(&env).await;
    let (_, mut admin, secret) = enrolled_admin(&gateway, &clock, "keys-admin@example.com").await;
    user(&gateway, "keys-dev@example.com", Role::Developer).await;
    user(&gateway, "keys-viewer@example.com", Role::Viewer).await;
    for email in ["keys-dev@example.com", "keys-viewer@example.com"] {
        let mut browser = Browser::new(&gateway);
        browser.login_ok(email).await;
        browser
            .post("/v1/admin/key/rotate", json!({}))
            .await
            .expect_error(403, "forbidden");
        browser
            .get("/v1/admin/key/status")
            .await
            .expect_error(403, "forbidden");
    }
    // An API key is not an admin session.
    let mut developer = Browser::new(&gateway);
    developer.login_ok("keys-dev@example.com").await;
    let created = developer
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "ci", "scope": { "apps": ["pub"] } }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let mut with_key = Browser::with_key(&gateway, created["key"].as_str().unwrap());
    with_key
        .post("/v1/admin/key/rotate", json!({}))
        .await
        .expect_error(403, "forbidden");

    let before = admin.get("/v1/admin/key/status").await.expect_ok();
    let old = |status: &Value| -> u64 {
        status["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["role"] == "old")
            .map(|k| k["total"].as_u64().unwrap())
            .sum()
    };
    // The catalog's password and its one revision's.
    assert_eq!(old(&before), 2, "{before}");
    assert_eq!(before["old_key"], test_key().key_id(), "{before}");
    // Stale authentication: the admin must confirm the password (and a code) again.
    clock.advance_secs(600);
    admin
        .post("/v1/admin/key/rotate", json!({}))
        .await
        .expect_error(403, "fresh_auth_required");
    let after_stale = admin.get("/v1/admin/key/status").await.expect_ok();
    assert_eq!(old(&after_stale), 2, "nothing re-sealed: {after_stale}");
    admin
        .reauth(json!({ "totp_code": auth_common::totp(&secret, &clock) }))
        .await
        .expect_ok();
    let report = admin
        .post("/v1/admin/key/rotate", json!({}))
        .await
        .expect_ok();
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["resealed"]["catalog"], 1, "{report}");
    assert_eq!(report["resealed"]["history"], 1, "{report}");
    // The admin's own TOTP secret was sealed under B already (enrolled on this gateway).
    assert_eq!(report["resealed"]["totp"], 0, "{report}");
    let text = report.to_string();
    assert!(
        !text.contains("enc:v1:") && !text.contains("unused-with-trust-auth"),
        "{text}"
    );
    let after = admin.get("/v1/admin/key/status").await.expect_ok();
    assert_eq!(old(&after), 0, "{after}");
    assert_eq!(after["problems"].as_array().unwrap().len(), 0, "{after}");
    // The served catalog is unchanged and keeps answering.
    let (status, body) = gateway.call("pub", "q", json!({})).await;
    assert_eq!(status, 200, "{body}");
    // Audited with counts, never a value.
    let events = gateway.audit.list(50, None).await.unwrap();
    let rotated = events
        .iter()
        .find(|e| e.event == "key_rotated")
        .expect("key_rotated audited");
    let details = rotated.details.clone().unwrap_or_default();
    assert!(details.contains("\"resealed\""), "{details}");
    assert!(!details.contains("enc:v1:"), "{details}");
    assert!(rotated.actor.is_some());
    // The admin token needs no session, so no fresh auth: nothing left to re-seal.
    let token = gateway
        .client
        .post(gateway.url("/v1/admin/key/rotate"))
        .bearer_auth(auth_common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(token.status().as_u16(), 200);
    let token: Value = token.json().await.unwrap();
    assert_eq!(token["resealed"]["catalog"], 0, "{token}");
    assert_eq!(token["already_current"].as_u64().unwrap(), 3, "{token}");
}
