//! The operator's store commands, run as the `sluice` binary: catalog history, diff,
//! `--prune`, rollback and the egress pre-flight; a running gateway that loads a newly
//! applied or rolled-back revision without a signal; and backup and restore (consistent
//! while serving, checked against the instance key, serving the same catalog and accepting
//! the same logins afterwards).

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::served::{self, Served, sluice_with_test_key};
use serde_json::json;

/// Runs `sluice <args>` for the test instance in `dir`, feeding `stdin`.
fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    run_command(sluice_with_test_key(dir, args), stdin)
}

fn run_command(mut command: Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for sluice")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(output: Output, what: &str) -> String {
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{what}: {:?}\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

fn failed(output: Output, what: &str) -> String {
    let (stdout, stderr) = text(&output);
    assert!(
        !output.status.success(),
        "{what} should fail:\n{stdout}\n{stderr}"
    );
    stderr
}

/// A catalog on an SQLite file in `dir` (created empty), with the named queries (each
/// `SELECT <n> AS n`).
fn catalog(dir: &Path, queries: &[(&str, u32)]) -> String {
    drop(rusqlite::Connection::open(dir.join("shop.db")).expect("create shop.db"));
    let mut yaml = format!(
        "datasources:\n  db: {{ kind: sqlite, path: {} }}\napps:\n  shop:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n",
        dir.join("shop.db").display()
    );
    for (name, n) in queries {
        yaml.push_str(&format!(
            "      {name}: {{ datasource: db, sql: SELECT {n} AS n }}\n"
        ));
    }
    yaml
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn export(dir: &Path) -> String {
    ok(run(dir, &["catalog", "export"], None), "catalog export")
}

#[test]
fn apply_shows_changes_needs_prune_to_remove_and_rolls_back() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    served::init_store(dir);
    let v1 = write(dir, "v1.yaml", &catalog(dir, &[("one", 1), ("two", 2)]));
    let v2 = write(dir, "v2.yaml", &catalog(dir, &[("one", 1), ("three", 3)]));
    let empty = write(dir, "empty.yaml", "datasources: {}\napps: {}\n");
    // A file with nothing in it (a failed edit or redirect) is refused before anything.
    let blank = write(dir, "blank.yaml", "# only a comment\n\n");
    for command in ["check", "apply"] {
        let refused = failed(run(dir, &["catalog", command, &blank], None), command);
        assert!(refused.contains("is empty"), "{refused}");
    }

    let applied = ok(run(dir, &["catalog", "apply", &v1], None), "apply v1");
    assert!(applied.contains("+ query shop/one"), "{applied}");
    assert!(applied.contains("catalog revision 1"), "{applied}");
    let first = export(dir);
    // The same file again stores nothing.
    let same = ok(run(dir, &["catalog", "apply", &v1], None), "apply v1 again");
    assert!(same.contains("nothing applied"), "{same}");

    // Removing a query needs --prune; without it nothing changes.
    let refused = failed(run(dir, &["catalog", "apply", &v2], None), "apply v2");
    assert!(
        refused.contains("- query shop/two") && refused.contains("--prune"),
        "{refused}"
    );
    assert_eq!(export(dir), first);
    // An empty catalog never wipes the store silently.
    let wipe = failed(run(dir, &["catalog", "apply", &empty], None), "apply empty");
    assert!(
        wipe.contains("- app shop") && wipe.contains("- datasource db"),
        "{wipe}"
    );
    assert_eq!(export(dir), first);
    let pruned = ok(
        run(dir, &["catalog", "apply", "--prune", &v2], None),
        "apply v2 --prune",
    );
    assert!(
        pruned.contains("+ query shop/three") && pruned.contains("- query shop/two"),
        "{pruned}"
    );
    let second = export(dir);

    // History, newest first; diff between revisions and against a file.
    let history = ok(run(dir, &["catalog", "history"], None), "history");
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(
        lines[0].starts_with("2\t")
            && lines[0].contains("v2.yaml")
            && lines[0].contains("(current)"),
        "{history}"
    );
    assert!(
        lines[1].starts_with("1\t") && lines[1].contains("v1.yaml"),
        "{history}"
    );
    let diff = ok(run(dir, &["catalog", "diff", "1"], None), "diff 1");
    assert!(
        diff.contains("+ query shop/three")
            && diff.contains("- query shop/two")
            && diff.contains("-        sql: SELECT 2 AS n")
            && diff.contains("+        sql: SELECT 3 AS n"),
        "{diff}"
    );
    let none = ok(run(dir, &["catalog", "diff", "2"], None), "diff 2");
    assert!(none.contains("no difference"), "{none}");
    let against_file = ok(
        run(dir, &["catalog", "diff", "--file", &v1], None),
        "diff --file",
    );
    assert!(against_file.contains("+ query shop/two"), "{against_file}");
    assert_eq!(
        ok(
            run(dir, &["catalog", "export", "--revision", "1"], None),
            "export 1"
        ),
        first
    );
    let missing = failed(run(dir, &["catalog", "diff", "9"], None), "diff 9");
    assert!(missing.contains("no catalog revision 9"), "{missing}");

    // Rollback: removal needs --prune too; then revision 1's catalog is current again, as
    // a new revision.
    failed(run(dir, &["catalog", "rollback", "1"], None), "rollback 1");
    assert_eq!(export(dir), second);
    let rolled = ok(
        run(dir, &["catalog", "rollback", "1", "--prune"], None),
        "rollback 1 --prune",
    );
    assert!(rolled.contains("catalog revision 3"), "{rolled}");
    assert_eq!(export(dir), first);
    let history = ok(run(dir, &["catalog", "history"], None), "history");
    assert!(
        history
            .lines()
            .next()
            .unwrap()
            .contains("rollback to revision 1"),
        "{history}"
    );
}

#[test]
fn the_egress_preflight_names_the_line_to_add() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    served::init_store(dir);
    let private = |allow: &str| {
        format!(
            "datasources:\n  pg:\n    kind: postgres\n    host: 10.20.30.40\n    database: shop\n    user: reader\n{allow}apps: {{}}\n"
        )
    };
    let refused = write(dir, "refused.yaml", &private(""));
    // A warning by default: the catalog is stored.
    let output = run(dir, &["catalog", "check", &refused], None);
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("datasource pg")
            && stderr.contains("a private address")
            && stderr.contains(r#"egress_allow: ["10.20.30.40/32"]"#),
        "{stderr}"
    );
    // --strict makes it an error, and nothing is stored.
    let strict = failed(
        run(dir, &["catalog", "apply", "--strict", &refused], None),
        "apply --strict",
    );
    assert!(strict.contains("egress policy refuses"), "{strict}");
    assert!(!export(dir).contains("pg:"));
    // The suggested line, added, passes.
    let allowed = write(
        dir,
        "allowed.yaml",
        &private("    egress_allow: [\"10.20.30.40/32\"]\n"),
    );
    let output = run(dir, &["catalog", "apply", "--strict", &allowed], None);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("egress"), "{stderr}");
    // A cloud metadata address stays refused, with no line to add.
    let metadata = write(
        dir,
        "metadata.yaml",
        &private("").replace("10.20.30.40", "169.254.169.254"),
    );
    let refused = failed(
        run(dir, &["catalog", "check", "--strict", &metadata], None),
        "metadata",
    );
    assert!(refused.contains("stay refused"), "{refused}");
}

/// Calls `shop/<query>` and returns the status.
async fn status_of(server: &Served, query: &str) -> u16 {
    server
        .client
        .post(server.url(&format!("/v1/apps/shop/queries/{query}")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// Waits until `query` answers `status` (the gateway loaded a revision), at most 10 s.
async fn wait_for(server: &Served, query: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(server, query).await != status {
        assert!(
            Instant::now() < deadline,
            "shop/{query} does not answer {status}:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_loads_applies_and_rollbacks_without_a_signal() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    served::apply_catalog(dir, &catalog(dir, &[("one", 1)]));
    let server =
        Served::start(sluice_with_test_key(dir, &["serve"]).env("SLUICE_CATALOG_RELOAD_SECS", "1"))
            .await;
    assert_eq!(status_of(&server, "one").await, 200);
    assert_eq!(status_of(&server, "two").await, 404);

    let v2 = write(dir, "v2.yaml", &catalog(dir, &[("one", 1), ("two", 2)]));
    ok(run(dir, &["catalog", "apply", &v2], None), "apply v2");
    wait_for(&server, "two", 200).await;
    ok(
        run(dir, &["catalog", "rollback", "1", "--prune"], None),
        "rollback",
    );
    wait_for(&server, "two", 404).await;
    assert_eq!(status_of(&server, "one").await, 200);
    assert!(
        server.output().contains("a new revision was applied"),
        "{}",
        server.output()
    );
}

/// Signs in; returns the status.
async fn login(server: &Served, email: &str, password: &str) -> u16 {
    server
        .client
        .post(server.url("/v1/auth/login"))
        .header("content-type", "application/json")
        .body(json!({"email": email, "password": password}).to_string())
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_the_same_catalog_and_logins() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let password = "amber-kettle-horizon-58";
    served::apply_catalog(dir, &catalog(dir, &[("one", 1), ("two", 2)]));
    ok(
        run(
            dir,
            &["user", "add", "vera@example.com", "--role", "viewer"],
            Some(&format!("{password}\n")),
        ),
        "user add",
    );
    let server = Served::start(&mut sluice_with_test_key(dir, &["serve"])).await;
    assert_eq!(login(&server, "vera@example.com", password).await, 200);
    let catalog_before = export(dir);

    // Writers keep the store busy (each failed sign-in writes the account and the audit log)
    // while backups are taken.
    let writing = {
        let client = server.client.clone();
        let url = server.url("/v1/auth/login");
        tokio::spawn(async move {
            for _ in 0..40 {
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(json!({"email": "nobody@example.com", "password": "x"}).to_string())
                    .send()
                    .await;
            }
        })
    };
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("sluice-backup.db");
    let backup_arg = backup.to_str().unwrap();
    let made = ok(run(dir, &["backup", backup_arg], None), "backup");
    assert!(
        made.contains("catalog revision 1") && made.contains("1 users"),
        "{made}"
    );
    writing.await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600,
        "a backup holds password hashes: private"
    );
    // One self-contained file, whole: SQLite's own check passes on it.
    let check = rusqlite::Connection::open(&backup).unwrap();
    let integrity: String = check
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(check);
    // Never over an existing file.
    let again = failed(
        run(dir, &["backup", backup_arg], None),
        "backup over a file",
    );
    assert!(again.contains("never overwrites"), "{again}");

    // A fresh machine with the same instance key: restore, serve, same catalog, same login.
    let fresh = tempfile::tempdir().unwrap();
    let restored = ok(
        run(fresh.path(), &["restore", backup_arg], None),
        "restore into a new data dir",
    );
    assert!(restored.contains("catalog revision 1"), "{restored}");
    assert_eq!(
        std::fs::metadata(fresh.path().join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "the data directory a restore makes is private, as `init` makes it"
    );
    assert_eq!(export(fresh.path()), catalog_before);
    let second = Served::start(&mut sluice_with_test_key(fresh.path(), &["serve"])).await;
    assert_eq!(status_of(&second, "two").await, 200);
    assert_eq!(login(&second, "vera@example.com", password).await, 200);
    assert_eq!(
        login(&second, "vera@example.com", "wrong-password-x").await,
        401
    );

    // Restoring over a store that has changed since: the old one is saved beside it.
    let v2 = write(dir, "v2.yaml", &catalog(dir, &[("one", 1)]));
    ok(
        run(dir, &["catalog", "apply", "--prune", &v2], None),
        "apply v2",
    );
    let over = ok(run(dir, &["restore", backup_arg], None), "restore over");
    assert!(over.contains("before-restore-"), "{over}");
    assert_eq!(export(dir), catalog_before);
    let saved: Vec<_> = std::fs::read_dir(dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("before-restore-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    // The gateway that kept running loads the restored catalog.
    wait_for(&server, "two", 200).await;
}

#[test]
fn a_restore_refuses_a_foreign_key_and_files_that_are_not_stores() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let secret = common::seal("pg", "password", "the-db-password");
    let sealed_catalog = format!(
        "datasources:\n  pg:\n    kind: postgres\n    host: db.example.com\n    database: shop\n    user: reader\n    password: {secret}\napps: {{}}\n"
    );
    served::apply_catalog(dir, &sealed_catalog);
    let backup = dir.join("backup.db");
    ok(
        run(dir, &["backup", backup.to_str().unwrap()], None),
        "backup",
    );

    // Another instance key: refused, and that instance's store is untouched.
    let other = tempfile::tempdir().unwrap();
    let (password, salt) = sluice::vault::keygen();
    let with_other_key = |args: &[&str]| {
        let mut command = served::sluice(other.path(), args);
        command
            .env("SLUICE_ENCRYPTION_PASSWORD", &password)
            .env("SLUICE_ENCRYPTION_SALT", &salt)
            .env("SLUICE_DATA_DIR", other.path().join("data"));
        command
    };
    ok(run_command(with_other_key(&["init"]), None), "init");
    let refused = failed(
        run_command(with_other_key(&["restore", backup.to_str().unwrap()]), None),
        "restore under another key",
    );
    assert!(
        refused.contains("do not open with this instance key"),
        "{refused}"
    );
    let export = ok(
        run_command(with_other_key(&["catalog", "export"]), None),
        "export",
    );
    assert!(!export.contains("pg:"), "{export}");

    // Not a store at all, or missing.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, "not a database, just some text that is long enough").unwrap();
    failed(
        run(dir, &["restore", junk.to_str().unwrap()], None),
        "restore junk",
    );
    let gone = failed(
        run(
            dir,
            &["restore", dir.join("missing.db").to_str().unwrap()],
            None,
        ),
        "restore a missing file",
    );
    assert!(gone.contains("does not exist"), "{gone}");
    // The store itself is not a backup of itself.
    let itself = dir.join("data").join("sluice.db");
    let refused = failed(
        run(dir, &["restore", itself.to_str().unwrap()], None),
        "restore the store onto itself",
    );
    assert!(refused.contains("the store itself"), "{refused}");
}
