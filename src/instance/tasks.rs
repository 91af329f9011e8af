//! An instance's background work, set up at start and run beside the listener: the audit
//! exports, the auth alerts' watcher (and its webhook), the expired-session purge and the
//! catalog reloads (on a new revision in the store, on the store's change notice, on
//! SIGHUP).

use std::future::Future;
use std::sync::Arc;

use super::{Instance, StartError};
use crate::audit::alerts::{AppNames, Detector, Notifier, Watcher};
use crate::audit::export::{Export, Sink};
use crate::audit::webhook::Webhook;
use crate::audit::{Audit, AuditError};
use crate::auth::service::AuthService;
use crate::config::{AuditExport, Config};

/// The audit exports the configuration asks for (not started yet). A webhook whose address
/// is an IP literal the egress policy refuses stops start-up here.
pub(super) fn audit_exports(
    config: &Config,
    audit: &Audit,
    metrics: &Arc<crate::metrics::Metrics>,
) -> Result<Vec<Export>, StartError> {
    let mut sinks = Vec::new();
    match &config.audit.export {
        Some(AuditExport::Stdout) => sinks.push(Sink::Stdout),
        Some(AuditExport::File(path)) => {
            // Opened once here, so a path that cannot be written stops start-up.
            crate::audit::export::open_append(path).map_err(|error| {
                AuditError::Export(format!(
                    "cannot open {} for appending: {error}",
                    path.display()
                ))
            })?;
            sinks.push(Sink::File(path.clone()));
        }
        None => {}
    }
    if let Some(url) = &config.audit.webhook_url {
        sinks.push(Sink::Webhook(Webhook::new(
            "SLUICE_AUDIT_WEBHOOK_URL",
            url,
            config.audit.webhook_token.clone(),
            crate::egress::EgressPolicy::new(&config.egress_allow, &[]),
            config.egress_bind.first().copied(),
        )?));
    }
    Ok(sinks
        .into_iter()
        .map(|sink| {
            Export::new(
                sink,
                audit.store().clone(),
                audit.appended(),
                metrics.clone(),
                config.audit.export_queue,
            )
        })
        .collect())
}

/// The auth alerts as configured.
pub(super) enum Alerts {
    /// Every rule is `off`: no watcher runs.
    Off,
    /// A watcher runs; its alerts also go to `webhook` when one is set.
    On { webhook: Option<Webhook> },
}

/// The alerts the configuration asks for, their webhook checked against the egress policy
/// (an IP literal it refuses stops start-up).
pub(super) fn alerts(config: &Config) -> Result<Alerts, StartError> {
    if !Detector::new(config.alerts.clone()).any_on() {
        return Ok(Alerts::Off);
    }
    let Some(url) = &config.alerts.webhook_url else {
        return Ok(Alerts::On { webhook: None });
    };
    let url = url::Url::parse(url.expose())
        .map_err(|_| AuditError::Webhook("SLUICE_ALERT_WEBHOOK_URL", "not a URL".into()))?;
    let webhook = Webhook::new(
        "SLUICE_ALERT_WEBHOOK_URL",
        &url,
        config.alerts.webhook_token.clone(),
        crate::egress::EgressPolicy::new(&config.egress_allow, &[]),
        config.egress_bind.first().copied(),
    )?;
    Ok(Alerts::On {
        webhook: Some(webhook),
    })
}

/// The auth alerts' watcher over the instance's audit log (see [`crate::audit::alerts`]),
/// as a task body.
pub(super) fn alert_watcher(
    instance: &Arc<Instance>,
    webhook: Option<Webhook>,
) -> impl Future<Output = ()> + use<> {
    let state = instance.state.clone();
    let metrics = state.metrics.clone();
    let notifier = webhook.map(|webhook| {
        Notifier::start(
            webhook,
            instance.config.alerts.webhook_queue,
            metrics.clone(),
        )
    });
    let apps: AppNames = {
        let state = state.clone();
        Arc::new(move || state.snapshot().spec.apps.keys().cloned().collect())
    };
    let watcher = Watcher::new(
        state.audit.store().clone(),
        Detector::new(instance.config.alerts.clone()),
        apps,
        instance.clock.clone(),
        metrics,
        notifier,
    );
    watcher.run(state.audit.appended())
}

/// Deletes expired sessions every ten minutes (they are refused on sight anyway; this keeps
/// the table small).
pub(super) async fn purge_sessions(service: Arc<AuthService>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        every.tick().await;
        match service.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "Expired sessions deleted"),
            Err(error) => tracing::warn!(error = %error, "Purging expired sessions failed"),
        }
    }
}

/// Every `every`, reads the store's catalog revision and reloads when it is not the one
/// serving (an apply, rollback or restore by the CLI, or another process).
pub(super) async fn reload_on_new_revision(instance: Arc<Instance>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = RevisionCheck::default();
    loop {
        ticks.tick().await;
        check.run(&instance).await;
    }
}

/// Whenever the store pushes a catalog change notice (PostgreSQL: another replica, or the
/// CLI, applied a revision), reads the revision and reloads at once, as the periodic check
/// would at its next tick.
pub(super) async fn reload_on_notice(
    instance: Arc<Instance>,
    mut changes: crate::store::catalog::CatalogChanges,
) {
    let mut check = RevisionCheck::default();
    while changes.changed().await.is_ok() {
        check.run(&instance).await;
    }
}

/// One look at the store's catalog revision, reloading when it is not the one serving. A
/// revision that fails to build is reported once and tried again only when the revision
/// changes; a store read that fails is reported once per run of failures.
#[derive(Default)]
struct RevisionCheck {
    failed_revision: Option<i64>,
    store_failing: bool,
}

impl RevisionCheck {
    async fn run(&mut self, instance: &Instance) {
        let store = instance.store.clone();
        let stored = match tokio::task::spawn_blocking(move || store.catalog_revision()).await {
            Ok(Ok(revision)) => revision,
            Ok(Err(error)) => {
                if !self.store_failing {
                    tracing::warn!(error = %error, "Cannot read the catalog revision from the store");
                }
                self.store_failing = true;
                return;
            }
            Err(_) => return,
        };
        self.store_failing = false;
        if stored == instance.state.snapshot().revision || self.failed_revision == Some(stored) {
            return;
        }
        match instance.reload().await {
            Ok(revision) => {
                self.failed_revision = None;
                tracing::info!(revision, "Catalog reloaded (a new revision was applied)");
            }
            Err(error) => {
                self.failed_revision = Some(stored);
                tracing::error!(
                    revision = stored,
                    error = %error,
                    "Catalog reload failed; still serving the previous one"
                );
            }
        }
    }
}

#[cfg(unix)]
pub(super) async fn reload_on_hangup(instance: Arc<Instance>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        if let Some(tls) = &instance.tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(error = %error, "TLS reload failed; still serving the previous certificate")
                }
            }
        }
        match instance.reload().await {
            Ok(revision) => tracing::info!(revision, "Catalog reloaded"),
            Err(error) => {
                tracing::error!(error = %error, "Catalog reload failed; still serving the previous one")
            }
        }
    }
}

#[cfg(not(unix))]
pub(super) async fn reload_on_hangup(_instance: Arc<Instance>) {}
