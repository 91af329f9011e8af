//! The audit log's families: what the exports delivered, failed and dropped (by sink), the
//! query runs not recorded because their queue was full, and the entries retention pruned.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
}

/// Counters of the audit log (one set per instance, in [`super::Metrics`]).
#[derive(Debug, Clone, Default)]
pub struct AuditMetrics {
    sent: Family<SinkLabels, Counter>,
    failed: Family<SinkLabels, Counter>,
    dropped: Family<SinkLabels, Counter>,
    query_runs_dropped: Counter,
    pruned: Counter,
    alerts: Family<RuleLabels, Counter>,
    alert_webhook_sent: Counter,
    alert_webhook_failed: Counter,
    alert_webhook_dropped: Counter,
}

impl AuditMetrics {
    pub(super) fn register(registry: &mut Registry) -> AuditMetrics {
        let metrics = AuditMetrics::default();
        registry.register(
            "audit_export_sent",
            "Audit entries an export delivered, by sink (stdout, file, webhook)",
            metrics.sent.clone(),
        );
        registry.register(
            "audit_export_failed",
            "Failed delivery attempts of an audit export (a batch retried or refused), by sink",
            metrics.failed.clone(),
        );
        registry.register(
            "audit_export_dropped",
            "Audit entries an export skipped without delivering them (it fell further behind than SLUICE_AUDIT_EXPORT_QUEUE, or the sink refused the batch), by sink; they stay in the log",
            metrics.dropped.clone(),
        );
        registry.register(
            "audit_query_runs_dropped",
            "Query runs not recorded in the audit log because its write queue was full (SLUICE_AUDIT_QUERY_RUNS)",
            metrics.query_runs_dropped.clone(),
        );
        registry.register(
            "audit_pruned",
            "Audit entries deleted by retention (SLUICE_AUDIT_RETENTION_DAYS)",
            metrics.pruned.clone(),
        );
        registry.register(
            "alerts",
            "Auth alerts raised (audit entries of kind alert), by rule id (SLU-A001 ...); counted by the replica that recorded them",
            metrics.alerts.clone(),
        );
        registry.register(
            "alert_webhook_sent",
            "Alerts the alert webhook (SLUICE_ALERT_WEBHOOK_URL) accepted",
            metrics.alert_webhook_sent.clone(),
        );
        registry.register(
            "alert_webhook_failed",
            "Failed delivery attempts to the alert webhook (each retried)",
            metrics.alert_webhook_failed.clone(),
        );
        registry.register(
            "alert_webhook_dropped",
            "Alerts not delivered to the alert webhook: its queue was full (SLUICE_ALERT_WEBHOOK_QUEUE), it refused them, or every retry failed; they stay in the audit log",
            metrics.alert_webhook_dropped.clone(),
        );
        metrics
    }

    /// An alert of rule `rule` recorded.
    pub fn alert(&self, rule: &'static str) {
        self.alerts.get_or_create(&RuleLabels { rule }).inc();
    }

    /// An alert delivered to the webhook.
    pub fn alert_webhook_sent(&self) {
        self.alert_webhook_sent.inc();
    }

    /// An attempt to deliver an alert to the webhook failed.
    pub fn alert_webhook_failed(&self) {
        self.alert_webhook_failed.inc();
    }

    /// An alert given up on (queue full, refused, retries exhausted).
    pub fn alert_webhook_dropped(&self) {
        self.alert_webhook_dropped.inc();
    }

    /// `count` entries delivered to `sink`.
    pub fn export_sent(&self, sink: &'static str, count: u64) {
        self.sent.get_or_create(&SinkLabels { sink }).inc_by(count);
    }

    /// A delivery attempt to `sink` failed.
    pub fn export_failed(&self, sink: &'static str) {
        self.failed.get_or_create(&SinkLabels { sink }).inc();
    }

    /// `count` entries skipped by `sink`'s export.
    pub fn export_dropped(&self, sink: &'static str, count: u64) {
        self.dropped
            .get_or_create(&SinkLabels { sink })
            .inc_by(count);
    }

    /// A query run (or `count`) not recorded.
    pub fn query_runs_dropped(&self, count: u64) {
        self.query_runs_dropped.inc_by(count);
    }

    /// `count` entries pruned.
    pub fn pruned(&self, count: u64) {
        self.pruned.inc_by(count);
    }
}
