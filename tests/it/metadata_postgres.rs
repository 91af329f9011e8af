//! The PostgreSQL metadata store end to end (docs/SCALE_OUT.md), against the real binary
//! and a fresh database: `sluice user add` and `catalog apply` with `SLUICE_METADATA_URL`,
//! then `sluice serve` on it: ready, a sign-in, a query run with the session, a catalog
//! change applied by the CLI that the running gateway serves within its reload interval; the
//! URL's password never appears in what the process prints, and `sluice backup` (a SQLite
//! file copy) is refused with the way to back up PostgreSQL.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::served::{Served, sluice_with_test_key};
use crate::common::{PG_HOST, PG_PORT, pg_admin, unique_name};

/// Trust authentication accepts any password: this one must never be printed.
pub(crate) const URL_PASSWORD: &str = "url-password-canary-7c1e";
pub(crate) const PASSWORD: &str = "correct horse battery staple 42";

pub(crate) fn catalog(queries: &[&str]) -> String {
    let mut yaml = format!(
        "datasources:\n  pg:\n    kind: postgres\n    host: {PG_HOST}\n    port: {PG_PORT}\n    \
         database: test\n    user: postgres\n    pool_size: 2\n    egress_allow: [127.0.0.1/32]\n\
         apps:\n  shop:\n    visibility: workspace\n    grants: {{ roles: [developer] }}\n    queries:\n"
    );
    for name in queries {
        yaml.push_str(&format!(
            "      {name}:\n        datasource: pg\n        sql: SELECT '{name}' AS answer, {{{{ user.email }}}}::text AS who\n"
        ));
    }
    yaml
}

/// `sluice <args>` for the test instance, on the PostgreSQL store `url`.
pub(crate) fn sluice(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = sluice_with_test_key(dir, args);
    command
        .env("SLUICE_METADATA_URL", url)
        .env("SLUICE_CATALOG_RELOAD_SECS", "1");
    command
}

pub(crate) fn run(mut command: Command, stdin: Option<&str>) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        writeln!(child.stdin.take().unwrap(), "{input}").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

pub(crate) fn apply(dir: &Path, url: &str, yaml: &str) {
    std::fs::write(dir.join("catalog.yaml"), yaml).unwrap();
    let (ok, text) = run(
        sluice(dir, url, &["catalog", "apply", "catalog.yaml"]),
        None,
    );
    assert!(ok, "catalog apply: {text}");
    assert!(!text.contains(URL_PASSWORD), "{text}");
}

/// A database made for one test, dropped when the test ends (passed or failed).
pub(crate) struct FreshDatabase(pub(crate) String);

impl FreshDatabase {
    pub(crate) async fn create(prefix: &str) -> FreshDatabase {
        let name = unique_name(prefix);
        pg_admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        FreshDatabase(name)
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Its own thread and runtime: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ = pg_admin()
                        .await
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                })
        })
        .join();
    }
}

pub(crate) async fn run_query(served: &Served, cookie: &str, name: &str) -> (u16, Value) {
    let response = served
        .client
        .post(served.url(&format!("/v1/apps/shop/queries/{name}")))
        .header("cookie", cookie)
        // Same origin, as a browser sends it (a signed-in write needs it).
        .header("origin", format!("http://{}", served.address))
        .json(&json!({ "params": {} }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn serve_on_a_postgres_store_signs_in_runs_queries_and_follows_catalog_changes() {
    let fresh = FreshDatabase::create("sluice_meta").await;
    let database = &fresh.0;
    let url = format!("postgres://postgres:{URL_PASSWORD}@{PG_HOST}:{PG_PORT}/{database}");
    let described = format!("postgres://postgres@{PG_HOST}:{PG_PORT}/{database}");
    let dir = tempfile::tempdir().unwrap();

    let (ok, text) = run(sluice(dir.path(), &url, &["init"]), None);
    assert!(ok, "init: {text}");
    assert!(text.contains(&described), "{text}");
    let (ok, text) = run(
        sluice(
            dir.path(),
            &url,
            &["user", "add", "alice@example.com", "--role", "developer"],
        ),
        Some(PASSWORD),
    );
    assert!(ok, "user add: {text}");
    apply(dir.path(), &url, &catalog(&["first"]));
    assert!(
        !dir.path().join("data/sluice.db").exists(),
        "nothing was written to the SQLite default"
    );

    let mut command = sluice(dir.path(), &url, &["serve"]);
    let served = Served::start(&mut command).await;

    let response = served
        .client
        .post(served.url("/v1/auth/login"))
        .json(&json!({ "email": "alice@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, body) = run_query(&served, &cookie, "first").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"][0][0], "first", "{body}");
    assert_eq!(body["rows"][0][1], "alice@example.com", "{body}");
    let (status, _) = run_query(&served, &cookie, "second").await;
    assert_eq!(status, 404, "not in the catalog yet");

    // The session lives in the store: it is there for another process (the CLI) to end.
    let sessions: i64 = admin_count(database, "SELECT count(*) FROM sessions").await;
    assert_eq!(sessions, 1);

    // A catalog change applied by the CLI to the store is served within the reload interval.
    apply(dir.path(), &url, &catalog(&["first", "second"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = run_query(&served, &cookie, "second").await;
        if status == 200 {
            assert_eq!(body["rows"][0][0], "second", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new query was not served: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A role change through the CLI ends the session for the gateway too.
    let (ok, text) = run(
        sluice(
            dir.path(),
            &url,
            &["user", "set-role", "alice@example.com", "viewer"],
        ),
        None,
    );
    assert!(ok, "set-role: {text}");
    let (status, _) = run_query(&served, &cookie, "first").await;
    assert_eq!(status, 401, "the ended session is refused");

    let (ok, text) = run(sluice(dir.path(), &url, &["backup", "copy.db"]), None);
    assert!(!ok, "backup on PostgreSQL is refused");
    assert!(text.contains("pg_dump"), "{text}");
    assert!(!text.contains(URL_PASSWORD), "{text}");

    let output = served.output();
    assert!(
        output.contains(&described),
        "the store is named at start:\n{output}"
    );
    assert!(!output.contains(URL_PASSWORD), "{output}");
    drop(served);
}

pub(crate) async fn admin_count(database: &str, sql: &str) -> i64 {
    let (client, connection) = tokio_postgres::Config::new()
        .host(PG_HOST)
        .port(PG_PORT)
        .user("postgres")
        .dbname(database)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one(sql, &[]).await.unwrap().get(0)
}

pub(crate) const ADMIN_TOKEN: &str = "replica-test-admin-token-0123456789abcdef";

pub(crate) async fn login(served: &Served, email: &str, password: &str) -> (u16, Option<String>) {
    let response = served
        .client
        .post(served.url("/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_string);
    (response.status().as_u16(), cookie)
}

/// Signs the session `cookie` out on `served` (same origin, as a browser sends it), and
/// checks it was.
pub(crate) async fn logout(served: &Served, cookie: &str) {
    let response = served
        .client
        .post(served.url("/v1/auth/logout"))
        .header("cookie", cookie)
        .header("origin", format!("http://{}", served.address))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// Polls `check` until it holds, for at most `limit`; how long it took.
pub(crate) async fn within(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_replicas_on_one_store_behave_as_one() {
    let fresh = FreshDatabase::create("sluice_replicas").await;
    let database = &fresh.0;
    let url = format!("postgres://postgres@{PG_HOST}:{PG_PORT}/{database}");
    let dir = tempfile::tempdir().unwrap();
    for email in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        let (ok, text) = run(
            sluice(
                dir.path(),
                &url,
                &["user", "add", email, "--role", "developer"],
            ),
            Some(PASSWORD),
        );
        assert!(ok, "user add: {text}");
    }
    apply(dir.path(), &url, &catalog(&["first"]));

    let mut replicas = Vec::new();
    for _ in 0..3 {
        let mut command = sluice(dir.path(), &url, &["serve"]);
        // No periodic catalog check: a change reaches the other replicas by NOTIFY alone.
        command
            .env("SLUICE_CATALOG_RELOAD_SECS", "0")
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SLUICE_AUTH_RATE_PER_MINUTE", "100000")
            // The per-IP limit is the cluster's: the polling below must not meet it.
            .env("SLUICE_RATE_LIMIT_PER_IP", "off")
            .env("SLUICE_RATE_LIMIT_PER_USER", "off");
        replicas.push(Served::start(&mut command).await);
    }
    let [a, b, c] = &replicas[..] else {
        unreachable!()
    };

    // A session made on A works on B and C.
    let (status, cookie) = login(a, "alice@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    for replica in [a, b, c] {
        assert_eq!(run_query(replica, &cookie, "first").await.0, 200);
    }
    // Logged out on B: refused on A and C within a second.
    logout(b, &cookie).await;
    for replica in [a, c] {
        let took = within(Duration::from_secs(1), "logout seen", async || {
            run_query(replica, &cookie, "first").await.0 == 401
        })
        .await;
        assert!(took < Duration::from_secs(1));
    }

    // Failures spread over the replicas count toward one threshold (5): four leave the
    // account usable, the fifth locks it.
    let spread = [a, b, c, a, b];
    for replica in &spread[..4] {
        assert_eq!(
            login(replica, "carol@example.com", "wrong password 1234")
                .await
                .0,
            401
        );
    }
    assert_eq!(
        login(c, "carol@example.com", PASSWORD).await.0,
        200,
        "four failures do not lock"
    );
    for replica in spread {
        assert_eq!(
            login(replica, "bob@example.com", "wrong password 1234")
                .await
                .0,
            401
        );
    }
    for replica in [a, b, c] {
        assert_ne!(
            login(replica, "bob@example.com", PASSWORD).await.0,
            200,
            "the fifth failure locked the account for every replica"
        );
    }

    // A catalog change through A's admin API answers on C within a second.
    let (_, cookie) = login(c, "alice@example.com", PASSWORD).await;
    let cookie = cookie.unwrap();
    assert_eq!(run_query(c, &cookie, "second").await.0, 404);
    let put = a
        .client
        .put(a.url("/v1/admin/apps/shop/queries/second"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "datasource": "pg", "sql": "SELECT 'second' AS answer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201, "{}", put.text().await.unwrap());
    let took = within(Duration::from_secs(1), "the new query on C", async || {
        run_query(c, &cookie, "second").await.0 == 200
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    within(Duration::from_secs(1), "the new query on B", async || {
        run_query(b, &cookie, "second").await.0 == 200
    })
    .await;

    drop(replicas);
}
