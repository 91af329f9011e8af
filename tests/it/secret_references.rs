//! Secret references (`env:NAME`, `file:/path`) against the real binary: allowed ones work
//! end to end (a PostgreSQL password from a file, a MariaDB password from an environment
//! variable that the server really checks), and their contents appear in no log line at
//! `trace`; a reference outside `SLUICE_SECRET_REFERENCES`, to a `SLUICE_*` variable, to the
//! instance's own secret file, or with the allowlist unset is refused by `catalog check`,
//! `catalog apply` and at start-up, naming the field and why; a missing file or variable
//! stops start-up naming the reference, never its content.

use std::path::Path;
use std::process::Command;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::common::served::{Served, sluice_with_test_key};
use crate::common::{PG_HOST, PG_PORT, mysql_admin, unique_name};

fn canary() -> String {
    format!("CANARY{:016x}", rand::random::<u64>())
}

/// A catalog with a PostgreSQL and a MariaDB datasource whose passwords are `pg_password`
/// and `my_password` as written (references), and a query on each.
fn catalog(pg_password: &str, my_user: &str, my_password: &str) -> String {
    format!(
        r#"datasources:
  pg:
    kind: postgres
    host: {PG_HOST}
    port: {PG_PORT}
    database: test
    user: postgres
    password: "{pg_password}"
    egress_allow: [127.0.0.1/32]
  my:
    kind: mysql
    host: 127.0.0.1
    port: 3306
    database: test
    user: {my_user}
    password: "{my_password}"
    egress_allow: [127.0.0.1/32]
apps:
  refs:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      pg:
        datasource: pg
        sql: SELECT 1 AS n
      my:
        datasource: my
        sql: SELECT 2 AS n
"#
    )
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

/// `sluice catalog <verb> catalog.yaml` with the allowlist `allow` (None: unset).
fn catalog_command(dir: &Path, verb: &str, allow: Option<&str>) -> Command {
    let mut command = sluice_with_test_key(dir, &["catalog", verb, "catalog.yaml"]);
    if let Some(allow) = allow {
        command.env("SLUICE_SECRET_REFERENCES", allow);
    }
    command
}

async fn query(served: &Served, name: &str) -> (u16, Value) {
    let response = served
        .client
        .post(served.url(&format!("/v1/apps/refs/queries/{name}")))
        .json(&json!({ "params": {} }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_references_serve_and_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let (pg_canary, my_canary) = (canary(), canary());
    std::fs::write(secrets.join("pg_password"), format!("{pg_canary}\n")).unwrap();
    // A MariaDB account whose password the server checks: the reference's content is used.
    let mut admin = mysql_admin().await;
    let my_user = unique_name("ref");
    admin
        .query_drop(format!(
            "CREATE USER '{my_user}'@'%' IDENTIFIED BY '{my_canary}'"
        ))
        .await
        .unwrap();
    admin
        .query_drop(format!("GRANT SELECT ON test.* TO '{my_user}'@'%'"))
        .await
        .unwrap();
    let pg_ref = format!("file:{}", secrets.join("pg_password").display());
    std::fs::write(
        dir.join("catalog.yaml"),
        catalog(&pg_ref, &my_user, "env:MY_REF_PASSWORD"),
    )
    .unwrap();
    let allow = format!("file:{}/*,env:MY_REF_*", secrets.display());
    crate::common::served::init_store(dir);
    let applied = catalog_command(dir, "apply", Some(&allow))
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", output_text(&applied));

    let mut served = Served::start(
        sluice_with_test_key(dir, &["serve"])
            .env("SLUICE_SECRET_REFERENCES", &allow)
            .env("MY_REF_PASSWORD", &my_canary)
            .env("SLUICE_LOG_LEVEL", "trace"),
    )
    .await;
    let (status, body) = query(&served, "pg").await;
    assert_eq!((status, &body["rows"][0][0]), (200, &json!(1)), "{body}");
    let (status, body) = query(&served, "my").await;
    assert_eq!((status, &body["rows"][0][0]), (200, &json!(2)), "{body}");
    served.terminate().await;
    let log = served.output();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "logging was on"
    );
    for canary in [&pg_canary, &my_canary] {
        assert!(
            !log.contains(canary.as_str()),
            "a referenced secret was logged"
        );
    }
    // The export shows the reference (it holds no secret), never what it points at.
    let exported = sluice_with_test_key(dir, &["catalog", "export"])
        .output()
        .unwrap();
    let exported = String::from_utf8_lossy(&exported.stdout);
    assert!(exported.contains("env:MY_REF_PASSWORD"), "{exported}");
    assert!(!exported.contains(&my_canary) && !exported.contains(&pg_canary));

    // A variable that is not set, or a wrong one: start-up stops naming the reference.
    let unset = sluice_with_test_key(dir, &["serve"])
        .env("SLUICE_SECRET_REFERENCES", &allow)
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let text = output_text(&unset);
    assert!(!unset.status.success());
    assert!(
        text.contains(
            "datasource `my`: secret `password`: `env:MY_REF_PASSWORD`: the variable is not set"
        ),
        "{text}"
    );
    std::fs::remove_file(secrets.join("pg_password")).unwrap();
    let missing = sluice_with_test_key(dir, &["serve"])
        .env("SLUICE_SECRET_REFERENCES", &allow)
        .env("MY_REF_PASSWORD", &my_canary)
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let text = output_text(&missing);
    assert!(!missing.status.success());
    assert!(
        text.contains(&format!("`{pg_ref}`: cannot read the file")),
        "{text}"
    );
    assert!(
        !text.contains(&my_canary) && !text.contains(&pg_canary),
        "{text}"
    );
    // With the allowlist unset, the stored references are refused at start-up.
    let off = sluice_with_test_key(dir, &["serve"])
        .env("MY_REF_PASSWORD", &my_canary)
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    let text = output_text(&off);
    assert!(!off.status.success());
    assert!(
        text.contains("datasources.my.password")
            && text.contains("SLUICE_SECRET_REFERENCES is not set"),
        "{text}"
    );
    admin
        .query_drop(format!("DROP USER '{my_user}'@'%'"))
        .await
        .unwrap();
}

#[test]
fn references_outside_the_allowlist_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    crate::common::served::init_store(dir);
    let own_secret = dir.join("run-secrets").join("sluice_password");
    std::fs::create_dir(dir.join("run-secrets")).unwrap();
    let cases: [(&str, Option<String>, &str); 6] = [
        (
            "env:PG_PASSWORD",
            None,
            "secret references are off (SLUICE_SECRET_REFERENCES is not set)",
        ),
        (
            "env:OTHER_PASSWORD",
            Some("env:PG_*".into()),
            "matches no pattern of SLUICE_SECRET_REFERENCES (env:PG_*)",
        ),
        (
            "file:/etc/passwd",
            Some("file:/run/secrets/*".into()),
            "matches no pattern of SLUICE_SECRET_REFERENCES (file:/run/secrets/*)",
        ),
        (
            "env:SLUICE_ENCRYPTION_PASSWORD",
            Some("env:*".into()),
            "SLUICE_* variables are never readable by reference",
        ),
        (
            "file:/run/secrets/../../etc/shadow",
            Some("file:/run/secrets/*".into()),
            "absolute path without",
        ),
        (
            "own-secret-file",
            Some(format!("file:{}/*", dir.join("run-secrets").display())),
            "a file this instance reads its own secret from",
        ),
    ];
    for (reference, allow, why) in cases {
        let reference = if reference == "own-secret-file" {
            format!("file:{}", own_secret.display())
        } else {
            reference.to_string()
        };
        std::fs::write(
            dir.join("catalog.yaml"),
            catalog(&reference, "root", "env:UNUSED_HERE"),
        )
        .unwrap();
        for verb in ["check", "apply"] {
            let mut command = catalog_command(dir, verb, allow.as_deref());
            if reference.contains("sluice_password") {
                // The instance password comes from that very file.
                let (password, _) = crate::common::test_secrets();
                std::fs::write(&own_secret, password).unwrap();
                command
                    .env_remove("SLUICE_ENCRYPTION_PASSWORD")
                    .env("SLUICE_ENCRYPTION_PASSWORD_FILE", &own_secret);
            }
            let output = command.output().unwrap();
            let text = output_text(&output);
            assert!(!output.status.success(), "{verb} {reference}: {text}");
            assert!(
                text.contains("datasources.pg.password") && text.contains(why),
                "{verb} {reference}: {text}"
            );
        }
    }
    // Nothing was applied.
    let history = sluice_with_test_key(dir, &["catalog", "history"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("no catalog applied yet"),
        "{}",
        output_text(&history)
    );
    // An allowlist naming SLUICE_* variables is itself refused.
    let bad = sluice_with_test_key(dir, &["catalog", "check", "catalog.yaml"])
        .env("SLUICE_SECRET_REFERENCES", "env:SLUICE_*")
        .output()
        .unwrap();
    let text = output_text(&bad);
    assert!(!bad.status.success());
    assert!(
        text.contains("SLUICE_SECRET_REFERENCES") && text.contains("never readable"),
        "{text}"
    );
}
