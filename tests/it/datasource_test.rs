//! The datasource test (`datasource::probe`; `sluice datasource test` and `POST
//! /v1/admin/datasources/{name}/test`) against the real local PostgreSQL and MariaDB, a
//! throw-away PostgreSQL with TLS and passwords ([`common::tls_servers`]), a loopback HTTP
//! upstream and SQLite files: a good datasource passes every step; each kind of fault fails
//! at its own step with a hint that names what to change (wrong password or role, missing
//! database, nothing listening, an address the egress policy refuses, TLS trust), and no
//! report carries a password or a driver's text. The admin route answers as the other admin
//! routes do: 401 without a token, 403 for a viewer, 404 JSON for an unknown name.

use mysql_async::prelude::Queryable;
use serde_json::Value;
use sluice::datasource::Pools;
use sluice::datasource::probe::{ProbeReport, StepStatus};
use sluice::spec::yaml;

use crate::common::served::free_port;
use crate::common::tls_servers::{PW_PASSWORD, TlsCluster, TlsMariaDb};
use crate::common::*;

const TOKEN: &str = "admin-token-datasource-test-0123456789";
const MY_PASSWORD: &str = "probe-user-pw-71c3";

/// Builds `datasources` (YAML entries, indented) as serving does and tests `name`.
async fn probe(datasources: &str, name: &str) -> ProbeReport {
    let spec = yaml::parse(&format!("datasources:\n{datasources}apps: {{}}\n"))
        .unwrap_or_else(|e| panic!("test catalog: {e}"));
    let pools = Pools::build(&spec, test_keyring(), &Default::default())
        .unwrap_or_else(|e| panic!("pools: {e}"));
    let report = pools
        .get(name)
        .expect("a pool")
        .probe(name, &spec.datasources[name])
        .await;
    pools.close_all();
    report
}

/// The statuses of the steps, in order.
fn statuses(report: &ProbeReport) -> Vec<(&'static str, StepStatus)> {
    report.steps.iter().map(|s| (s.step, s.status)).collect()
}

/// Asserts that `report` failed at `step`, with a hint holding `words`; returns the hint.
fn failed_at(report: &ProbeReport, step: &str, words: &str) -> String {
    let failed = report
        .failed_step()
        .unwrap_or_else(|| panic!("expected a failure at {step}: {report:#?}"));
    assert!(!report.ok, "{report:#?}");
    assert_eq!(failed.step, step, "{report:#?}");
    let hint = failed.hint.clone().unwrap_or_default();
    assert!(
        hint.contains(words),
        "hint {hint:?} lacks {words:?}: {report:#?}"
    );
    // Every step after the failure is skipped.
    let after = report.steps.iter().skip_while(|s| s.step != step).skip(1);
    for later in after {
        assert_eq!(later.status, StepStatus::Skipped, "{report:#?}");
    }
    hint
}

fn pg(name: &str, host: &str, port: u16, database: &str, user: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    host: {host}\n    port: {port}\n    database: {database}\n    user: {user}\n    password: {}\n    connect_timeout_ms: 3000\n{extra}",
        seal(name, "password", "unused-with-trust-auth")
    )
}

#[tokio::test]
async fn postgres_faults_fail_at_their_own_step() {
    let allow = "    egress_allow: [127.0.0.1/32]\n";
    let good = probe(&pg_datasource_yaml("good"), "good").await;
    assert!(good.ok, "{good:#?}");
    assert_eq!(
        statuses(&good),
        [
            ("dns", StepStatus::Ok),
            ("egress", StepStatus::Ok),
            ("tcp", StepStatus::Ok),
            // Loopback: TLS is off unless asked for.
            ("tls", StepStatus::Skipped),
            ("authentication", StepStatus::Ok),
            ("select_1", StepStatus::Ok),
        ]
    );
    assert_eq!(
        good.steps[0].detail.as_deref(),
        Some("an IP address: nothing to look up")
    );

    let no_database = probe(
        &pg(
            "nodb",
            PG_HOST,
            PG_PORT,
            "no_such_database_x",
            "postgres",
            allow,
        ),
        "nodb",
    )
    .await;
    failed_at(
        &no_database,
        "authentication",
        "`no_such_database_x` does not exist",
    );
    assert_eq!(
        no_database.failed_step().unwrap().detail.as_deref(),
        Some("SQLSTATE 3D000")
    );

    let no_role = probe(
        &pg("norole", PG_HOST, PG_PORT, "test", "no_such_role_x", allow),
        "norole",
    )
    .await;
    failed_at(&no_role, "authentication", "the role or password is wrong");

    let port = free_port();
    let closed = probe(
        &pg("closed", PG_HOST, port, "test", "postgres", allow),
        "closed",
    )
    .await;
    failed_at(
        &closed,
        "tcp",
        &format!("nothing listens on 127.0.0.1:{port}"),
    );

    // A private address nobody allowed: refused before any packet, with the line to add.
    let private = probe(
        &pg("private", "10.255.255.1", 5432, "test", "postgres", ""),
        "private",
    )
    .await;
    failed_at(&private, "egress", r#"`egress_allow: ["10.255.255.1/32"]`"#);
    assert_eq!(statuses(&private)[0], ("dns", StepStatus::Ok));
    // A name that resolves to loopback: resolved, then refused, the line naming the address
    // and keeping what the datasource already allows.
    let named = probe(
        &pg(
            "named",
            "localhost",
            PG_PORT,
            "test",
            "postgres",
            "    egress_allow: [10.0.0.0/8]\n",
        ),
        "named",
    )
    .await;
    failed_at(
        &named,
        "egress",
        r#"`egress_allow: ["10.0.0.0/8", "127.0.0.1/32"]`"#,
    );
    assert_eq!(
        named.steps[0].detail.as_deref(),
        Some("resolved to 127.0.0.1")
    );
    for report in [&good, &no_database, &no_role, &closed, &private, &named] {
        let text = serde_json::to_string(report).unwrap();
        assert!(!text.contains("unused-with-trust-auth"), "{text}");
        assert!(!text.contains("enc:v1"), "{text}");
    }
}

#[tokio::test]
async fn postgres_tls_and_password_faults_fail_at_their_own_step() {
    let cluster = tokio::task::spawn_blocking(TlsCluster::start)
        .await
        .expect("start the cluster");
    let port = cluster.port;
    let ca = format!(
        "    egress_allow: [127.0.0.1/32]\n    tls_ca_file: {}\n",
        cluster.pki.ca_file.display()
    );
    let with_password = |name: &str, password: &str, extra: &str| {
        format!(
            "  {name}:\n    kind: postgres\n    host: 127.0.0.1\n    port: {port}\n    database: tls_test\n    user: pw_user\n    password: {}\n    connect_timeout_ms: 3000\n    egress_allow: [127.0.0.1/32]\n{extra}",
            seal(name, "password", password)
        )
    };
    let good = probe(
        &with_password(
            "good",
            PW_PASSWORD,
            &format!(
                "    tls: verify-full\n    tls_ca_file: {}\n",
                cluster.pki.ca_file.display()
            ),
        ),
        "good",
    )
    .await;
    assert!(good.ok, "{good:#?}\n{}", cluster.log());
    let tls = &good.steps[3];
    assert_eq!(tls.step, "tls");
    assert!(
        tls.detail
            .as_deref()
            .unwrap_or("")
            .contains("certificate checked against tls_ca_file and the host name"),
        "{good:#?}"
    );

    let wrong_password = probe(
        &with_password(
            "wrongpw",
            "not-the-password",
            &format!(
                "    tls: verify-full\n    tls_ca_file: {}\n",
                cluster.pki.ca_file.display()
            ),
        ),
        "wrongpw",
    )
    .await;
    failed_at(
        &wrong_password,
        "authentication",
        "the role or password is wrong",
    );
    assert_eq!(
        wrong_password.failed_step().unwrap().detail.as_deref(),
        Some("SQLSTATE 28P01")
    );
    let text = serde_json::to_string(&wrong_password).unwrap();
    assert!(!text.contains("not-the-password") && !text.contains(PW_PASSWORD));

    let bundled = probe(
        &pg(
            "bundled",
            "127.0.0.1",
            port,
            "tls_test",
            "postgres",
            "    egress_allow: [127.0.0.1/32]\n    tls: verify-full\n",
        ),
        "bundled",
    )
    .await;
    failed_at(&bundled, "tls", "set `tls_ca_file`");

    let wrong_name = probe(
        &pg(
            "wrongname",
            "localhost",
            port,
            "tls_test",
            "postgres",
            &format!("    tls: verify-full\n{ca}"),
        ),
        "wrongname",
    )
    .await;
    failed_at(&wrong_name, "tls", "`tls: verify-ca`");

    let unverified = probe(
        &pg(
            "unverified",
            "127.0.0.1",
            port,
            "tls_test",
            "postgres",
            "    egress_allow: [127.0.0.1/32]\n    tls: require\n",
        ),
        "unverified",
    )
    .await;
    assert!(unverified.ok, "{unverified:#?}");
    let tls = &unverified.steps[3];
    assert!(
        tls.detail.as_deref().unwrap_or("").contains("NOT verified"),
        "{unverified:#?}"
    );
    assert!(
        tls.hint.is_some(),
        "require passes with a warning: {unverified:#?}"
    );

    let no_client_cert = probe(
        &pg(
            "nocert",
            "127.0.0.1",
            port,
            "tls_test",
            "mtls_user",
            &format!("    tls: verify-full\n{ca}"),
        ),
        "nocert",
    )
    .await;
    failed_at(&no_client_cert, "authentication", "tls_client_cert_file");

    let plain = probe(
        &pg(
            "plain",
            "127.0.0.1",
            port,
            "tls_test",
            "postgres",
            "    egress_allow: [127.0.0.1/32]\n    tls: disable\n",
        ),
        "plain",
    )
    .await;
    failed_at(&plain, "authentication", "pg_hba.conf");
}

fn mysql(name: &str, database: &str, user: &str, password: Option<&str>) -> String {
    let password = password
        .map(|p| format!("    password: {}\n", seal(name, "password", p)))
        .unwrap_or_default();
    format!(
        "  {name}:\n    kind: mysql\n    host: 127.0.0.1\n    port: 3306\n    database: {database}\n    user: {user}\n{password}    connect_timeout_ms: 3000\n    egress_allow: [127.0.0.1/32]\n"
    )
}

#[tokio::test]
async fn mysql_faults_fail_at_their_own_step() {
    let mut admin = mysql_admin().await;
    let user = unique_name("probe");
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY '{MY_PASSWORD}'"
        ))
        .await
        .expect("create user");
    admin
        .query_drop(format!("GRANT SELECT ON test.* TO '{user}'@'%'"))
        .await
        .expect("grant");

    let good = probe(&mysql("good", "test", &user, Some(MY_PASSWORD)), "good").await;
    assert!(good.ok, "{good:#?}");
    assert_eq!(
        statuses(&good),
        [
            ("dns", StepStatus::Ok),
            ("egress", StepStatus::Ok),
            ("tcp", StepStatus::Ok),
            ("tls", StepStatus::Skipped),
            ("authentication", StepStatus::Ok),
            ("select_1", StepStatus::Ok),
        ]
    );
    let wrong_password = probe(
        &mysql("wrongpw", "test", &user, Some("not-the-password")),
        "wrongpw",
    )
    .await;
    failed_at(
        &wrong_password,
        "authentication",
        "the user or password is wrong",
    );
    assert!(
        wrong_password
            .failed_step()
            .unwrap()
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("MySQL error 1045"),
        "{wrong_password:#?}"
    );
    let no_database = probe(&mysql("nodb", "no_such_database_x", "root", None), "nodb").await;
    failed_at(
        &no_database,
        "authentication",
        "`no_such_database_x` does not exist",
    );
    let not_granted = probe(
        &mysql("notgranted", "mysql", &user, Some(MY_PASSWORD)),
        "notgranted",
    )
    .await;
    failed_at(
        &not_granted,
        "authentication",
        "may not use the database `mysql`",
    );
    for report in [&good, &wrong_password, &no_database, &not_granted] {
        let text = serde_json::to_string(report).unwrap();
        assert!(
            !text.contains(MY_PASSWORD) && !text.contains("not-the-password"),
            "{text}"
        );
    }
    admin
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .expect("drop user");
}

#[tokio::test]
async fn mysql_tls_faults_fail_at_their_own_step() {
    let server = tokio::task::spawn_blocking(TlsMariaDb::start)
        .await
        .expect("start MariaDB");
    let on_server = |name: &str, host: &str, user: &str, extra: &str| {
        format!(
            "  {name}:\n    kind: mysql\n    host: {host}\n    port: {}\n    database: tls_test\n    user: {user}\n    connect_timeout_ms: 3000\n    egress_allow: [127.0.0.1/32]\n{extra}",
            server.port
        )
    };
    let ca = format!(
        "    tls: verify-full\n    tls_ca_file: {}\n",
        server.pki.ca_file.display()
    );
    let good = probe(&on_server("good", "127.0.0.1", "root", &ca), "good").await;
    assert!(good.ok, "{good:#?}\n{}", server.log());
    assert_eq!(good.steps[3].step, "tls");
    assert_eq!(good.steps[3].status, StepStatus::Ok, "{good:#?}");
    let bundled = probe(
        &on_server("bundled", "127.0.0.1", "root", "    tls: verify-full\n"),
        "bundled",
    )
    .await;
    failed_at(&bundled, "tls", "set `tls_ca_file`");
    let wrong_name = probe(
        &on_server("wrongname", "localhost", "root", &ca),
        "wrongname",
    )
    .await;
    let hint = failed_at(
        &wrong_name,
        "tls",
        "does not list the host name `localhost`",
    );
    // MySQL has no verify-ca to suggest.
    assert!(!hint.contains("verify-ca"), "{hint}");
    let no_cert = probe(
        &on_server("nocert", "127.0.0.1", "x509_user", &ca),
        "nocert",
    )
    .await;
    failed_at(&no_cert, "authentication", "the user or password is wrong");
}

#[tokio::test]
async fn http_and_sqlite_datasources_are_tested_too() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::IM_A_TEAPOT, "short and stout") });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let api = |name: &str, allow: &str| {
        format!(
            "  {name}:\n    kind: http\n    base_url: http://127.0.0.1:{}/api\n    auth:\n      bearer:\n        token: {}\n{allow}",
            address.port(),
            seal(name, "bearer", "bearer-token-secret-x")
        )
    };
    let good = probe(&api("api", "    egress_allow: [127.0.0.1/32]\n"), "api").await;
    assert!(good.ok, "{good:#?}");
    assert_eq!(
        statuses(&good),
        [
            ("dns", StepStatus::Ok),
            ("egress", StepStatus::Ok),
            ("tcp", StepStatus::Ok),
            ("tls", StepStatus::Skipped),
            ("request", StepStatus::Ok),
        ]
    );
    assert!(
        good.steps[4]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("HTTP 418"),
        "{good:#?}"
    );
    let refused = probe(&api("refused", ""), "refused").await;
    failed_at(&refused, "egress", r#"`egress_allow: ["127.0.0.1/32"]`"#);
    server.abort();
    // Once the task has ended its listener is closed.
    let _ = server.await;
    let gone = probe(&api("gone", "    egress_allow: [127.0.0.1/32]\n"), "gone").await;
    failed_at(&gone, "tcp", "nothing listens on");
    assert!(
        !serde_json::to_string(&good)
            .unwrap()
            .contains("bearer-token-secret-x")
    );

    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ok.db");
    rusqlite::Connection::open(&database)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let text = dir.path().join("text.db");
    std::fs::write(
        &text,
        "this is not a database, just some text long enough to read\n",
    )
    .unwrap();
    let lite = |name: &str, path: &std::path::Path| {
        format!(
            "  {name}:\n    kind: sqlite\n    path: {}\n    read_only: true\n",
            path.display()
        )
    };
    let good = probe(&lite("lite", &database), "lite").await;
    assert!(good.ok, "{good:#?}");
    assert_eq!(
        statuses(&good),
        [
            ("file", StepStatus::Ok),
            ("open", StepStatus::Ok),
            ("select_1", StepStatus::Ok),
        ]
    );
    let missing = probe(&lite("missing", &dir.path().join("nope.db")), "missing").await;
    failed_at(&missing, "file", "never creates one");
    let not_sqlite = probe(&lite("text", &text), "text").await;
    failed_at(&not_sqlite, "select_1", "is not an SQLite database");
}

#[tokio::test]
async fn the_admin_route_tests_a_served_datasource() {
    use sluice::auth::Role;
    let port = free_port();
    let catalog = format!(
        "datasources:\n{}{}apps: {{}}\n",
        pg_datasource_yaml("pg"),
        pg(
            "closed",
            PG_HOST,
            port,
            "test",
            "postgres",
            "    egress_allow: [127.0.0.1/32]\n"
        ),
    );
    let gateway = TestGateway::start_with(&catalog, &[("SLUICE_ADMIN_TOKEN", TOKEN)]).await;
    let post = |path: &str| gateway.client.post(gateway.url(path));

    let answer = post("/v1/admin/datasources/pg/test")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["datasource"], "pg");
    assert_eq!(body["kind"], "postgres");
    assert_eq!(body["steps"][5]["step"], "select_1");
    assert_eq!(body["steps"][5]["status"], "ok");
    assert!(body["steps"][0]["elapsed_ms"].is_u64(), "{body}");
    assert!(
        !text.contains("unused-with-trust-auth") && !text.contains("enc:v1"),
        "{text}"
    );

    // A failing datasource is still a 200: the report says what failed.
    let body: Value = post("/v1/admin/datasources/closed/test")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["steps"][2]["step"], "tcp");
    assert_eq!(body["steps"][2]["status"], "failed");
    assert!(
        body["steps"][2]["hint"]
            .as_str()
            .unwrap()
            .contains("nothing listens on"),
        "{body}"
    );

    let unknown = post("/v1/admin/datasources/nope/test")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // As the other admin routes: no token 401, a wrong token 401, a viewer 403.
    for token in [None, Some("wrong-token")] {
        let mut request = post("/v1/admin/datasources/pg/test");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{token:?}");
    }
    let password = "amber-quiver-lattice-52";
    gateway
        .auth
        .create_user(
            "viewer-probe@example.com",
            "",
            Role::Viewer,
            vec![],
            Some(password.into()),
            "test",
        )
        .await
        .unwrap();
    let login = gateway
        .client
        .post(gateway.url("/v1/auth/login"))
        .json(&serde_json::json!({ "email": "viewer-probe@example.com", "password": password }))
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
    let answer = post("/v1/admin/datasources/pg/test")
        .header("cookie", &cookie)
        .header("origin", format!("http://{}", gateway.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    gateway.stop().await;
}
