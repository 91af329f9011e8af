//! Copies of the audit log for a SIEM: JSON lines to stdout or a file
//! (`SLUICE_AUDIT_EXPORT`), and batches POSTed to a webhook (`SLUICE_AUDIT_WEBHOOK_URL`,
//! [`super::webhook`]).
//!
//! Each export is one task that reads the log itself, oldest first, after its cursor (the
//! last entry it delivered, kept in the store per sink so a restart resumes where it
//! stopped): requests never wait for it, whatever the sink does. It wakes when this process
//! appends and polls every second for entries other processes (the CLI) append. Delivery is
//! at least once and in log order: a batch is retried, with backoff from 1 s doubling to
//! 60 s, until the sink takes it, and only then does the cursor move; a batch delivered whose
//! answer was lost is sent again (receivers deduplicate by `id` or `hash`). The log is the
//! queue: when an export falls more than `SLUICE_AUDIT_EXPORT_QUEUE` entries behind the
//! newest, it skips the oldest unsent ones and counts them
//! (`sluice_audit_export_dropped_total`); they stay in the log. A webhook that refuses a
//! batch for good (a 4xx other than 408 and 429) has it dropped and counted too.
//!
//! An export that starts for the first time begins at the newest entry (history is not
//! replayed). Each line is the entry as `GET /v1/admin/audit` shows it, hash included.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::webhook::Webhook;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::audit::{AuditRecord, AuditStore};

/// Most entries in one batch (one write, one POST).
pub const BATCH: u32 = 500;

/// How often an export looks for entries other processes appended.
const POLL: Duration = Duration::from_secs(1);

/// The first wait before a retry, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where an export delivers.
pub enum Sink {
    Stdout,
    /// Opened for each batch (append-only, created 0600), so a rotated file is picked up.
    File(PathBuf),
    Webhook(Webhook),
}

impl Sink {
    /// The label in metrics and logs, and the name of its cursor.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Stdout => "stdout",
            Sink::File(_) => "file",
            Sink::Webhook(_) => "webhook",
        }
    }

    async fn deliver(&self, body: Vec<u8>) -> Delivery {
        match self {
            Sink::Stdout => write_blocking(None, body).await,
            Sink::File(path) => write_blocking(Some(path.clone()), body).await,
            Sink::Webhook(webhook) => webhook.post(body, "application/x-ndjson").await,
        }
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Worth trying again (the sink is down, slow, or overloaded); the reason, for the log.
    Retry(String),
    /// The sink refused the batch for good.
    Refused(String),
}

async fn write_blocking(path: Option<PathBuf>, body: Vec<u8>) -> Delivery {
    let written = tokio::task::spawn_blocking(move || match path {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&body).and_then(|()| out.flush())
        }
        Some(path) => open_append(&path).and_then(|mut file| file.write_all(&body)),
    })
    .await;
    match written {
        Ok(Ok(())) => Delivery::Delivered,
        Ok(Err(error)) => Delivery::Retry(error.to_string()),
        Err(error) => Delivery::Retry(error.to_string()),
    }
}

/// Opens the export file for appending, creating it private to the owner (0600).
pub fn open_append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// One export: a sink and how it reads the log.
pub struct Export {
    sink: Sink,
    store: Arc<dyn AuditStore>,
    appended: watch::Receiver<i64>,
    metrics: Arc<Metrics>,
    /// How far behind the newest entry it may fall.
    queue: u64,
}

impl Export {
    pub fn new(
        sink: Sink,
        store: Arc<dyn AuditStore>,
        appended: watch::Receiver<i64>,
        metrics: Arc<Metrics>,
        queue: u64,
    ) -> Export {
        Export {
            sink,
            store,
            appended,
            metrics,
            queue: queue.max(1),
        }
    }

    /// Runs until aborted (see the module doc).
    pub async fn run(mut self) {
        let name = self.sink.name();
        let mut cursor = loop {
            match self.start_cursor().await {
                Ok(cursor) => break cursor,
                Err(error) => {
                    tracing::warn!(sink = name, error = %error, "Audit export cannot read its cursor; retrying");
                    tokio::time::sleep(POLL).await;
                }
            }
        };
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Once the log's service is gone, the ticks alone wake the export.
        let mut watching = true;
        loop {
            if let Err(error) = self.drain(&mut cursor).await {
                tracing::warn!(sink = name, error = %error, "Audit export cannot read the log");
            }
            tokio::select! {
                changed = self.appended.changed(), if watching => watching = changed.is_ok(),
                _ = ticks.tick() => {}
            }
        }
    }

    /// The stored cursor, or the newest entry for an export never run before.
    async fn start_cursor(&self) -> Result<i64, StoreError> {
        let name = self.sink.name();
        let cursor = self
            .blocking(move |store| store.audit_export_cursor(name))
            .await?;
        match cursor {
            Some(cursor) => Ok(cursor),
            None => {
                let head = self.blocking(|store| store.audit_chain()).await?.head_id;
                self.blocking(move |store| store.set_audit_export_cursor(name, head))
                    .await?;
                Ok(head)
            }
        }
    }

    /// Delivers everything after `cursor`, batch by batch.
    async fn drain(&self, cursor: &mut i64) -> Result<(), StoreError> {
        let name = self.sink.name();
        loop {
            self.skip_overflow(cursor).await?;
            let after = *cursor;
            let batch = self
                .blocking(move |store| store.audit_after(after, BATCH))
                .await?;
            let Some(last) = batch.last().map(|record| record.event.id) else {
                return Ok(());
            };
            let count = batch.len() as u64;
            let body = encode(&batch);
            let mut backoff = FIRST_BACKOFF;
            let mut failures = 0u32;
            // Whether the batch is done with (delivered or refused for good), rather than
            // left behind because the export fell too far behind while retrying.
            let done = loop {
                match self.sink.deliver(body.clone()).await {
                    Delivery::Delivered => {
                        if failures > 0 {
                            tracing::info!(
                                sink = name,
                                attempts = failures + 1,
                                "Audit export delivered after retrying"
                            );
                        }
                        self.metrics.audit.export_sent(name, count);
                        break true;
                    }
                    Delivery::Refused(reason) => {
                        self.metrics.audit.export_failed(name);
                        self.metrics.audit.export_dropped(name, count);
                        tracing::error!(sink = name, entries = count, first_id = after + 1, last_id = last, reason = %reason, "Audit export refused a batch; dropped");
                        break true;
                    }
                    Delivery::Retry(reason) => {
                        self.metrics.audit.export_failed(name);
                        failures += 1;
                        // Once per outage, then every tenth attempt.
                        if failures == 1 || failures.is_multiple_of(10) {
                            tracing::warn!(sink = name, attempts = failures, reason = %reason, retry_in_ms = backoff.as_millis() as u64, "Audit export failed; retrying");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        // Fallen too far behind meanwhile: the oldest are skipped, this batch
                        // among them, and delivery goes on from there.
                        if self.behind(*cursor).await? > self.queue {
                            break false;
                        }
                    }
                }
            };
            if done {
                *cursor = last;
                self.blocking(move |store| store.set_audit_export_cursor(name, last))
                    .await?;
            }
        }
    }

    /// How many entries were appended after `cursor`.
    async fn behind(&self, cursor: i64) -> Result<u64, StoreError> {
        let head = self.blocking(|store| store.audit_chain()).await?.head_id;
        Ok(u64::try_from(head - cursor).unwrap_or(0))
    }

    /// Moves `cursor` so that at most `queue` entries are left to deliver, counting the
    /// skipped ones as dropped.
    async fn skip_overflow(&self, cursor: &mut i64) -> Result<(), StoreError> {
        let state = self.blocking(|store| store.audit_chain()).await?;
        let mut skip_to = *cursor;
        // Entries retention pruned before they were delivered.
        if skip_to < state.anchor_id {
            skip_to = state.anchor_id;
        }
        let queue = i64::try_from(self.queue).unwrap_or(i64::MAX);
        if state.head_id - skip_to > queue {
            skip_to = state.head_id - queue;
        }
        if skip_to > *cursor {
            let name = self.sink.name();
            let dropped = (skip_to - *cursor) as u64;
            self.metrics.audit.export_dropped(name, dropped);
            tracing::warn!(
                sink = name,
                dropped,
                first_id = *cursor + 1,
                last_id = skip_to,
                "Audit export fell behind; the oldest unsent entries were skipped"
            );
            *cursor = skip_to;
            self.blocking(move |store| store.set_audit_export_cursor(name, skip_to))
                .await?;
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn AuditStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        super::on_store(&self.store, work).await
    }
}

/// The batch as JSON lines, each ending in a newline.
pub fn encode(batch: &[AuditRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 320);
    for record in batch {
        serde_json::to_writer(&mut out, record).expect("an audit record serialises");
        out.push(b'\n');
    }
    out
}
