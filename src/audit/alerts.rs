//! Auth alerts: a watcher that reads the audit log, as the exports do, and records an
//! `alert` entry when the entries match a seed pattern of an account takeover
//! ([`rules`]: failed sign-ins from one address, a signup surge, role changes, MFA turned
//! off, a new admin, an all-apps API key, a lockout burst, an admin from a new network).
//! Each alert is also counted (`sluice_alerts_total{rule}`) and, when
//! `SLUICE_ALERT_WEBHOOK_URL` is set, POSTed to the webhook ([`notify`]).
//!
//! Reading the log, not hooking the requests, means every source is seen the same way: this
//! replica, the others, the CLI, SCIM and single sign-on. Each replica reads every entry
//! once, in order, and keeps the same windows; the alerts are appended with the cursor
//! `alerts` moved in the same transaction, only if no other replica moved it first
//! ([`AuditStore::append_audit_at_cursor`]), so each alert is recorded once, by whichever
//! replica got there first; the others drop theirs. On start the watcher rebuilds its windows
//! from the entries still inside them ([`Detector::history`]), without alerting, and then
//! goes on from the shared cursor: alerts missed while every replica was down are raised
//! late rather than never. A first start begins at the newest entry.
//!
//! Never holds a password, token or param value: alerts carry names, ids, addresses and
//! counts taken from entries that already hold no secret.

pub mod notify;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::audit::{AuditFilter, AuditRecord, AuditStore};

pub use notify::Notifier;
pub use rules::{Alert, Detector, RULES, Rule};

/// The cursor the replicas share.
pub const CURSOR: &str = "alerts";

/// Entries read per step.
const BATCH: u32 = 500;

/// How often the watcher looks for entries other processes appended.
const POLL: Duration = Duration::from_secs(1);

/// The names of the served catalog's apps (for the all-apps API key rule).
pub type AppNames = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// The watcher; [`Watcher::run`] in the instance's task set, [`Watcher::step`] in tests.
pub struct Watcher {
    store: Arc<dyn AuditStore>,
    detector: Detector,
    apps: AppNames,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    notifier: Option<Notifier>,
    /// The last entry this watcher read.
    read: i64,
    /// Where it last saw the shared cursor.
    shared: Option<i64>,
    /// Alerts raised and not yet recorded (by it or another replica).
    pending: Vec<Alert>,
    started: bool,
}

impl Watcher {
    pub fn new(
        store: Arc<dyn AuditStore>,
        detector: Detector,
        apps: AppNames,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        notifier: Option<Notifier>,
    ) -> Watcher {
        Watcher {
            store,
            detector,
            apps,
            clock,
            metrics,
            notifier,
            read: 0,
            shared: None,
            pending: Vec::new(),
            started: false,
        }
    }

    /// Runs until aborted, waking when this process appends and polling for the others.
    pub async fn run(mut self, mut appended: watch::Receiver<i64>) {
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        loop {
            loop {
                match self.step().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(error = %error, "Auth alerts cannot read the audit log; retrying");
                        break;
                    }
                }
            }
            tokio::select! {
                changed = appended.changed(), if watching => watching = changed.is_ok(),
                _ = ticks.tick() => {}
            }
        }
    }

    /// Reads the next batch of entries and records the alerts they raise (counted, logged
    /// and queued for the webhook by the replica that records them); `false` when there
    /// was nothing new.
    pub async fn step(&mut self) -> Result<bool, StoreError> {
        if !self.started {
            self.start().await?;
        }
        let after = self.read;
        let batch = self
            .blocking(move |store| store.audit_after(after, BATCH))
            .await?;
        let Some(to) = batch.last().map(|record| record.event.id) else {
            return Ok(false);
        };
        let apps = (self.apps)();
        for record in &batch {
            if record.event.event != "alert" {
                let raised = self.detector.observe(&record.event, &apps);
                self.pending.extend(raised);
            }
        }
        self.record(to).await?;
        self.read = to;
        Ok(true)
    }

    /// Records the pending alerts with the shared cursor moved to `to`, unless another
    /// replica has covered them.
    async fn record(&mut self, to: i64) -> Result<(), StoreError> {
        loop {
            let shared = self.shared;
            self.pending
                .retain(|alert| shared.is_none_or(|at| alert.trigger > at));
            if shared.is_some_and(|at| at >= to) {
                return Ok(());
            }
            let events: Vec<_> = self.pending.iter().map(Alert::to_event).collect();
            let stored = self
                .blocking(move |store| store.append_audit_at_cursor(CURSOR, shared, to, &events))
                .await?;
            match stored {
                Some(records) => {
                    for (record, alert) in records.iter().zip(&self.pending) {
                        self.raised(record, alert);
                    }
                    self.pending.clear();
                    self.shared = Some(to);
                    return Ok(());
                }
                None => {
                    self.shared = self
                        .blocking(|store| store.audit_export_cursor(CURSOR))
                        .await?;
                }
            }
        }
    }

    fn raised(&self, record: &AuditRecord, alert: &Alert) {
        self.metrics.audit.alert(alert.rule.id);
        tracing::warn!(
            alert = alert.rule.id,
            rule = alert.rule.name,
            severity = alert.rule.severity,
            entry = record.event.id,
            "Auth alert: {}",
            alert.summary
        );
        if let Some(notifier) = &self.notifier {
            notifier.notify(record);
        }
    }

    /// Finds the shared cursor (setting it at the newest entry on a first start) and
    /// rebuilds the windows from the entries up to it.
    async fn start(&mut self) -> Result<(), StoreError> {
        let mut shared = self
            .blocking(|store| store.audit_export_cursor(CURSOR))
            .await?;
        if shared.is_none() {
            let head = self.blocking(|store| store.audit_chain()).await?.head_id;
            // Another replica starting at once may win; either way the cursor is set.
            self.blocking(move |store| store.append_audit_at_cursor(CURSOR, None, head, &[]))
                .await?;
            shared = self
                .blocking(|store| store.audit_export_cursor(CURSOR))
                .await?;
        }
        let shared = shared.unwrap_or(0);
        let history = self.detector.history(self.clock.now());
        let replay = self
            .blocking(move |store| replay(store, &history, shared))
            .await?;
        let apps = (self.apps)();
        for record in replay {
            // Raised (or not) when these entries were new: nothing to record now.
            let _ = self.detector.observe(&record.event, &apps);
        }
        self.read = shared;
        self.shared = Some(shared);
        self.started = true;
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn AuditStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        super::on_store(&self.store, work).await
    }
}

/// The entries of each `(kind, since)` of `history` up to `through`, oldest first.
fn replay(
    store: &dyn AuditStore,
    history: &[(&'static str, i64)],
    through: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut entries = Vec::new();
    for (kind, since) in history {
        let filter = AuditFilter {
            event: Some((*kind).to_string()),
            since: Some(*since),
            ..AuditFilter::default()
        };
        let mut before = Some(through.saturating_add(1));
        loop {
            let page = store.search_audit(&filter, BATCH, before)?;
            let Some(last) = page.last() else { break };
            before = Some(last.event.id);
            let full = page.len() == BATCH as usize;
            entries.extend(page);
            if !full {
                break;
            }
        }
    }
    entries.sort_by_key(|record| record.event.id);
    entries.dedup_by_key(|record| record.event.id);
    Ok(entries)
}

#[cfg(test)]
mod tests;
