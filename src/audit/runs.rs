//! Query runs in the audit log (`SLUICE_AUDIT_QUERY_RUNS`): metadata only, written off the
//! request path.
//!
//! The view plane hands [`QueryRuns::record`] a finished run: who (user id, API key id,
//! address), what (app, query), and how it ended (status, duration, row count, error
//! class). Never a param value, a row or anything else the caller sent. `record` only puts
//! the event in a bounded queue (`try_send`: it never waits); when the queue is full the run
//! is dropped and counted (`sluice_audit_query_runs_dropped_total`). One writer task takes
//! what is queued, up to [`BATCH`] runs at a time, and appends them in one transaction, so
//! a slow store slows only the writer and a burst of runs costs one commit per batch.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::audit::{AuditEvent, AuditStore};

/// Most runs appended in one transaction.
pub const BATCH: usize = 256;

/// The queue's length when the instance makes one.
pub const QUEUE: usize = 8192;

/// A finished query run, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRun {
    pub app: String,
    pub query: String,
    /// The caller's account, when signed in or using one of their API keys.
    pub user_id: Option<String>,
    /// The API key used, by its id (never the key).
    pub api_key: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The HTTP status answered (499: the client went away).
    pub status: u16,
    pub duration_us: u64,
    /// Rows returned, for a run that finished with a result.
    pub row_count: Option<u64>,
    /// The failure's class (`timeout`, `query`, `client_reset`, ...).
    pub error_class: Option<&'static str>,
}

/// The queue and its writer (see the module doc).
pub struct QueryRuns {
    queue: mpsc::Sender<AuditEvent>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for QueryRuns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRuns").finish_non_exhaustive()
    }
}

impl QueryRuns {
    /// Makes the queue and spawns its writer (which ends when the recorder is dropped,
    /// after writing what is queued).
    pub fn start(
        store: Arc<dyn AuditStore>,
        clock: SharedClock,
        appended: Arc<watch::Sender<i64>>,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> Arc<QueryRuns> {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(write(receiver, store, appended, metrics.clone()));
        Arc::new(QueryRuns {
            queue,
            clock,
            metrics,
        })
    }

    /// Queues `run` for the log; never waits. A full queue drops it (counted).
    pub fn record(&self, run: QueryRun) {
        let event = self.event(run);
        if self.queue.try_send(event).is_err() {
            self.metrics.audit.query_runs_dropped(1);
        }
    }

    fn event(&self, run: QueryRun) -> AuditEvent {
        let mut details = serde_json::json!({
            "app": run.app,
            "query": run.query,
            "status": run.status,
            "duration_us": run.duration_us,
        });
        if let Some(rows) = run.row_count {
            details["row_count"] = rows.into();
        }
        if let Some(key) = run.api_key {
            details["api_key"] = key.into();
        }
        AuditEvent {
            id: 0,
            at: self.clock.now(),
            event: "query_run".into(),
            user_id: run.user_id,
            email: None,
            actor: None,
            ip: run.ip,
            user_agent: None,
            reason: run.error_class.map(str::to_string),
            details: Some(details.to_string()),
        }
    }
}

/// The writer: appends what is queued, a batch per transaction.
async fn write(
    mut queue: mpsc::Receiver<AuditEvent>,
    store: Arc<dyn AuditStore>,
    appended: Arc<watch::Sender<i64>>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let events = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let count = events.len() as u64;
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.append_audit_batch(&events)).await {
            Ok(Ok(stored)) => {
                if let Some(last) = stored.last() {
                    appended.send_replace(last.event.id);
                }
            }
            Ok(Err(error)) => {
                metrics.audit.query_runs_dropped(count);
                tracing::error!(runs = count, error = %error, "Query runs not written to the audit log");
            }
            Err(error) => {
                metrics.audit.query_runs_dropped(count);
                tracing::error!(runs = count, error = %error, "Query runs not written to the audit log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::clock::SystemClock;
    use crate::metrics::Reading;
    use crate::store::SqliteStore;

    fn run(n: u64) -> QueryRun {
        QueryRun {
            app: "shop".into(),
            query: "orders".into(),
            user_id: Some("u1".into()),
            api_key: None,
            ip: Some("192.0.2.1".into()),
            status: 200,
            duration_us: n,
            row_count: Some(n),
            error_class: None,
        }
    }

    fn dropped(metrics: &Metrics) -> u64 {
        metrics
            .render(&Reading::default())
            .lines()
            .find_map(|line| line.strip_prefix("sluice_audit_query_runs_dropped_total "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_store_never_makes_record_wait_and_overflow_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        // Another connection holds the write lock: the writer's append waits for it.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let metrics = Arc::new(Metrics::new());
        let runs = QueryRuns::start(
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(watch::Sender::new(0)),
            metrics.clone(),
            4,
        );
        let started = Instant::now();
        for n in 0..100 {
            runs.record(run(n));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // At most the queue and what the writer took before it blocked got through.
        let lost = dropped(&metrics);
        assert!(lost >= 100 - 4 - 4, "{lost}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        blocker.execute_batch("COMMIT").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let written = store.audit_after(0, 1000).unwrap();
            if written.len() as u64 == 100 - lost {
                let details: serde_json::Value =
                    serde_json::from_str(written[0].event.details.as_deref().unwrap()).unwrap();
                assert_eq!(details["app"], "shop");
                assert_eq!(written[0].event.event, "query_run");
                break;
            }
            assert!(Instant::now() < deadline, "{} written", written.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            crate::store::audit::verify(store.as_ref()).unwrap().entries,
            100 - lost
        );
    }
}
