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
const URL_PASSWORD: &str = "url-password-canary-7c1e";
const PASSWORD: &str = "correct horse battery staple 42";

fn catalog(queries: &[&str]) -> String {
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
fn sluice(dir: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = sluice_with_test_key(dir, args);
    command
        .env("SLUICE_METADATA_URL", url)
        .env("SLUICE_CATALOG_RELOAD_SECS", "1");
    command
}

fn run(mut command: Command, stdin: Option<&str>) -> (bool, String) {
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

fn apply(dir: &Path, url: &str, yaml: &str) {
    std::fs::write(dir.join("catalog.yaml"), yaml).unwrap();
    let (ok, text) = run(
        sluice(dir, url, &["catalog", "apply", "catalog.yaml"]),
        None,
    );
    assert!(ok, "catalog apply: {text}");
    assert!(!text.contains(URL_PASSWORD), "{text}");
}

async fn run_query(served: &Served, cookie: &str, name: &str) -> (u16, Value) {
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
    let admin = pg_admin().await;
    let database = unique_name("sluice_meta");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
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
    let sessions: i64 = admin_count(&database, "SELECT count(*) FROM sessions").await;
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
    admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
        .unwrap();
}

async fn admin_count(database: &str, sql: &str) -> i64 {
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
