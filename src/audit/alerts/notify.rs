//! The alert webhook (`SLUICE_ALERT_WEBHOOK_URL`): each alert POSTed as one JSON object
//! with a Slack-compatible `text` line and the audit entry as `alert`.
//!
//! Alerts wait in a bounded queue (`SLUICE_ALERT_WEBHOOK_QUEUE`) for one delivery task, so a
//! slow or dead receiver never holds the watcher; when the queue is full a new alert is
//! dropped and counted (it stays in the audit log). A delivery is retried on 408, 429, 5xx,
//! a timeout or a connection failure, waiting 1 s doubling to 60 s, up to [`ATTEMPTS`]
//! attempts; any other answer refuses it for good. The client is the audit log's
//! [`Webhook`]: every address is judged by the egress guard, no proxies, no redirects, and
//! neither the URL (a Slack webhook's path is its credential) nor the token is ever logged.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::audit::export::Delivery;
use crate::audit::webhook::Webhook;
use crate::metrics::Metrics;
use crate::store::audit::AuditRecord;

/// Attempts per alert before it is given up.
pub const ATTEMPTS: u32 = 8;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The sending side of the queue.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Vec<u8>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Starts the delivery task (needs a Tokio runtime); it ends when every [`Notifier`]
    /// is dropped and the queue is empty.
    pub fn start(webhook: Webhook, capacity: usize, metrics: Arc<Metrics>) -> Notifier {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        tokio::spawn(deliver(webhook, receiver, metrics.clone()));
        Notifier { queue, metrics }
    }

    /// Queues `record` (an `alert` entry); drops it, counted, when the queue is full.
    pub fn notify(&self, record: &AuditRecord) {
        if self.queue.try_send(body(record)).is_err() {
            self.metrics.audit.alert_webhook_dropped();
            tracing::warn!(
                id = record.event.id,
                "Alert not queued for the webhook: its queue is full"
            );
        }
    }
}

/// The JSON POSTed for one alert entry.
pub fn body(record: &AuditRecord) -> Vec<u8> {
    let details: serde_json::Value = record
        .event
        .details
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let text = format!(
        "Sluice alert {} ({}): {}",
        details["id"].as_str().unwrap_or("?"),
        details["severity"].as_str().unwrap_or("?"),
        details["summary"].as_str().unwrap_or("?"),
    );
    json!({ "text": slack_escape(&text), "alert": record })
        .to_string()
        .into_bytes()
}

/// Slack reads `&`, `<` and `>` as markup: escaped as its docs ask.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn deliver(webhook: Webhook, mut queue: mpsc::Receiver<Vec<u8>>, metrics: Arc<Metrics>) {
    while let Some(body) = queue.recv().await {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match webhook.post(body.clone(), "application/json").await {
                Delivery::Delivered => {
                    metrics.audit.alert_webhook_sent();
                    break;
                }
                Delivery::Refused(why) => {
                    metrics.audit.alert_webhook_dropped();
                    tracing::warn!(reason = %why, "Alert refused by the webhook; dropped");
                    break;
                }
                Delivery::Retry(why) => {
                    metrics.audit.alert_webhook_failed();
                    if attempt >= ATTEMPTS {
                        metrics.audit.alert_webhook_dropped();
                        tracing::warn!(reason = %why, attempts = attempt, "Alert not delivered to the webhook; dropped");
                        break;
                    }
                    tracing::warn!(reason = %why, attempt, "Alert webhook failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
            }
        }
    }
}
