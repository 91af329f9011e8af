//! The audit log as an operator sees it (docs/AUDIT.md), against the real binary: the hash
//! chain and `sluice audit verify` (intact, then each kind of tampering named with its entry,
//! on copies made by `sluice backup`), retention that prunes and leaves a chain that still
//! verifies, query runs recorded as metadata with a canary param value found nowhere (store
//! file, export file, webhook bodies), the webhook's retries (a local receiver that answers
//! 500 first), a webhook that hangs (requests stay fast, drops are counted in `/metrics`), a
//! webhook aimed where the egress guard refuses, and `GET /v1/admin/audit` paging every entry
//! exactly once with filters, and refusing a bad cursor or filter with a 400 naming it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::served::{Served, apply_catalog, init_store, sluice_with_test_key};
use crate::common::{pg_datasource_yaml, unique_name};

const ADMIN_TOKEN: &str = "audit-test-admin-token-0123456789abcdef";
const METRICS_TOKEN: &str = "audit-test-metrics-token-0123456789abcdef";
const WEBHOOK_TOKEN: &str = "audit-webhook-bearer-5e6f7a8b";

/// `sluice serve` for the test instance in `dir`, with the admin and metrics tokens and a
/// sign-in rate high enough for the tests' failed sign-ins.
fn serve(dir: &Path) -> Command {
    let mut command = sluice_with_test_key(dir, &["serve"]);
    command
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_METRICS_TOKEN", METRICS_TOKEN)
        .env("SLUICE_AUTH_RATE_PER_MINUTE", "100000");
    command
}

/// A failed sign-in for `email` (an unknown account): one `login_failed` entry.
async fn failed_login(served: &Served, email: &str) {
    let response = served
        .client
        .post(served.url("/v1/auth/login"))
        .json(&json!({ "email": email, "password": "not-the-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

async fn admin_get(served: &Served, path: &str) -> (u16, Value) {
    let response = served
        .client
        .get(served.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn metrics(served: &Served) -> String {
    served
        .client
        .get(served.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `line_start` (name and labels) in a scrape, 0 when absent.
fn sample(scrape: &str, line_start: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(line_start))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

fn verify(dir: &Path, file: Option<&Path>) -> Output {
    let mut args = vec!["audit", "verify"];
    let file_arg;
    if let Some(file) = file {
        file_arg = file.display().to_string();
        args.extend(["--file", &file_arg]);
    }
    sluice_with_test_key(dir, &args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A copy of the store made by `sluice backup`.
fn backup(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    let output = sluice_with_test_key(dir, &["backup", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "backup: {}", text(&output));
    file
}

/// What an attacker with the file does: drop the trigger that refuses it, then change it.
fn tamper(file: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.execute_batch(&format!(
        "DROP TRIGGER IF EXISTS audit_events_no_update; \
         DROP TRIGGER IF EXISTS audit_events_no_delete; {sql}"
    ))
    .unwrap();
}

#[tokio::test]
async fn verify_passes_on_a_served_log_and_names_each_tampering() {
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    // Six failures would also raise an alert entry: off, so the log holds just the six.
    let mut served =
        Served::start(serve(dir.path()).env("SLUICE_ALERT_SIGN_IN_FAILURES", "off")).await;
    for n in 0..6 {
        failed_login(&served, &format!("nobody{n}@example.com")).await;
    }
    served.terminate().await;

    let intact = verify(dir.path(), None);
    let said = text(&intact);
    assert!(intact.status.success(), "{said}");
    assert!(
        said.contains("intact: 6 entries verified, last entry 6, last hash "),
        "{said}"
    );

    // Content changed in the middle.
    let changed = backup(dir.path(), "changed.db");
    tamper(
        &changed,
        "UPDATE audit_events SET email = 'someone@example.com' WHERE id = 3",
    );
    let output = verify(dir.path(), Some(&changed));
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("broken at entry 3: content changed"),
        "{}",
        text(&output)
    );

    // An entry deleted from the middle.
    let middle = backup(dir.path(), "middle.db");
    tamper(&middle, "DELETE FROM audit_events WHERE id = 4");
    let output = verify(dir.path(), Some(&middle));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("broken at entry 4: missing (deleted from the middle"),
        "{}",
        text(&output)
    );

    // The newest entry deleted, the chain's state left as it was.
    let last = backup(dir.path(), "last.db");
    tamper(&last, "DELETE FROM audit_events WHERE id = 6");
    let output = verify(dir.path(), Some(&last));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("broken at entry 6: missing (the newest entries were deleted"),
        "{}",
        text(&output)
    );

    // The live store itself, tampered the same way.
    tamper(
        &dir.path().join("data/sluice.db"),
        "UPDATE audit_events SET ip = '203.0.113.9' WHERE id = 2",
    );
    let output = verify(dir.path(), None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("entry 2: content changed"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn retention_prunes_old_entries_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    {
        // Entries from three days ago, then two from now.
        use sluice::store::audit::{AuditEvent, AuditStore};
        let store = sluice::store::SqliteStore::open(&dir.path().join("data/sluice.db")).unwrap();
        let now = chrono::Utc::now().timestamp();
        for (n, at) in [0, 0, 0, 0, 3 * 86_400, 3 * 86_400].iter().enumerate() {
            store
                .append_audit(&AuditEvent {
                    id: 0,
                    at: now - 3 * 86_400 + at - 60 + n as i64,
                    event: "login_failed".into(),
                    user_id: None,
                    email: Some(format!("old{n}@example.com")),
                    actor: None,
                    ip: None,
                    user_agent: None,
                    reason: Some("unknown_account".into()),
                    details: None,
                })
                .unwrap();
        }
    }
    let mut served = Served::start(serve(dir.path()).env("SLUICE_AUDIT_RETENTION_DAYS", "1")).await;
    served
        .wait_log(
            "Audit entries older than the retention pruned",
            1,
            Duration::from_secs(30),
        )
        .await;
    let (status, page) = admin_get(&served, "/v1/admin/audit").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [6, 5]);
    assert!(
        metrics(&served)
            .await
            .contains("sluice_audit_pruned_total 4")
    );
    // Appends go on from the pruned chain.
    failed_login(&served, "new@example.com").await;
    served.terminate().await;
    let output = verify(dir.path(), None);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("intact: 3 entries verified, last entry 7"),
        "{said}"
    );
    assert!(
        said.contains("entries up to 4 were pruned by retention"),
        "{said}"
    );
}

/// A local webhook receiver: answers 500 to the first `failures` requests, then 200 (or
/// never answers at all when `hang`), and keeps every request it read.
#[derive(Clone)]
struct Receiver {
    address: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// A request the receiver read: its head (request line and headers) and body.
type Request = (String, Vec<u8>);

impl Receiver {
    async fn start(failures: usize, hang: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            address: listener.local_addr().unwrap(),
            requests: Arc::default(),
        };
        let requests = receiver.requests.clone();
        tokio::spawn(async move {
            let answered = Arc::new(Mutex::new(0usize));
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let requests = requests.clone();
                let answered = answered.clone();
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut socket).await else {
                        return;
                    };
                    requests.lock().unwrap().push((head, body));
                    if hang {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let status = {
                        let mut answered = answered.lock().unwrap();
                        *answered += 1;
                        if *answered <= failures {
                            "500 Internal Server Error"
                        } else {
                            "200 OK"
                        }
                    };
                    let _ = socket
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .as_bytes(),
                        )
                        .await;
                });
            }
        });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/audit", self.address)
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests.lock().unwrap().clone()
    }

    /// Every entry the receiver was sent, by id (a batch sent twice counts once).
    fn entries(&self) -> Vec<Value> {
        let mut seen = BTreeSet::new();
        let mut entries = Vec::new();
        for (_, body) in self.requests() {
            for line in String::from_utf8(body).unwrap().lines() {
                let entry: Value = serde_json::from_str(line).unwrap();
                if seen.insert(entry["id"].as_i64().unwrap()) {
                    entries.push(entry);
                }
            }
        }
        entries
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body: (head, body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some((head, buffer[head_end..head_end + length].to_vec()))
}

fn shop_catalog() -> String {
    format!(
        "datasources:\n{}apps:\n  shop:\n    visibility: public\n    grants: {{ anonymous: true }}\n    \
         queries:\n      echo:\n        datasource: pg\n        sql: SELECT {{{{ params.word }}}}::text AS word\n        \
         params:\n          word: {{ type: text, required: true }}\n      \
         broken:\n        datasource: pg\n        sql: SELECT * FROM no_such_table_for_audit\n",
        pg_datasource_yaml("pg")
    )
}

async fn run_echo(served: &Served, word: &str) -> (u16, Duration) {
    let started = Instant::now();
    let response = served
        .client
        .post(served.url("/v1/apps/shop/queries/echo"))
        .json(&json!({ "params": { "word": word } }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    (status, started.elapsed())
}

/// Waits until `check` holds; panics with `what` after `limit`.
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn query_runs_are_metadata_only_and_reach_the_file_and_the_webhook_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    apply_catalog(dir.path(), &shop_catalog());
    let canary = unique_name("auditcanary");
    let export = dir.path().join("audit.jsonl");
    let receiver = Receiver::start(2, false).await;
    let mut served = Served::start(
        serve(dir.path())
            .env("SLUICE_AUDIT_QUERY_RUNS", "true")
            .env("SLUICE_AUDIT_EXPORT", format!("file:{}", export.display()))
            .env("SLUICE_AUDIT_WEBHOOK_URL", receiver.url())
            .env("SLUICE_AUDIT_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
            .env("SLUICE_EGRESS_ALLOW", "127.0.0.1/32"),
    )
    .await;
    assert_eq!(run_echo(&served, &canary).await.0, 200);
    let broken = served
        .client
        .post(served.url("/v1/apps/shop/queries/broken"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(broken.status().is_client_error() || broken.status().is_server_error());
    failed_login(&served, "someone@example.com").await;

    // The runs in the log, as metadata.
    let mut runs = Vec::new();
    eventually(
        "two query_run entries in the log",
        Duration::from_secs(20),
        async || {
            let (_, page) = admin_get(&served, "/v1/admin/audit?event=query_run").await;
            runs = page["events"].as_array().cloned().unwrap_or_default();
            runs.len() == 2
        },
    )
    .await;
    let details = |entry: &Value| -> Value {
        serde_json::from_str(entry["details"].as_str().unwrap()).unwrap()
    };
    let failed = details(&runs[0]);
    assert_eq!(
        (failed["app"].as_str(), failed["query"].as_str()),
        (Some("shop"), Some("broken"))
    );
    assert_ne!(failed["status"], 200);
    assert!(runs[0]["reason"].is_string(), "{}", runs[0]);
    let ok = details(&runs[1]);
    assert_eq!(
        (ok["query"].as_str(), ok["status"].as_u64()),
        (Some("echo"), Some(200))
    );
    assert_eq!(ok["row_count"], 1);
    assert!(ok["duration_us"].as_u64().is_some());
    assert_eq!(runs[1]["ip"], "127.0.0.1");
    assert!(runs[1]["hash"].as_str().unwrap().len() == 64);

    // The webhook: 500 twice, then accepted; every entry arrives, with the token, in order.
    eventually(
        "the webhook received every entry",
        Duration::from_secs(30),
        async || receiver.entries().len() >= 3,
    )
    .await;
    let requests = receiver.requests();
    assert!(
        requests.len() >= 3,
        "retried after the 500s: {}",
        requests.len()
    );
    for (head, _) in &requests {
        assert!(head.starts_with("POST /audit HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(&format!(
                "authorization: bearer {}",
                WEBHOOK_TOKEN.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(head.contains("application/x-ndjson"), "{head}");
    }
    let entries = receiver.entries();
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    assert!(entries.iter().any(|e| e["event"] == "login_failed"));
    let scrape = metrics(&served).await;
    assert!(
        sample(
            &scrape,
            "sluice_audit_export_failed_total{sink=\"webhook\"}"
        ) >= 2.0,
        "{scrape}"
    );
    assert!(
        sample(&scrape, "sluice_audit_export_sent_total{sink=\"webhook\"}") >= 3.0,
        "{scrape}"
    );

    // The file: the same entries as JSON lines, private to the owner.
    eventually(
        "the export file has every entry",
        Duration::from_secs(10),
        async || {
            std::fs::read_to_string(&export)
                .unwrap_or_default()
                .lines()
                .count()
                >= 3
        },
    )
    .await;
    let written = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events: Vec<&str> = lines.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "query_run").count(),
        2,
        "{events:?}"
    );
    assert!(events.contains(&"login_failed"), "{events:?}");
    let both = lines.len().min(entries.len());
    assert_eq!(
        lines[..both],
        entries[..both],
        "the file and the webhook got the same entries"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    served.terminate().await;

    // The canary is nowhere: not in the store's files, the export, the webhook bodies.
    for suffix in ["", "-wal"] {
        let path = dir.path().join(format!("data/sluice.db{suffix}"));
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "the canary is in {}",
                path.display()
            );
        }
    }
    assert!(!written.contains(&canary));
    for (head, body) in receiver.requests() {
        assert!(!head.contains(&canary) && !String::from_utf8_lossy(&body).contains(&canary));
    }
    assert!(!served.output().contains(&canary));
    let output = verify(dir.path(), None);
    assert!(output.status.success(), "{}", text(&output));
}

#[tokio::test]
async fn a_hanging_webhook_never_slows_requests_and_its_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    apply_catalog(dir.path(), &shop_catalog());
    let receiver = Receiver::start(0, true).await;
    let served = Served::start(
        serve(dir.path())
            .env("SLUICE_AUDIT_QUERY_RUNS", "true")
            .env("SLUICE_AUDIT_WEBHOOK_URL", receiver.url())
            .env("SLUICE_AUDIT_EXPORT_QUEUE", "5")
            .env("SLUICE_EGRESS_ALLOW", "127.0.0.1/32"),
    )
    .await;
    // The first entry gets the export's request stuck; everything after waits behind it.
    failed_login(&served, "first@example.com").await;
    eventually(
        "the webhook got its first request",
        Duration::from_secs(10),
        async || !receiver.requests().is_empty(),
    )
    .await;
    let mut slowest = Duration::ZERO;
    for n in 0..40 {
        let (status, took) = run_echo(&served, &format!("w{n}")).await;
        assert_eq!(status, 200);
        slowest = slowest.max(took);
    }
    // A request that waited for the webhook would take its 10 s timeout.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request {slowest:?}"
    );
    eventually(
        "webhook drops counted in /metrics",
        Duration::from_secs(60),
        async || {
            sample(
                &metrics(&served).await,
                "sluice_audit_export_dropped_total{sink=\"webhook\"}",
            ) > 0.0
        },
    )
    .await;
    let scrape = metrics(&served).await;
    assert!(
        sample(
            &scrape,
            "sluice_audit_export_failed_total{sink=\"webhook\"}"
        ) >= 1.0,
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "sluice_audit_query_runs_dropped_total"),
        0.0,
        "{scrape}"
    );
}

#[tokio::test]
async fn a_webhook_where_the_egress_guard_refuses_is_never_reached() {
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    // A metadata address as an IP literal: refused before serving, naming the variable.
    let refused = serve(dir.path())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_AUDIT_WEBHOOK_URL", "http://169.254.169.254/latest")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("SLUICE_AUDIT_WEBHOOK_URL"),
        "{}",
        text(&refused)
    );

    // A name that resolves to loopback, without SLUICE_EGRESS_ALLOW: never connected to.
    let receiver = Receiver::start(0, false).await;
    let url = format!("http://localhost:{}/audit", receiver.address.port());
    let served = Served::start(serve(dir.path()).env("SLUICE_AUDIT_WEBHOOK_URL", &url)).await;
    failed_login(&served, "someone@example.com").await;
    eventually(
        "a failed webhook attempt counted",
        Duration::from_secs(20),
        async || {
            sample(
                &metrics(&served).await,
                "sluice_audit_export_failed_total{sink=\"webhook\"}",
            ) >= 1.0
        },
    )
    .await;
    served
        .wait_log("Audit export failed; retrying", 1, Duration::from_secs(5))
        .await;
    assert!(served.output().contains("loopback"), "{}", served.output());
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn pagination_walks_every_entry_once_with_filters_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    let served = Served::start(&mut serve(dir.path())).await;
    for n in 0..23 {
        failed_login(&served, &format!("walker{}@example.com", n % 3)).await;
    }
    // Refused at the edge of the admin API: not a login_failed entry.
    let forbidden = served
        .client
        .get(served.url("/v1/admin/audit"))
        .bearer_auth("not-the-admin-token-not-the-admin-token")
        .send()
        .await
        .unwrap();
    assert!(forbidden.status().is_client_error());

    /// Every page with `query`, following `next_cursor`: the ids in order.
    async fn walk(served: &Served, query: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(cursor) => format!("/v1/admin/audit?{query}&limit=4&cursor={cursor}"),
                None => format!("/v1/admin/audit?{query}&limit=4"),
            };
            let (status, page) = admin_get(served, &path).await;
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().unwrap();
            assert!(events.len() <= 4);
            entries.extend(events.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return entries,
            }
        }
    }
    let all = walk(&served, "").await;
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (1..=ids[0]).rev().collect();
    assert_eq!(ids, expected, "every entry once, newest first");
    assert!(ids.len() >= 23);

    let walker1 = walk(&served, "event=login_failed&since=2000-01-01T00:00:00Z").await;
    assert_eq!(walker1.len(), 23);
    assert!(walker1.iter().all(|e| e["event"] == "login_failed"));
    let set: BTreeSet<i64> = walker1.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(set.len(), 23);
    let none = walk(&served, "event=login_failed&until=2000-01-01T00:00:00Z").await;
    assert!(none.is_empty());

    for (query, param) in [
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("since=last-tuesday", "since"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (status, body) = admin_get(&served, &format!("/v1/admin/audit?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(param),
            "{query}: {body}"
        );
    }
    // A cursor sent with other filters than it was made for.
    let (_, page) = admin_get(&served, "/v1/admin/audit?limit=2").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, body) = admin_get(
        &served,
        &format!("/v1/admin/audit?event=login_failed&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "cursor");
}

#[tokio::test]
async fn six_failed_sign_ins_raise_one_alert_in_the_log_the_metrics_and_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    // A metadata address as an IP literal: refused before serving, naming the variable
    // and never the URL (a Slack webhook's path is its credential).
    let refused = serve(dir.path())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env(
            "SLUICE_ALERT_WEBHOOK_URL",
            "http://169.254.169.254/hooks/alert-url-canary",
        )
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("SLUICE_ALERT_WEBHOOK_URL"),
        "{}",
        text(&refused)
    );
    assert!(
        !text(&refused).contains("alert-url-canary"),
        "{}",
        text(&refused)
    );

    // The first delivery answers 500: retried.
    let receiver = Receiver::start(1, false).await;
    let url = format!(
        "http://{}/hooks/T000/B000/alert-url-canary",
        receiver.address
    );
    let served = Served::start(
        serve(dir.path())
            .env("SLUICE_ALERT_WEBHOOK_URL", &url)
            .env("SLUICE_ALERT_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
            .env("SLUICE_EGRESS_ALLOW", "127.0.0.1/32"),
    )
    .await;
    for n in 0..5 {
        failed_login(&served, &format!("guess{n}@example.com")).await;
    }
    // Five are not more than five.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.requests().is_empty());
    failed_login(&served, "guess5@example.com").await;
    eventually("the alert delivered", Duration::from_secs(20), async || {
        receiver.requests().len() == 2
    })
    .await;
    let requests = receiver.requests();
    assert_eq!(
        requests[0].1, requests[1].1,
        "the failed delivery is sent again"
    );
    let head = requests[1].0.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        head.contains(&format!(
            "authorization: bearer {}",
            WEBHOOK_TOKEN.to_ascii_lowercase()
        )),
        "{head}"
    );
    let body: Value = serde_json::from_slice(&requests[1].1).unwrap();
    assert_eq!(
        body["text"],
        "Sluice alert SLU-A001 (medium): 6 failed sign-ins from 127.0.0.1 within 60 s"
    );
    assert_eq!(body["alert"]["event"], "alert");

    let (status, page) = admin_get(&served, "/v1/admin/audit?event=alert").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["events"].as_array().expect("events");
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["reason"], "sign_in_failures");
    assert_eq!(entries[0]["ip"], "127.0.0.1");
    assert_eq!(entries[0]["id"], body["alert"]["id"]);
    let scrape = metrics(&served).await;
    assert_eq!(
        sample(&scrape, "sluice_alerts_total{rule=\"SLU-A001\"}"),
        1.0
    );
    assert_eq!(sample(&scrape, "sluice_alert_webhook_sent_total"), 1.0);
    assert_eq!(sample(&scrape, "sluice_alert_webhook_failed_total"), 1.0);
    assert!(
        served
            .output()
            .contains("Auth alert: 6 failed sign-ins from 127.0.0.1"),
        "{}",
        served.output()
    );
    assert!(
        !served.output().contains("alert-url-canary"),
        "{}",
        served.output()
    );
}
