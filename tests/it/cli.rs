//! The `sluice` binary end to end, run as a subprocess with an explicit environment:
//! `keygen`, `serve`'s refusals of a missing or weak instance key, `secret seal`,
//! `catalog check` / `apply` / `export`, and a served gateway against real PostgreSQL
//! (a query, `SIGHUP` reload, `SIGTERM` drain while a query is in flight, and the header read
//! timeout on a raw socket); `--env-file`, `NAME_FILE` secrets, `healthcheck` and
//! `--version` as the deploy files use them.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::served::{Served, free_port};
use common::*;
use serde_json::json;
use sluice::spec::CatalogSpec;
use sluice::spec::yaml;

const PASSWORD_VAR: &str = "SLUICE_ENCRYPTION_PASSWORD";
const SALT_VAR: &str = "SLUICE_ENCRYPTION_SALT";

/// What a finished `sluice` command left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(self, what: &str) -> Run {
        assert!(
            self.status.success(),
            "{what}: exit {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn assert_failed(self, what: &str) -> Run {
        assert!(
            !self.status.success(),
            "{what}: expected a failure, got exit {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A private working directory and the environment every command gets: `PATH`, a data dir
/// inside the working directory, and (usually) the test instance password and salt.
struct Home {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Home {
    /// With the test instance key (the one `common::seal` uses).
    fn new() -> Home {
        let (password, salt) = test_secrets();
        Home::with_secrets(password, salt)
    }

    /// With this instance key and an empty store (`sluice init`).
    fn with_secrets(password: &str, salt: &str) -> Home {
        let mut home = Home::without_secrets();
        home.set(PASSWORD_VAR, password);
        home.set(SALT_VAR, salt);
        home.run(&["init"], None).assert_ok("init");
        home
    }

    fn without_secrets() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data").display().to_string();
        Home {
            dir,
            vars: vec![("SLUICE_DATA_DIR".into(), data)],
        }
    }

    /// With the test instance key, but no store yet (`with_secrets` runs `init`).
    fn uninitialised() -> Home {
        let (password, salt) = test_secrets();
        let mut home = Home::without_secrets();
        home.set(PASSWORD_VAR, password);
        home.set(SALT_VAR, salt);
        home
    }

    fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.into(), value.into()));
    }

    fn unset(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = served::sluice(self.dir.path(), args);
        for (name, value) in &self.vars {
            command.env(name, value);
        }
        command
    }

    /// Runs a command to completion (at most 60 s), feeding `stdin` if given.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run_to_end(self.command(args), stdin, Duration::from_secs(60))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// Writes `catalog` to a file and runs `catalog apply` on it; must succeed.
    fn apply(&self, catalog: &str) -> Run {
        let path = self.write("catalog.yaml", catalog);
        self.run(&["catalog", "apply", path.to_str().unwrap()], None)
            .assert_ok("catalog apply")
    }

    fn export(&self) -> String {
        self.run(&["catalog", "export"], None)
            .assert_ok("catalog export")
            .stdout
    }

    /// `secret seal --owner <owner>` with `secret` on stdin; must succeed.
    fn seal(&self, owner: &str, secret: &str) -> String {
        let run = self
            .run(&["secret", "seal", "--owner", owner], Some(secret))
            .assert_ok("secret seal");
        run.stdout.trim_end().to_string()
    }
}

fn run_to_end(mut command: Command, stdin: Option<&str>, limit: Duration) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start sluice");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        // The command may refuse before reading stdin; a broken pipe is then expected.
        let _ = pipe.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "sluice did not exit within {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect output");
    Run {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn call(server: &Served, app: &str, query: &str, params: serde_json::Value) -> (u16, String) {
    let response = server
        .client
        .post(server.url(&format!("/v1/apps/{app}/queries/{query}")))
        .json(&json!({ "params": params }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `KEY=VALUE` lines of `sluice keygen`, in order.
fn keygen(home: &Home) -> Vec<(String, String)> {
    let run = home.run(&["keygen"], None).assert_ok("keygen");
    run.stdout
        .lines()
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("keygen line without `=`: {line:?}"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

#[tokio::test]
async fn keygen_prints_fresh_values_that_serve_accepts() {
    let bare = Home::without_secrets();
    let first = keygen(&bare);
    let second = keygen(&bare);
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [PASSWORD_VAR, SALT_VAR], "{first:?}");
    for (name, value) in first.iter().chain(&second) {
        let min = if name == PASSWORD_VAR { 32 } else { 16 };
        assert!(value.chars().count() >= min, "{name}={value}: too short");
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}={value}: must be pasteable into an env file without quoting"
        );
    }
    assert_ne!(
        first[0].1, second[0].1,
        "two keygen runs gave the same password"
    );
    assert_ne!(
        first[1].1, second[1].1,
        "two keygen runs gave the same salt"
    );
    assert_ne!(first[0].1, first[1].1);

    // The values work: serve accepts them (and derives its key from them).
    let home = Home::with_secrets(&first[0].1, &first[1].1);
    let mut server = Served::start(&mut home.command(&["serve"])).await;
    let status = server.terminate().await;
    assert!(status.success(), "{status}\n{}", server.output());
}

/// The placeholder values `docker.env.example` ships, read from the file itself.
fn example_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker.env.example"))
        .expect("read docker.env.example");
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .collect()
}

#[test]
fn serve_refuses_a_missing_or_weak_instance_key_in_one_line() {
    let (good_password, good_salt) = test_secrets();
    let example = example_env();
    let placeholder = |name: &str| {
        example
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("docker.env.example has no {name}"))
    };
    let (example_password, example_salt) = (placeholder(PASSWORD_VAR), placeholder(SALT_VAR));
    assert!(!example_password.is_empty() && !example_salt.is_empty());

    // (case, password, salt, every other docker.env.example variable too, variable named)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, bool, &'a str);
    let cases: Vec<Case> = vec![
        (
            "password missing",
            None,
            Some(good_salt),
            false,
            PASSWORD_VAR,
        ),
        (
            "password empty",
            Some(""),
            Some(good_salt),
            false,
            PASSWORD_VAR,
        ),
        ("both missing", None, None, false, PASSWORD_VAR),
        ("salt missing", Some(good_password), None, false, SALT_VAR),
        (
            "password too short",
            Some("Zq8w1Ab4kP"),
            Some(good_salt),
            false,
            PASSWORD_VAR,
        ),
        (
            "salt too short",
            Some(good_password),
            Some("Xy7Qw2Lm"),
            false,
            SALT_VAR,
        ),
        (
            "docker.env.example as shipped",
            Some(&example_password),
            Some(&example_salt),
            true,
            PASSWORD_VAR,
        ),
        (
            "placeholder salt",
            Some(good_password),
            Some(&example_salt),
            false,
            SALT_VAR,
        ),
        (
            "placeholder password",
            Some(&example_password),
            Some(good_salt),
            false,
            PASSWORD_VAR,
        ),
        (
            "password equals salt",
            Some(good_password),
            Some(good_password),
            false,
            SALT_VAR,
        ),
    ];
    for (case, password, salt, whole_example, var) in cases {
        let mut home = Home::without_secrets();
        if whole_example {
            for (name, value) in &example {
                home.set(name, value);
            }
            // The example listens on 0.0.0.0:8080 and keeps data in ./sluice-data: keep the
            // test on loopback and inside its temp dir in case serve wrongly started.
            let data = home.dir.path().join("data").display().to_string();
            home.set("SLUICE_DATA_DIR", &data);
        }
        home.set("SLUICE_LISTEN", &format!("127.0.0.1:{}", free_port()));
        match password {
            Some(p) => home.set(PASSWORD_VAR, p),
            None => home.unset(PASSWORD_VAR),
        }
        match salt {
            Some(s) => home.set(SALT_VAR, s),
            None => home.unset(SALT_VAR),
        }
        let run =
            run_to_end(home.command(&["serve"]), None, Duration::from_secs(20)).assert_failed(case);
        let reason = run.stderr.trim_end();
        assert_eq!(
            reason.lines().count(),
            1,
            "{case}: the reason must be one line on stderr: {reason:?}"
        );
        assert!(reason.contains(var), "{case}: must name {var}: {reason}");
        assert!(
            reason.contains("sluice keygen"),
            "{case}: should say how to fix it: {reason}"
        );
        for value in [password, salt].into_iter().flatten() {
            assert!(
                value.is_empty() || !reason.contains(value),
                "{case}: the reason shows a secret value: {reason}"
            );
        }
        assert!(
            run.stdout.is_empty(),
            "{case}: stdout should be empty: {}",
            run.stdout
        );
        assert!(
            !home.dir.path().join("data").join("sluice.db").exists(),
            "{case}: refused before touching the store"
        );
    }
}

#[test]
fn secret_seal_binds_the_secret_to_its_owner() {
    let home = Home::new();
    let plaintext = "s3cret-db-password";
    // `echo` adds a newline; it is not part of the secret.
    let sealed = home.seal("datasource/shop/password", &format!("{plaintext}\n"));
    let pattern = regex::Regex::new(r"^enc:v1:([0-9a-f]{16}):([A-Za-z0-9+/]+={0,2})$").unwrap();
    let captures = pattern
        .captures(&sealed)
        .unwrap_or_else(|| panic!("not enc:v1:<16 hex>:<base64>: {sealed:?}"));
    assert_eq!(
        &captures[1],
        test_key().key_id(),
        "key id of the instance key"
    );
    let body = base64::engine::general_purpose::STANDARD
        .decode(&captures[2])
        .expect("base64 body");
    assert_eq!(
        body.len(),
        12 + plaintext.len() + 16,
        "nonce + ciphertext + tag, trailing newline dropped"
    );
    assert!(!sealed.contains(plaintext));
    // A fresh nonce every time.
    assert_ne!(home.seal("datasource/shop/password", plaintext), sealed);

    for owner in [
        "shop/password",
        "datasource/shop",
        "datasource//password",
        "datasource/sh op/password",
        "app/shop/password",
    ] {
        let run = home
            .run(&["secret", "seal", "--owner", owner], Some(plaintext))
            .assert_failed(owner);
        assert!(run.stdout.is_empty(), "{owner}: {}", run.stdout);
        assert!(run.stderr.contains("owner"), "{owner}: {}", run.stderr);
        assert!(!run.stderr.contains(plaintext), "{owner}: {}", run.stderr);
    }
    // No key configured: refused, naming the variable.
    let run = Home::without_secrets()
        .run(
            &["secret", "seal", "--owner", "datasource/shop/password"],
            Some(plaintext),
        )
        .assert_failed("seal without a key");
    assert!(run.stderr.contains(PASSWORD_VAR), "{}", run.stderr);

    // Applied for its own owner, it opens; moved to another datasource, it does not.
    let catalog = shop_catalog(&sealed);
    home.apply(&catalog);
    let before = home.export();
    assert!(before.contains(&sealed), "{before}");

    let moved = home.seal("datasource/other/password", plaintext);
    let path = home.write("moved.yaml", &shop_catalog(&moved));
    let run = home
        .run(&["catalog", "apply", path.to_str().unwrap()], None)
        .assert_failed("apply with a moved ciphertext");
    assert!(
        run.stderr.contains("datasources.shop.password"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&moved), "{}", run.stderr);
    assert!(!run.stderr.contains(plaintext), "{}", run.stderr);
    assert_eq!(
        home.export(),
        before,
        "a refused apply leaves the store as it was"
    );
}

/// A catalog with one PostgreSQL datasource `shop` whose password is `password`, and an app
/// `shop` with one query. The SQL spans lines so compile errors have a line to name.
fn shop_catalog(password: &str) -> String {
    r#"
datasources:
  shop:
    kind: postgres
    host: 127.0.0.1
    port: 5432
    database: test
    user: postgres
    password: @PASSWORD@
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      by_name:
        datasource: shop
        sql: |
          SELECT id
          FROM customers
          WHERE name = {{ params.name }}
        params:
          name: { type: text, required: true }
"#
    .replace("@PASSWORD@", password)
}

#[test]
fn catalog_check_names_what_is_wrong_and_stores_nothing() {
    let home = Home::new();
    let sealed = seal("shop", "password", "db-password");
    let good = shop_catalog(&sealed);
    let check = |name: &str, text: &str, home: &Home| {
        let path = home.write(name, text);
        home.run(&["catalog", "check", path.to_str().unwrap()], None)
    };

    let run = check("good.yaml", &good, &home).assert_ok("good catalog");
    assert!(run.stdout.contains("ok"), "{}", run.stdout);
    assert!(run.stdout.contains("secrets open"), "{}", run.stdout);
    // Without the key, templates are still checked; secrets are said not to be verified.
    let keyless = Home::without_secrets();
    let run = check("good.yaml", &good, &keyless).assert_ok("good catalog without a key");
    assert!(run.stdout.contains("not verified"), "{}", run.stdout);

    // A binding inside a string literal: app, query and the template line are named.
    let literal = good.replace(
        "WHERE name = {{ params.name }}",
        "WHERE name = '{{ params.name }}'",
    );
    assert_ne!(literal, good);
    let run = check("literal.yaml", &literal, &home).assert_failed("binding in a literal");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for needle in [
        "apps.shop.queries.by_name",
        "line 3",
        "string literal",
        "shop",
        "by_name",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }

    // An unknown key: its full path is named.
    let typo = good.replace("        params:\n", "        parms:\n");
    assert_ne!(typo, good);
    let run = check("typo.yaml", &typo, &home).assert_failed("unknown key");
    assert!(
        run.stderr.contains("apps.shop.queries.by_name.parms"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("unknown field"), "{}", run.stderr);

    // A plaintext password: refused (with or without a key), with the command to seal it,
    // and the plaintext is not repeated back.
    let plain = shop_catalog("hunter2-plaintext-pw");
    for home in [&home, &keyless] {
        let run = check("plain.yaml", &plain, home).assert_failed("plaintext password");
        assert!(
            run.stderr.contains("datasources.shop.password"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("sluice secret seal --owner datasource/shop/password"),
            "{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("hunter2-plaintext-pw"),
            "{}",
            run.stderr
        );
        let path = home.dir.path().join("plain.yaml");
        home.run(&["catalog", "apply", path.to_str().unwrap()], None)
            .assert_failed("apply of a plaintext password");
    }

    // Nothing above stored anything.
    let exported = yaml::parse(&home.export()).expect("export parses");
    assert_eq!(exported, CatalogSpec::default());
}

#[test]
fn catalog_with_a_duplicated_query_name_is_refused_naming_both_lines() {
    let home = Home::new();
    let sealed = seal("shop", "password", "db-password");
    let good = shop_catalog(&sealed);
    home.apply(&good);
    let before = home.export();

    // A second `by_name` after the first: YAML readers keep the last one, which would
    // silently replace the first query.
    let duplicated =
        good.clone() + "      by_name:\n        datasource: shop\n        sql: SELECT 2\n";
    let lines: Vec<usize> = duplicated
        .lines()
        .enumerate()
        .filter(|(_, line)| *line == "      by_name:")
        .map(|(index, _)| index + 1)
        .collect();
    assert_eq!(lines.len(), 2, "{duplicated}");
    let path = home.write("duplicated.yaml", &duplicated);

    let run = home
        .run(&["catalog", "check", path.to_str().unwrap()], None)
        .assert_failed("check of a duplicated query name");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let expected = format!(
        "apps.shop.queries.by_name (lines {} and {}): duplicate key",
        lines[0], lines[1]
    );
    assert!(run.stderr.contains(&expected), "{expected}: {}", run.stderr);

    home.run(&["catalog", "apply", path.to_str().unwrap()], None)
        .assert_failed("apply of a duplicated query name");
    assert_eq!(
        home.export(),
        before,
        "a refused apply leaves the store as it was"
    );
}

#[test]
fn catalog_apply_then_export_round_trips_with_secrets_sealed() {
    let home = Home::new();
    let plaintext = "export-never-shows-this";
    // Sealed in-process under the same key (the CLI's `secret seal` has its own test).
    let sealed = seal("shop", "password", plaintext);
    let catalog = r#"
datasources:
  shop:
    kind: postgres
    host: 127.0.0.1
    port: 5432
    database: test
    user: postgres
    password: @SEALED@
    tls: disable
    pool_size: 3
    connect_timeout_ms: 2000
  maria:
    kind: mysql
    host: 127.0.0.1
    database: test
    user: root
  local:
    kind: sqlite
    path: local.db
    read_only: true
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      orders:
        datasource: shop
        description: Orders of one customer
        sql: SELECT id, status FROM orders WHERE customer = {{ params.customer }} AND status = {{ params.status }} ORDER BY {{ params.sort }} {{ params.dir }}
        timeout_ms: 1500
        max_rows: 50
        params:
          customer: { type: int, required: true, min: 1 }
          status: { type: text, enum: [new, paid], default: paid }
          sort: { type: identifier, enum: [id, status], default: id }
          dir: { type: keyword, enum: [ASC, DESC], default: ASC }
      some:
        datasource: maria
        sql: SELECT id FROM orders WHERE id IN ({{ params.ids }})
        params:
          ids: { type: 'array<bigint>', required: true, max_items: 20 }
  staff:
    visibility: workspace
    queries:
      notes:
        datasource: local
        sql: SELECT note FROM notes WHERE note LIKE {{ params.prefix }} || '%'
        params:
          prefix: { type: text, max_length: 20, pattern: '[a-z]+' }
  hidden: {}
"#
    .replace("@SEALED@", &sealed);
    let run = home.apply(&catalog);
    assert!(run.stdout.contains("revision 1"), "{}", run.stdout);
    assert!(!run.stdout.contains(plaintext) && !run.stderr.contains(plaintext));

    let exported = home.export();
    let value: serde_norway::Value =
        serde_norway::from_str(&exported).unwrap_or_else(|e| panic!("not YAML ({e}):\n{exported}"));
    assert_eq!(
        value["datasources"]["shop"]["password"].as_str(),
        Some(sealed.as_str()),
        "{exported}"
    );
    assert!(exported.contains("enc:v1:"), "{exported}");
    assert!(!exported.contains(plaintext), "{exported}");
    let applied = yaml::parse(&catalog).expect("test catalog parses");
    let back = yaml::parse(&exported).expect("export parses as a catalog");
    assert_eq!(back, applied, "export differs from what was applied");

    // The export applies as is (the git round trip): the same catalog, so nothing new is
    // stored.
    let run = home.apply(&exported);
    assert!(run.stdout.contains("nothing applied"), "{}", run.stdout);
    assert_eq!(home.export(), exported);
}

/// A PostgreSQL schema with `orders (id int, note text)` holding three rows.
async fn pg_orders() -> (tokio_postgres::Client, PgSchema) {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {s}.orders (id int PRIMARY KEY, note text NOT NULL);
             INSERT INTO {s}.orders VALUES (1, 'one'), (2, 'two'), (3, 'three');",
            s = schema.name
        ))
        .await
        .unwrap();
    (admin, schema)
}

fn pg_catalog(schema: &str, extra_queries: &str) -> String {
    r#"
datasources:
@DS@
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      orders:
        datasource: pg
        sql: SELECT id, note FROM @S@.orders WHERE id <= {{ params.max }} ORDER BY id
        params:
          max: { type: int, required: true }
      slow:
        datasource: pg
        sql: SELECT pg_sleep(1.5)::text AS s FROM @S@.orders WHERE id = 1
@EXTRA@"#
        .replace("@DS@", pg_datasource_yaml("pg").trim_end())
        .replace("@S@", schema)
        .replace("@EXTRA@", extra_queries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_queries_reloads_on_sighup_and_drains_on_sigterm() {
    let (admin, schema) = pg_orders().await;
    let home = Home::new();
    home.apply(&pg_catalog(&schema.name, ""));
    let mut server = Served::start(
        home.command(&["serve"])
            .env("SLUICE_SHUTDOWN_GRACE_SECS", "10")
            // Signal only: no polling for new revisions (tests/it/catalog_history.rs has it).
            .env("SLUICE_CATALOG_RELOAD_SECS", "0"),
    )
    .await;

    let (status, body) = call(&server, "shop", "orders", json!({"max": 2})).await;
    assert_eq!(status, 200, "{body}");
    let body = parse_json(&body);
    assert_eq!(body["rows"], json!([[1, "one"], [2, "two"]]), "{body}");
    assert_eq!(body["row_count"], 2);
    // The start-up line says what it serves and from where.
    let started = server
        .output()
        .lines()
        .find(|line| line.contains("Sluice is starting"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no start-up line:\n{}", server.output()));
    let store = home.dir.path().join("data").join("sluice.db");
    for field in [
        format!("version={}", env!("CARGO_PKG_VERSION")),
        format!("commit={}", sluice::COMMIT),
        format!("store={}", store.display()),
        "catalog_revision=1".to_string(),
        "datasources=1".to_string(),
        "apps=1".to_string(),
        "queries=2".to_string(),
    ] {
        assert!(started.contains(&field), "{field} in: {started}");
    }

    // SIGHUP after `catalog apply`: a newly added query is served by the same process.
    let (status, body) = call(&server, "shop", "count", json!({})).await;
    assert_eq!(status, 404, "{body}");
    let count = "      count:\n        datasource: pg\n        sql: SELECT count(*)::int AS n FROM @S@.orders\n"
        .replace("@S@", &schema.name);
    home.apply(&pg_catalog(&schema.name, &count));
    let (status, _) = call(&server, "shop", "count", json!({})).await;
    assert_eq!(
        status, 404,
        "applying alone changes nothing in the running gateway"
    );
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(&server, "shop", "count", json!({})).await;
        if status == 200 {
            assert_eq!(parse_json(&body)["rows"], json!([[3]]), "{body}");
            break;
        }
        assert_eq!(status, 404, "{body}");
        assert!(
            Instant::now() < deadline,
            "the new query is not served 10 s after SIGHUP:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.is_running(), "SIGHUP stopped the process");
    let (status, body) = call(&server, "shop", "orders", json!({"max": 1})).await;
    assert_eq!(
        status, 200,
        "the old queries still work after the reload: {body}"
    );
    assert!(
        server.output().contains("Catalog reloaded"),
        "{}",
        server.output()
    );

    // A slow query on its own connection, in flight when SIGTERM arrives.
    let slow_url = server.url("/v1/apps/shop/queries/slow");
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(slow_url)
            .json(&json!({}))
            .send()
            .await
            .expect("slow request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("slow body");
        (status, text, started.elapsed())
    });
    // In flight means running in PostgreSQL (the schema name makes the statement ours).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE '%pg_sleep%' AND query LIKE '%' || $1 || '%' \
                 AND pid <> pg_backend_pid()",
                &[&schema.name],
            )
            .await
            .unwrap()
            .get(0);
        if running > 0 {
            break;
        }
        assert!(
            !slow.is_finished() && Instant::now() < deadline,
            "the slow query never showed up as running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = Instant::now();
    server.signal("TERM");

    // New connections are refused soon after, while the slow query is still running.
    let refused_at = loop {
        match TcpStream::connect_timeout(&server.address, Duration::from_millis(200)) {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                break Instant::now();
            }
            // A loaded machine can time a connect out, or reset one caught as the listener
            // closes: neither is an answer yet, so ask again.
            Err(error) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(2),
                    "no clean refusal 2 s after SIGTERM: {error}"
                );
            }
            Ok(_) => {
                assert!(
                    signalled.elapsed() < Duration::from_secs(1),
                    "still accepting connections 1 s after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        !slow.is_finished(),
        "the listener should close while the slow query is still in flight ({:?} after SIGTERM)",
        refused_at - signalled
    );

    let (status, text, took) = slow.await.unwrap();
    assert_eq!(status, 200, "in-flight request after SIGTERM: {text}");
    let body = parse_json(&text);
    assert_eq!(body["rows"], json!([[""]]), "{body}");
    assert_eq!(body["row_count"], 1, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    assert!(took >= Duration::from_millis(1400), "{took:?}");

    let status = server.wait_exit(Duration::from_secs(8)).await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.output());
    let logs = server.output();
    assert!(logs.contains("draining"), "{logs}");
    assert!(logs.contains("All connections drained"), "{logs}");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn a_client_that_stops_sending_headers_is_disconnected() {
    let home = Home::new();
    let server = Served::start(
        home.command(&["serve"])
            .env("SLUICE_HEADER_READ_TIMEOUT_MS", "300"),
    )
    .await;
    let address = server.address;
    let (outcome, waited) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"POST /v1/apps/a/queries/q HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        let outcome = loop {
            match stream.read(&mut buffer) {
                Ok(0) => break Ok(received),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(error) => break Err(error),
            }
        };
        (outcome, started.elapsed())
    })
    .await
    .unwrap();
    match outcome {
        Ok(received) if received.is_empty() => {}
        Ok(received) => {
            let text = String::from_utf8_lossy(&received);
            assert!(
                text.starts_with("HTTP/1.1 408"),
                "only a 408 may answer: {text}"
            );
        }
        Err(error) => assert!(
            error.kind() != std::io::ErrorKind::WouldBlock
                && error.kind() != std::io::ErrorKind::TimedOut,
            "the connection was still open after 5 s: {error}"
        ),
    }
    assert!(
        waited < Duration::from_secs(2),
        "closed only after {waited:?} (timeout 300 ms)"
    );
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}, before the 300 ms timeout: was it the timeout?"
    );
    // The server is still fine for clients that do send their headers.
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[test]
fn user_and_member_commands_manage_accounts_in_the_store() {
    let home = Home::new();
    let password = "violet-harbour-engine-42";
    let added = home
        .run(
            &[
                "user",
                "add",
                "Ada@Example.com",
                "--role",
                "admin",
                "--name",
                "Ada",
            ],
            Some(&format!("{password}\n")),
        )
        .assert_ok("user add");
    assert!(
        added.stdout.contains("ada@example.com role=admin"),
        "{}",
        added.stdout
    );
    assert!(!added.stdout.contains(password) && !added.stderr.contains(password));
    // The same address again, a weak password and an unknown role are refused with a reason.
    let again = home
        .run(
            &["user", "add", "ada@example.com", "--role", "viewer"],
            Some("\n"),
        )
        .assert_failed("duplicate user");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let weak = home
        .run(
            &["user", "add", "bob@example.com", "--role", "viewer"],
            Some("password1234\n"),
        )
        .assert_failed("weak password");
    assert!(weak.stderr.contains("commonly used"), "{}", weak.stderr);
    assert!(!weak.stderr.contains("password1234"), "{}", weak.stderr);
    let role = home
        .run(
            &["user", "add", "bob@example.com", "--role", "root"],
            Some("\n"),
        )
        .assert_failed("unknown role");
    assert!(
        role.stderr.contains("unknown role `root`"),
        "{}",
        role.stderr
    );
    // Without a password line the account exists but cannot sign in until a reset.
    home.run(
        &[
            "user",
            "add",
            "bob@example.com",
            "--role",
            "viewer",
            "--groups",
            "sales,emea",
        ],
        Some("\n"),
    )
    .assert_ok("user add without password");
    home.run(&["user", "set-role", "bob@example.com", "developer"], None)
        .assert_ok("set-role");
    home.run(&["user", "disable", "bob@example.com"], None)
        .assert_ok("disable");
    let list = home
        .run(&["user", "list"], None)
        .assert_ok("user list")
        .stdout;
    let bob = list
        .lines()
        .find(|l| l.contains("bob@example.com"))
        .unwrap();
    assert!(
        bob.contains("developer") && bob.contains("disabled"),
        "{list}"
    );
    home.run(&["app", "add-member", "crm", "bob@example.com"], None)
        .assert_ok("add-member");
    let members = home
        .run(&["app", "members", "crm"], None)
        .assert_ok("members")
        .stdout;
    assert!(members.contains("bob@example.com"), "{members}");
    home.run(&["app", "remove-member", "crm", "bob@example.com"], None)
        .assert_ok("remove-member");
    let members = home
        .run(&["app", "members", "crm"], None)
        .assert_ok("members")
        .stdout;
    assert!(members.trim().is_empty(), "{members}");
    home.run(&["app", "remove-member", "crm", "bob@example.com"], None)
        .assert_failed("removing a non-member");
    home.run(&["user", "set-role", "nobody@example.com", "viewer"], None)
        .assert_failed("unknown user");
    home.run(&["user", "unlock", "bob@example.com"], None)
        .assert_ok("unlock");
    home.run(&["user", "unlock", "nobody@example.com"], None)
        .assert_failed("unlock of an unknown user");

    // Break-glass password: from stdin, checked against the policy, never echoed.
    let new_password = "copper-lantern-orchard-17";
    let set = home
        .run(
            &["user", "set-password", "bob@example.com"],
            Some(&format!("{new_password}\n")),
        )
        .assert_ok("set-password");
    assert!(!set.stdout.contains(new_password) && !set.stderr.contains(new_password));
    let weak = home
        .run(
            &["user", "set-password", "bob@example.com"],
            Some("password1234\n"),
        )
        .assert_failed("weak password");
    assert!(weak.stderr.contains("commonly used"), "{}", weak.stderr);
    let empty = home
        .run(&["user", "set-password", "bob@example.com"], Some("\n"))
        .assert_failed("empty password");
    assert!(empty.stderr.contains("no password"), "{}", empty.stderr);
    // Delete: the last enabled admin stays; anyone else goes, memberships with them.
    let last = home
        .run(&["user", "delete", "ada@example.com"], None)
        .assert_failed("deleting the last admin");
    assert!(
        last.stderr.contains("last enabled admin"),
        "{}",
        last.stderr
    );
    home.run(&["app", "add-member", "crm", "bob@example.com"], None)
        .assert_ok("add-member");
    let deleted = home
        .run(&["user", "delete", "bob@example.com"], None)
        .assert_ok("delete");
    assert!(deleted.stdout.contains("deleted"), "{}", deleted.stdout);
    let list = home
        .run(&["user", "list"], None)
        .assert_ok("user list")
        .stdout;
    assert!(!list.contains("bob@example.com"), "{list}");
    let members = home
        .run(&["app", "members", "crm"], None)
        .assert_ok("members")
        .stdout;
    assert!(members.trim().is_empty(), "{members}");
    home.run(&["user", "delete", "bob@example.com"], None)
        .assert_failed("deleting an unknown user");
}

/// Only `init` and `serve` create a store: every other command run where there is none
/// (another folder, a wrong SLUICE_DATA_DIR) says so and leaves nothing behind.
#[test]
fn commands_other_than_init_and_serve_never_create_a_store() {
    let home = Home::uninitialised();
    let catalog = home.write("catalog.yaml", "datasources: {}\napps: {}\n");
    let database = home.dir.path().join("data").join("sluice.db");
    for args in [
        vec!["user", "list"],
        vec!["user", "add", "ada@example.com", "--role", "admin"],
        vec!["app", "members", "crm"],
        vec!["catalog", "export"],
        vec!["catalog", "apply", catalog.to_str().unwrap()],
        vec!["egress"],
    ] {
        let run = home.run(&args, Some("\n")).assert_failed(&args.join(" "));
        assert!(
            run.stderr.contains("does not exist") && run.stderr.contains("sluice init"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !database.exists(),
            "{args:?} created {}",
            database.display()
        );
    }
    let created = home.run(&["init"], None).assert_ok("init");
    assert!(created.stdout.contains("created"), "{}", created.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&database), 0o600);
    assert_eq!(mode(database.parent().unwrap()), 0o700);
    let again = home.run(&["init"], None).assert_ok("init again");
    assert!(again.stdout.contains("exists"), "{}", again.stdout);
    home.run(&["user", "list"], None).assert_ok("user list");
}

/// A start-up failure names its cause once: a taken port, a missing certificate file.
#[test]
fn serve_prints_the_cause_of_a_start_up_failure_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().unwrap().port();
    let mut home = Home::new();
    home.set("SLUICE_LISTEN", &format!("127.0.0.1:{port}"));
    let run = home
        .run(&["serve"], None)
        .assert_failed("serve on a taken port");
    let cause = "Address already in use";
    assert_eq!(
        run.stderr.matches(cause).count(),
        1,
        "the cause once: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );

    let mut home = Home::new();
    let missing = home
        .dir
        .path()
        .join("missing-cert.pem")
        .display()
        .to_string();
    home.set("SLUICE_TLS_CERT_FILE", &missing);
    home.set("SLUICE_TLS_KEY_FILE", &missing);
    let run = home
        .run(&["serve"], None)
        .assert_failed("serve with no certificate");
    assert_eq!(run.stderr.matches(&missing).count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("SLUICE_TLS_CERT_FILE"),
        "{}",
        run.stderr
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
    drop(taken);
}

/// What deploy/ relies on: `--env-file` read literally (the real environment wins), secrets
/// from `NAME_FILE`, unknown names warned about with their line, and `sluice healthcheck`
/// answering 0 while the gateway serves and 1 once it is gone.
#[tokio::test]
async fn serve_reads_an_env_file_and_secret_files_and_answers_its_healthcheck() {
    let (password, salt) = test_secrets();
    let token = "file-token-0123456789-abcdefghijklmnop";
    let mut home = Home::without_secrets();
    let password_file = home.write("password", &format!("{password}\n"));
    let salt_file = home.write("salt", salt);
    let token_file = home.write("token", &format!("{token}\r\n"));
    let env_file = home.write(
        "docker.env",
        &format!(
            "\u{feff}# Sluice configuration\r\n\
             SLUICE_ENCRYPTION_PASSWORD_FILE={}\r\n\
             SLUICE_ADMIN_TOKEN_FILE={}\n\
             \n\
             SLUICE_MAIL_FROM=Sluice <sluice@example.com>\n\
             SLUICE_LOG_FORMAT=json\n\
             SLUICE_LISTEN=127.0.0.1:1\n\
             SLUICE_MAX_ROW=5\n",
            password_file.display(),
            token_file.display()
        ),
    );
    home.set("SLUICE_ENCRYPTION_SALT_FILE", salt_file.to_str().unwrap());
    let env_arg = env_file.to_str().unwrap();
    // Served::start sets SLUICE_LISTEN in the environment, which wins over the file's.
    let mut server = Served::start(&mut home.command(&["--env-file", env_arg, "serve"])).await;
    let healthz = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
    let admin = server
        .client
        .get(server.url("/v1/admin/egress"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        admin.status().as_u16(),
        200,
        "the admin token from its file"
    );
    server
        .wait_log("SLUICE_MAX_ROW", 1, Duration::from_secs(5))
        .await;
    let warning = server
        .output()
        .lines()
        .find(|line| line.contains("SLUICE_MAX_ROW"))
        .map(parse_json)
        .expect("a JSON warning line");
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning
            .to_string()
            .contains(&format!("SLUICE_MAX_ROW ({env_arg}, line 8)")),
        "{warning}"
    );
    let output = server.output();
    for secret in [password, salt, token] {
        assert!(!output.contains(secret), "a secret in the log:\n{output}");
    }

    // The healthcheck reads the same configuration; 0.0.0.0 is asked on loopback.
    let port = server.address.port();
    home.set("SLUICE_LISTEN", &format!("0.0.0.0:{port}"));
    let healthy = home.run(&["--env-file", env_arg, "healthcheck"], None);
    let healthy = healthy.assert_ok("healthcheck of a serving gateway");
    assert!(
        healthy.stdout.is_empty() && healthy.stderr.is_empty(),
        "{}",
        healthy.stderr
    );

    let status = server.terminate().await;
    assert!(status.success(), "{status}\n{}", server.output());
    let sick = home
        .run(
            &["--env-file", env_arg, "healthcheck", "--timeout-ms", "2000"],
            None,
        )
        .assert_failed("healthcheck once the gateway is gone");
    assert_eq!(sick.status.code(), Some(1), "docker reads 1 as unhealthy");
    let reason = sick.stderr.trim_end();
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.contains(&format!("GET http://127.0.0.1:{port}/healthz")),
        "{reason}"
    );
}

/// Every refusal of the env file or a secret file is one line naming the file, line or
/// variable, never a value, and comes before the store is touched.
#[test]
fn env_file_and_secret_file_problems_are_refused_in_one_line() {
    let (password, salt) = test_secrets();
    let mut home = Home::without_secrets();
    home.set("SLUICE_LISTEN", &format!("127.0.0.1:{}", free_port()));
    let missing = home.dir.path().join("missing").display().to_string();
    let malformed = home.write(
        "malformed.env",
        &format!("SLUICE_ENCRYPTION_SALT={salt}\nSLUICE_ENCRYPTION_PASSWORD ={password}\n"),
    );
    let both = home.write(
        "both.env",
        &format!("SLUICE_ENCRYPTION_PASSWORD={password}\nSLUICE_ENCRYPTION_PASSWORD_FILE={missing}\nSLUICE_ENCRYPTION_SALT={salt}\n"),
    );
    let unreadable = home.write(
        "unreadable.env",
        &format!("SLUICE_ENCRYPTION_PASSWORD={password}\nSLUICE_ENCRYPTION_SALT_FILE={missing}\n"),
    );
    let cases = [
        (
            malformed.display().to_string(),
            "is malformed: line 2: the variable name \"SLUICE_ENCRYPTION_PASSWORD \" contains whitespace",
        ),
        (missing.clone(), "cannot read the env file"),
        (
            both.display().to_string(),
            "SLUICE_ENCRYPTION_PASSWORD and SLUICE_ENCRYPTION_PASSWORD_FILE are both set",
        ),
        (
            unreadable.display().to_string(),
            "SLUICE_ENCRYPTION_SALT_FILE=",
        ),
    ];
    for (env_file, expected) in cases {
        let run = home
            .run(&["--env-file", &env_file, "serve"], None)
            .assert_failed(expected);
        let reason = run.stderr.trim_end();
        assert_eq!(reason.lines().count(), 1, "{reason}");
        assert!(reason.contains(expected), "{expected}: {reason}");
        assert!(
            !reason.contains(password) && !reason.contains(salt),
            "a secret in: {reason}"
        );
        assert!(
            !home.dir.path().join("data").exists(),
            "{expected}: store touched"
        );
    }
}

/// `--version` names the commit: the work tree's HEAD when built from one.
#[test]
fn version_names_the_commit() {
    let home = Home::without_secrets();
    let run = home.run(&["--version"], None).assert_ok("--version");
    let pattern =
        regex::Regex::new(r"^sluice (\d+\.\d+\.\d+) \(([0-9a-f]{12}|unknown)\)\n$").unwrap();
    let captures = pattern
        .captures(&run.stdout)
        .unwrap_or_else(|| panic!("not `sluice X.Y.Z (commit)`: {:?}", run.stdout));
    assert_eq!(&captures[1], env!("CARGO_PKG_VERSION"));
    assert_eq!(&captures[2], sluice::COMMIT);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    // SLUICE_COMMIT, when set for the build, wins over git (image builds); build.rs reruns
    // when HEAD moves, so otherwise the binary always names the current HEAD.
    if std::env::var_os("SLUICE_COMMIT").is_none()
        && let Ok(head) = head
        && head.status.success()
    {
        assert_eq!(&captures[2], String::from_utf8_lossy(&head.stdout).trim());
    }
}

/// examples/catalog.yaml over examples/postgres-init.sql, as deploy/compose.yaml pairs them,
/// against the local PostgreSQL: the init script run by psql as the postgres image runs it
/// (its password read from a secret file), the role's password sealed by `secret seal` from
/// that file, and both queries answered. Only what the compose network decides is rewritten:
/// host, database, role (roles are per cluster) and the egress allowance.
#[tokio::test]
async fn the_example_catalog_serves_the_example_database() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let shipped = root.join("catalog.yaml");
    // As shipped it compiles; its password is a placeholder that only opens once re-sealed.
    let run = Home::without_secrets()
        .run(&["catalog", "check", shipped.to_str().unwrap()], None)
        .assert_ok("catalog check examples/catalog.yaml");
    assert!(run.stdout.contains("ok"), "{}", run.stdout);
    let refused = Home::new()
        .run(&["catalog", "check", shipped.to_str().unwrap()], None)
        .assert_failed("the placeholder password under a real key");
    assert!(refused.stderr.contains("re-seal"), "{}", refused.stderr);

    let home = Home::new();
    let database = unique_name("example");
    let role = unique_name("sluice_reader");
    let admin = pg_admin().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let password = "reader-0123456789-abcdef";
    let password_file = home.write("reader_password.txt", &format!("{password}\n"));
    let init = std::fs::read_to_string(root.join("postgres-init.sql"))
        .unwrap()
        .replace(
            "/run/secrets/reader_password",
            password_file.to_str().unwrap(),
        )
        .replace("sluice_reader", &role);
    let init_file = home.write("init.sql", &init);
    let psql = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &database])
        .args(["--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&init_file)
        .output()
        .expect("run psql");
    assert!(
        psql.status.success(),
        "psql -f examples/postgres-init.sql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );

    // `secret seal ... < reader_password.txt`, as docs/DEPLOY.md does it.
    let sealed = home.seal("datasource/shop/password", &format!("{password}\n"));
    let mut catalog = std::fs::read_to_string(&shipped).unwrap();
    for (from, to) in [
        ("host: postgres", "host: 127.0.0.1".to_string()),
        ("database: shop", format!("database: {database}")),
        ("user: sluice_reader", format!("user: {role}")),
        (
            "egress_allow: [10.89.46.0/24]",
            "egress_allow: [127.0.0.1/32]".into(),
        ),
    ] {
        assert!(
            catalog.contains(from),
            "examples/catalog.yaml has no `{from}`"
        );
        catalog = catalog.replace(from, &to);
    }
    let placeholder = catalog
        .lines()
        .find(|line| line.trim_start().starts_with("password: enc:v1:"))
        .expect("a sealed password line")
        .to_string();
    catalog = catalog.replace(&placeholder, &format!("    password: {sealed}"));
    home.apply(&catalog);

    let mut server = Served::start(&mut home.command(&["serve"])).await;
    let (status, body) = call(&server, "shop", "list_orders", json!({ "limit": 2 })).await;
    assert_eq!(status, 200, "{body}");
    let body = parse_json(&body);
    assert_eq!(body["row_count"], 2, "{body}");
    assert_eq!(
        body["rows"][0][1], "Ken Thompson",
        "newest paid first: {body}"
    );
    let (status, body) = call(&server, "shop", "get_order", json!({ "id": 1 })).await;
    assert_eq!(status, 200, "{body}");
    let body = parse_json(&body);
    assert_eq!(body["rows"][0][1], "Ada Lovelace", "{body}");
    assert_eq!(
        body["rows"][0][3], "49.90",
        "numeric is an exact string: {body}"
    );
    assert!(server.terminate().await.success(), "{}", server.output());

    for statement in [
        format!("DROP DATABASE {database} WITH (FORCE)"),
        format!("DROP ROLE {role}"),
    ] {
        admin.batch_execute(&statement).await.unwrap();
    }
}

#[test]
fn datasource_test_reports_each_step_and_exits_non_zero_on_failure() {
    let home = Home::new();
    let closed_port = free_port();
    let catalog = format!(
        "datasources:\n{}  closed:\n    kind: postgres\n    host: 127.0.0.1\n    port: {closed_port}\n    database: test\n    user: postgres\n    egress_allow: [127.0.0.1/32]\napps: {{}}\n",
        pg_datasource_yaml("pg")
    );
    home.apply(&catalog);

    let run = home
        .run(&["datasource", "test", "pg"], None)
        .assert_ok("a good datasource");
    for needle in [
        "Datasource `pg` (postgres): ok",
        "dns",
        "select_1",
        "SELECT 1 answered",
    ] {
        assert!(run.stdout.contains(needle), "{needle}: {}", run.stdout);
    }
    assert!(
        !run.stdout.contains("unused-with-trust-auth"),
        "{}",
        run.stdout
    );

    let run = home
        .run(&["datasource", "test", "closed"], None)
        .assert_failed("nothing listens");
    assert!(run.stdout.contains("FAILED at tcp"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("hint: nothing listens on 127.0.0.1:{closed_port}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("failed at step `tcp`"),
        "{}",
        run.stderr
    );

    let run = home
        .run(&["datasource", "test", "closed", "--json"], None)
        .assert_failed("nothing listens, as JSON");
    let report = parse_json(&run.stdout);
    assert_eq!(report["ok"], false);
    assert_eq!(report["steps"][2]["step"], "tcp");
    assert_eq!(report["steps"][2]["status"], "failed");

    let run = home
        .run(&["datasource", "test", "nope"], None)
        .assert_failed("an unknown datasource");
    assert!(
        run.stderr.contains("no datasource `nope`") && run.stderr.contains("closed, pg"),
        "{}",
        run.stderr
    );
}

#[test]
fn catalog_check_reads_the_tls_files_it_names() {
    let home = Home::new();
    let missing = home.dir.path().join("missing-ca.pem");
    let catalog = format!(
        "datasources:\n  db:\n    kind: postgres\n    host: db.example.com\n    database: d\n    user: u\n    tls: verify-full\n    tls_ca_file: {}\napps: {{}}\n",
        missing.display()
    );
    for home in [&home, &Home::without_secrets()] {
        let path = home.write("tls.yaml", &catalog);
        let run = home
            .run(&["catalog", "check", path.to_str().unwrap()], None)
            .assert_failed("a missing CA file");
        assert!(
            run.stderr.contains("datasources.db.tls_ca_file")
                && run.stderr.contains("missing-ca.pem"),
            "{}",
            run.stderr
        );
    }
    let path = home.write("tls.yaml", &catalog);
    home.run(&["catalog", "apply", path.to_str().unwrap()], None)
        .assert_failed("apply with a missing CA file");
}

/// `sluice scan --catalog FILE` before an apply (no store yet): findings as text, JSON and
/// SARIF, `--fail-on` for CI gates, a credential reported by kind and never by value.
#[test]
fn scan_reports_a_catalog_file_and_gates_on_severity() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalog.yaml");
    std::fs::write(
        &file,
        "datasources:
  db: { kind: postgres, host: db.example.com, database: shop, user: app, tls: require }
apps:
  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      signup:
        datasource: db
        description: 'calls the CRM with AKIAZ7QX4PL2M9RT8WQE'
        sql: INSERT INTO leads (email) VALUES ({{ params.email }})
        params: { email: { type: text } }
",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["scan", "--catalog", file.to_str().unwrap()];
        all.extend_from_slice(args);
        common::served::sluice_with_test_key(dir.path(), &all)
            .output()
            .unwrap()
    };
    let text = run(&[]);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let shown = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(shown.starts_with("CRITICAL"), "{shown}");
    for rule in ["SLU-D002", "SLU-C001", "SLU-S006"] {
        assert!(shown.contains(rule), "{rule}: {shown}");
    }
    assert!(!shown.contains("AKIAZ7QX4PL2M9RT8WQE"), "{shown}");

    let json: serde_json::Value =
        serde_json::from_slice(&run(&["--format", "json"]).stdout).unwrap();
    assert_eq!(json["counts"]["critical"], 2, "{json}");
    // Each finding carries the line of its place in the file.
    let line_of = |rule: &str, location: &str| {
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == rule && f["location"] == location)
            .unwrap_or_else(|| panic!("{rule} at {location}: {json}"))["line"]
            .clone()
    };
    assert_eq!(line_of("SLU-D002", "apps.shop.queries.signup"), 8);
    assert_eq!(
        line_of("SLU-C001", "apps.shop.queries.signup.description"),
        10
    );
    assert_eq!(line_of("SLU-S006", "datasources.db.tls"), 2);
    assert!(
        shown.contains("apps.shop.queries.signup (line 8)"),
        "{shown}"
    );
    let sarif: serde_json::Value =
        serde_json::from_slice(&run(&["--format", "sarif"]).stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(common::sarif_problems(&sarif), Vec::<String>::new());
    assert!(
        sarif["runs"][0]["results"].as_array().unwrap().len() >= 3,
        "{sarif}"
    );
    let physical = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "SLU-D002")
        .expect("SLU-D002 in the SARIF")["locations"][0]["physicalLocation"]
        .clone();
    assert_eq!(physical["region"]["startLine"], 8, "{sarif}");
    let uri = physical["artifactLocation"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("file:///") && uri.ends_with("/catalog.yaml"),
        "{uri}"
    );

    let gated = run(&["--fail-on", "critical"]);
    assert!(!gated.status.success());
    assert!(String::from_utf8_lossy(&gated.stderr).contains("--fail-on"));
    let bad = run(&["--format", "xml"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--format"));
}

/// The SARIF check catches a log that breaks the schema (so a passing check means something).
#[test]
fn the_sarif_check_rejects_an_invalid_log() {
    let bad = json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x",
        "rules": [{"id": "a", "defaultConfiguration": {"level": "severe"}}]}}}]});
    let problems = common::sarif_problems(&bad);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("defaultConfiguration/level"),
        "{problems:?}"
    );
}

/// `sluice scan --advisory-db PATH` against a fixture advisory-db: an advisory naming a
/// dependency and version really in this build is reported with its CVSS severity and
/// fixed version; a patched version, a withdrawn advisory and another crate are not; an
/// informational advisory is an info finding; the SARIF validates; a malformed advisory
/// or a path that is no advisory-db fails naming it.
#[test]
fn scan_checks_the_builds_dependencies_against_an_advisory_db() {
    let deps = sluice::scan::advisories::DEPENDENCIES;
    let version = |name: &str| {
        deps.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| panic!("{name} is a dependency"))
    };
    let (tokio, serde) = (version("tokio"), version("serde"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("advisory-db");
    let write = |krate: &str, id: &str, advisory: &str, versions: &str| {
        let folder = db.join("crates").join(krate);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{id}.md")),
            format!(
                "```toml\n[advisory]\nid = \"{id}\"\npackage = \"{krate}\"\ndate = \"2099-01-01\"\n\
                 {advisory}\n\n[versions]\n{versions}\n```\n\n# Fixture flaw {id}\n\nText.\n"
            ),
        )
        .unwrap();
    };
    let cvss = "cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"";
    write(
        "tokio",
        "RUSTSEC-2099-0001",
        cvss,
        "patched = [\">= 99.0.0\"]",
    );
    write(
        "tokio",
        "RUSTSEC-2099-0002",
        cvss,
        &format!("patched = [\">= {tokio}\"]"),
    );
    write(
        "tokio",
        "RUSTSEC-2099-0003",
        &format!("{cvss}\nwithdrawn = \"2099-02-01\""),
        "patched = []",
    );
    write(
        "serde",
        "RUSTSEC-2099-0004",
        "informational = \"unmaintained\"",
        "patched = []",
    );
    write("not-our-crate", "RUSTSEC-2099-0005", cvss, "patched = []");
    let catalog = dir.path().join("catalog.yaml");
    std::fs::write(&catalog, "apps: {}\n").unwrap();
    let run = |db: &Path, format: &str| {
        common::served::sluice_with_test_key(
            dir.path(),
            &[
                "scan",
                "--catalog",
                catalog.to_str().unwrap(),
                "--advisory-db",
                db.to_str().unwrap(),
                "--format",
                format,
            ],
        )
        .output()
        .unwrap()
    };
    let out = run(&db, "json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["location"].as_str().unwrap().starts_with("packages."))
        .collect();
    assert_eq!(packages.len(), 2, "{report}");
    assert_eq!(packages[0]["rule"], "SLU-P001");
    assert_eq!(packages[0]["severity"], "critical");
    assert_eq!(packages[0]["location"], format!("packages.tokio@{tokio}"));
    let message = packages[0]["message"].as_str().unwrap();
    assert!(message.contains("RUSTSEC-2099-0001"), "{message}");
    assert!(message.contains("CVSS 9.8"), "{message}");
    assert!(message.contains("fixed in >=99.0.0"), "{message}");
    assert_eq!(packages[1]["rule"], "SLU-P002");
    assert_eq!(packages[1]["severity"], "info");
    assert_eq!(packages[1]["location"], format!("packages.serde@{serde}"));
    assert_eq!(report["counts"]["critical"], 1, "{report}");

    let sarif: serde_json::Value = serde_json::from_slice(&run(&db, "sarif").stdout).unwrap();
    assert_eq!(common::sarif_problems(&sarif), Vec::<String>::new());
    assert!(
        sarif["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["ruleId"] == "SLU-P001" && r["level"] == "error"),
        "{sarif}"
    );

    std::fs::write(
        db.join("crates/tokio/RUSTSEC-2099-0006.md"),
        "# not an advisory\n",
    )
    .unwrap();
    let broken = run(&db, "text");
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("RUSTSEC-2099-0006.md"), "{stderr}");
    let nowhere = run(dir.path(), "text");
    assert!(!nowhere.status.success());
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("no crates/ directory"),
        "{}",
        String::from_utf8_lossy(&nowhere.stderr)
    );
}

/// `sluice catalog apply` that makes an app public shows the scan of that app, refuses on
/// a critical finding (nothing applied), and with `--force` applies and audits
/// `app_published_forced` with the rule ids.
#[test]
fn catalog_apply_refuses_to_publish_an_app_with_critical_findings_unless_forced() {
    let home = Home::new();
    let catalog = |visibility: &str, grants: &str| {
        format!(
            "datasources:\n  pg: {{ kind: postgres, host: 127.0.0.1, database: test, user: postgres }}\n\
             apps:\n  shop:\n    visibility: {visibility}\n    grants: {grants}\n    queries:\n      \
             wipe: {{ datasource: pg, sql: 'DELETE FROM pg_temp.nothing WHERE 1 = 0' }}\n"
        )
    };
    home.apply(&catalog("private", "{ roles: [viewer] }"));
    let public = home.write("public.yaml", &catalog("public", "{ anonymous: true }"));
    let refused = home
        .run(&["catalog", "apply", public.to_str().unwrap()], None)
        .assert_failed("publishing with a critical finding");
    assert!(refused.stderr.contains("SLU-D002"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("apps.shop.queries.wipe"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert!(
        home.export().contains("visibility: private"),
        "{}",
        home.export()
    );

    let forced = home
        .run(
            &["catalog", "apply", "--force", public.to_str().unwrap()],
            None,
        )
        .assert_ok("a forced publish");
    assert!(forced.stderr.contains("audited"), "{}", forced.stderr);
    assert!(home.export().contains("visibility: public"));
    let db = rusqlite::Connection::open(home.dir.path().join("data/sluice.db")).unwrap();
    let details: String = db
        .query_row(
            "SELECT details FROM audit_events WHERE event = 'app_published_forced'",
            [],
            |row| row.get(0),
        )
        .expect("the forced publish is audited");
    assert!(details.contains("SLU-D002"), "{details}");
    assert!(details.contains("\"shop\""), "{details}");
}
