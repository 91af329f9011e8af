//! The watcher over a real SQLite store with a manual clock: alerts recorded once however
//! many replicas watch, windows rebuilt on a restart, and the webhook delivered to a real
//! HTTP receiver (retried, bounded, Slack-shaped).

use std::sync::Mutex;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::AlertSettings;
use crate::metrics::Reading;
use crate::store::SqliteStore;
use crate::store::audit::AuditEvent;

const T0: i64 = 1_800_000_000;

fn failure(ip: &str, at: i64) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        event: "login_failed".into(),
        user_id: None,
        email: Some("ada@example.com".into()),
        actor: None,
        ip: Some(ip.into()),
        user_agent: None,
        reason: Some("unknown_account".into()),
        details: None,
    }
}

fn watcher(store: &Arc<SqliteStore>, clock: &ManualClock, notifier: Option<Notifier>) -> Watcher {
    watcher_with(store, clock, Arc::new(Metrics::new()), notifier)
}

fn watcher_with(
    store: &Arc<SqliteStore>,
    clock: &ManualClock,
    metrics: Arc<Metrics>,
    notifier: Option<Notifier>,
) -> Watcher {
    Watcher::new(
        store.clone(),
        Detector::new(AlertSettings::default()),
        Arc::new(|| vec!["shop".to_string(), "crm".to_string()]),
        Arc::new(clock.clone()),
        metrics,
        notifier,
    )
}

async fn drain(watcher: &mut Watcher) {
    while watcher.step().await.unwrap() {}
}

fn alerts(store: &SqliteStore) -> Vec<AuditEvent> {
    let filter = AuditFilter {
        event: Some("alert".into()),
        ..AuditFilter::default()
    };
    let mut found: Vec<_> = store
        .search_audit(&filter, 100, None)
        .unwrap()
        .into_iter()
        .map(|record| record.event)
        .collect();
    found.reverse();
    found
}

fn counted(metrics: &Metrics, line: &str) -> u64 {
    metrics
        .render(&Reading::default())
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn clock_at(at: i64) -> ManualClock {
    let clock = ManualClock::new();
    clock.advance_secs(at - clock.now());
    clock
}

#[tokio::test]
async fn six_failures_make_one_alert_entry_with_its_metric() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0);
    let metrics = Arc::new(Metrics::new());
    let mut watcher = watcher_with(&store, &clock, metrics.clone(), None);
    // Starts at the newest entry: what came before is history, not news.
    store
        .append_audit(&failure("192.0.2.1", T0 - 3600))
        .unwrap();
    assert!(!watcher.step().await.unwrap());
    for n in 0..6 {
        store.append_audit(&failure("192.0.2.9", T0 + n)).unwrap();
    }
    drain(&mut watcher).await;
    let found = alerts(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].reason.as_deref(), Some("sign_in_failures"));
    assert_eq!(found[0].ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(
        found[0].at,
        T0 + 5,
        "stamped with the triggering entry's time"
    );
    let details: serde_json::Value =
        serde_json::from_str(found[0].details.as_deref().unwrap()).unwrap();
    assert_eq!(details["id"], "SLU-A001");
    assert_eq!(
        counted(&metrics, "sluice_alerts_total{rule=\"SLU-A001\"} "),
        1
    );
    // Reading on finds nothing new: the alert entry itself raises nothing.
    drain(&mut watcher).await;
    assert_eq!(alerts(&store).len(), 1);
    assert!(crate::store::audit::verify(store.as_ref()).is_ok());
}

#[tokio::test]
async fn replicas_watching_one_log_record_each_alert_once() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0);
    let (metrics_a, metrics_b) = (Arc::new(Metrics::new()), Arc::new(Metrics::new()));
    let mut a = watcher_with(&store, &clock, metrics_a.clone(), None);
    let mut b = watcher_with(&store, &clock, metrics_b.clone(), None);
    assert!(!a.step().await.unwrap());
    assert!(!b.step().await.unwrap());
    // A reads the first four, B reads all six and records the alert; A then reads on.
    for n in 0..4 {
        store.append_audit(&failure("192.0.2.9", T0 + n)).unwrap();
    }
    drain(&mut a).await;
    for n in 4..6 {
        store.append_audit(&failure("192.0.2.9", T0 + n)).unwrap();
    }
    // A second burst from another address, after both have read the first.
    drain(&mut b).await;
    drain(&mut a).await;
    for n in 0..6 {
        store
            .append_audit(&failure("198.51.100.1", T0 + 10 + n))
            .unwrap();
    }
    drain(&mut a).await;
    drain(&mut b).await;
    let found = alerts(&store);
    let ips: Vec<_> = found.iter().map(|e| e.ip.clone().unwrap()).collect();
    assert_eq!(ips, ["192.0.2.9", "198.51.100.1"], "{found:?}");
    let rule = "sluice_alerts_total{rule=\"SLU-A001\"} ";
    assert_eq!(counted(&metrics_a, rule) + counted(&metrics_b, rule), 2);
    assert_eq!(counted(&metrics_b, rule), 1);
    assert_eq!(counted(&metrics_a, rule), 1);
}

#[tokio::test]
async fn a_restarted_watcher_rebuilds_its_windows_from_the_log() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0 + 30);
    let mut first = watcher(&store, &clock, None);
    assert!(!first.step().await.unwrap());
    for n in 0..5 {
        store.append_audit(&failure("192.0.2.9", T0 + n)).unwrap();
    }
    drain(&mut first).await;
    drop(first);
    // A new process: the five failures are within the minute, so the sixth alerts.
    let mut second = watcher(&store, &clock, None);
    assert!(!second.step().await.unwrap());
    store.append_audit(&failure("192.0.2.9", T0 + 40)).unwrap();
    drain(&mut second).await;
    assert_eq!(alerts(&store).len(), 1);

    // Failures older than the window when the watcher starts are not counted.
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0 + 600);
    for n in 0..5 {
        store.append_audit(&failure("192.0.2.9", T0 + n)).unwrap();
    }
    let mut late = watcher(&store, &clock, None);
    assert!(!late.step().await.unwrap());
    store.append_audit(&failure("192.0.2.9", T0 + 601)).unwrap();
    drain(&mut late).await;
    assert!(alerts(&store).is_empty());
}

#[tokio::test]
async fn alerts_missed_while_no_watcher_ran_are_raised_on_start() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0);
    let mut first = watcher(&store, &clock, None);
    assert!(!first.step().await.unwrap());
    drop(first);
    // Appended while down (the CLI, another replica that died).
    let mut mfa = failure("192.0.2.1", T0 + 5);
    mfa.event = "mfa_disabled".into();
    store.append_audit(&mfa).unwrap();
    let mut second = watcher(&store, &clock, None);
    drain(&mut second).await;
    let found = alerts(&store);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason.as_deref(), Some("mfa_disabled"));
}

/// A webhook receiver on 127.0.0.1 answering with `statuses` in turn (then 200), keeping
/// the bodies and Authorization headers it got.
struct Receiver {
    url: url::Url,
    got: Got,
}

/// Each request's body and Authorization header.
type Got = Arc<Mutex<Vec<(String, Option<String>)>>>;

async fn receiver(statuses: Vec<u16>, stall: Option<Arc<tokio::sync::Notify>>) -> Receiver {
    let got: Got = Arc::default();
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    let kept = got.clone();
    let router = Router::new().route(
        "/hook/T000/B000/secret",
        post(move |headers: HeaderMap, body: String| {
            let kept = kept.clone();
            let statuses = statuses.clone();
            let stall = stall.clone();
            async move {
                if let Some(stall) = stall {
                    stall.notified().await;
                }
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                kept.lock().unwrap().push((body, auth));
                let status = statuses.lock().unwrap().next().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Receiver {
        url: format!("http://127.0.0.1:{port}/hook/T000/B000/secret")
            .parse()
            .unwrap(),
        got,
    }
}

fn loopback_webhook(url: &url::Url, token: Option<&str>) -> crate::audit::webhook::Webhook {
    crate::audit::webhook::Webhook::new(
        "SLUICE_ALERT_WEBHOOK_URL",
        url,
        token.map(|t| crate::vault::SecretString::new(t.to_string())),
        crate::egress::EgressPolicy::new(&["127.0.0.1/32".parse().unwrap()], &[]),
        None,
    )
    .unwrap()
}

async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_gets_slack_text_after_a_retry() {
    let receiver = receiver(vec![503], None).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = Notifier::start(
        loopback_webhook(&receiver.url, Some("alert-token")),
        10,
        metrics.clone(),
    );
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = clock_at(T0);
    let mut watcher = watcher_with(&store, &clock, metrics.clone(), Some(notifier));
    assert!(!watcher.step().await.unwrap());
    let mut role = failure("192.0.2.1", T0);
    role.event = "role_changed".into();
    role.user_id = Some("u2".into());
    role.actor = Some("cli".into());
    role.details = Some(r#"{"from":"viewer","to":"admin","fresh_auth":false}"#.into());
    store.append_audit(&role).unwrap();
    drain(&mut watcher).await;
    // Two alerts (role change, new admin); the first delivery answered 503 and is retried.
    until(|| receiver.got.lock().unwrap().len() == 3).await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got[0].0, got[1].0, "the refused delivery is sent again");
    let first: serde_json::Value = serde_json::from_str(&got[1].0).unwrap();
    assert_eq!(
        first["text"],
        "Sluice alert SLU-A003 (medium): cli changed the role of ada@example.com from viewer to admin (outside an admin's fresh-auth action)"
    );
    assert_eq!(first["alert"]["event"], "alert");
    assert_eq!(first["alert"]["reason"], "role_changed");
    assert!(
        first["alert"]["hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    let second: serde_json::Value = serde_json::from_str(&got[2].0).unwrap();
    assert!(
        second["text"]
            .as_str()
            .unwrap()
            .starts_with("Sluice alert SLU-A005 (high)")
    );
    assert!(
        got.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Bearer alert-token"))
    );
    until(|| counted(&metrics, "sluice_alert_webhook_sent_total ") == 2).await;
    assert_eq!(counted(&metrics, "sluice_alert_webhook_failed_total "), 1);
    assert_eq!(counted(&metrics, "sluice_alert_webhook_dropped_total "), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_new_alerts_and_a_refusal_is_final() {
    // The receiver holds the first request until released: one in flight, one queued.
    let stall = Arc::new(tokio::sync::Notify::new());
    let receiver = receiver(vec![400], Some(stall.clone())).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = Notifier::start(loopback_webhook(&receiver.url, None), 1, metrics.clone());
    let record = |id| AuditRecord {
        event: AuditEvent {
            id,
            details: Some(r#"{"id":"SLU-A004","severity":"high","summary":"<b>&"}"#.into()),
            ..failure("192.0.2.1", T0)
        },
        prev_hash: String::new(),
        hash: String::new(),
    };
    notifier.notify(&record(1));
    // Wait until the first is in flight (taken off the queue).
    tokio::time::sleep(Duration::from_millis(300)).await;
    notifier.notify(&record(2));
    notifier.notify(&record(3));
    assert_eq!(counted(&metrics, "sluice_alert_webhook_dropped_total "), 1);
    stall.notify_one();
    until(|| !receiver.got.lock().unwrap().is_empty()).await;
    stall.notify_one();
    until(|| receiver.got.lock().unwrap().len() == 2).await;
    let got = receiver.got.lock().unwrap().clone();
    // The first answered 400: refused for good, not retried, dropped.
    let ids: Vec<i64> = got
        .iter()
        .map(|(body, _)| {
            serde_json::from_str::<serde_json::Value>(body).unwrap()["alert"]["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2]);
    let text: serde_json::Value = serde_json::from_str(&got[0].0).unwrap();
    assert_eq!(text["text"], "Sluice alert SLU-A004 (high): &lt;b&gt;&amp;");
    until(|| counted(&metrics, "sluice_alert_webhook_sent_total ") == 1).await;
    assert_eq!(counted(&metrics, "sluice_alert_webhook_dropped_total "), 2);
}

#[test]
fn the_webhook_refuses_an_address_the_egress_guard_refuses() {
    let url: url::Url = "http://169.254.169.254/hook".parse().unwrap();
    let refused = crate::audit::webhook::Webhook::new(
        "SLUICE_ALERT_WEBHOOK_URL",
        &url,
        None,
        crate::egress::EgressPolicy::new(&[], &[]),
        None,
    );
    let error = refused.err().expect("refused").to_string();
    assert!(error.starts_with("SLUICE_ALERT_WEBHOOK_URL: "), "{error}");
    assert!(!error.contains("/hook"), "{error}");
}
