//! A running Sluice instance: wires configuration, vault, metadata store, catalog, pools,
//! metrics and the HTTP server (and the metrics listener, when configured) together.
//!
//! Everything is validated before a port is bound: the instance key (presence and strength),
//! the store, every template, and every sealed secret. A catalog that does not compile or a
//! secret that does not open stops start-up with the reason.

mod account_policy;
mod edge;
mod metrics;
mod router;
mod services;
pub mod sso_only;
mod store;
mod tasks;

pub use edge::Front;
pub use router::front;
pub use services::{account_service, auth_service, sso};
pub use store::{MetadataStore, StoreOpening, open_store, store_name};

use services::{derive_key, rate_limiter};
use tasks::{
    Alerts, alert_watcher, alerts, audit_exports, purge_sessions, reload_on_hangup,
    reload_on_new_revision, reload_on_notice,
};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::acme::{AcmeCertificates, AcmeError};
use crate::admin::{self, AdminState};
use crate::audit::export::Export;
use crate::audit::{Audit, AuditError};
use crate::auth::mail::MailError;
use crate::auth::routes::{AuthState, CookieSettings};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::gateway::{GatewayParts, GatewayState, Limits, Readiness};
use crate::http::connections::ConnectionLimits;
use crate::http::server::{self, ServerSettings};
use crate::http::tls::{CertStore, TlsError};
use crate::metrics::Metrics;
use crate::policy::edge::EdgeState;
use crate::snapshot::{self, SnapshotError};
use crate::store::{Store, StoreError};
use crate::vault::Keyring;

/// Why an instance could not start (or reload).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot listen on {address}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("SLUICE_SMTP_URL / SLUICE_MAIL_FROM")]
    Mail(#[from] MailError),
    #[error("SLUICE_TLS_CERT_FILE / SLUICE_TLS_KEY_FILE")]
    Tls(#[from] TlsError),
    #[error("SLUICE_ACME_DOMAINS")]
    Acme(#[from] AcmeError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    SsoSettings(#[from] crate::sso::settings::SettingsError),
    #[error("SLUICE_SSO_FILE: {0}")]
    Sso(#[from] crate::sso::client::ClientError),
}

/// A configured instance, ready to serve.
pub struct Instance {
    config: Config,
    /// The certificate when serving HTTPS.
    tls: Option<Arc<CertStore>>,
    /// The certificates from ACME, when `SLUICE_ACME_DOMAINS` is set.
    acme: Option<Arc<AcmeCertificates>>,
    key: Arc<Keyring>,
    store: Arc<dyn Store>,
    state: Arc<GatewayState>,
    /// The audit exports, started with the server (`SLUICE_AUDIT_EXPORT`, `_WEBHOOK_URL`).
    exports: Vec<Export>,
    /// The auth alerts, set up (their webhook's address checked) at start, started with
    /// the server.
    alerts: Alerts,
    clock: SharedClock,
    /// Routes served beside the instance's own, behind the same middleware (the demo's page).
    extra_routes: Option<axum::Router>,
}

impl Instance {
    /// Derives the instance key, opens the store named by the configuration, and builds the
    /// first snapshot.
    /// Logs what it started on: version, commit, store path, catalog revision, and how many
    /// datasources, apps and queries serve.
    pub async fn open(config: Config) -> Result<Instance, StartError> {
        let key = derive_key(&config).await?;
        let store = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_store(&config, StoreOpening::CreateIfMissing))
                .await??
        };
        let described = store.describe();
        let instance = Instance::with_parts(config, key, store.shared()).await?;
        let snapshot = instance.state.snapshot();
        tracing::info!(
            version = %env!("CARGO_PKG_VERSION"),
            commit = %crate::COMMIT,
            store = %described,
            catalog_revision = snapshot.revision,
            datasources = snapshot.spec.datasources.len(),
            apps = snapshot.spec.apps.len(),
            queries = snapshot.spec.apps.values().map(|app| app.queries.len()).sum::<usize>(),
            "Sluice is starting"
        );
        Ok(instance)
    }

    /// Builds an instance from parts already made (the demo and tests use this): `key` is
    /// an instance key or a whole keyring (current and old key).
    pub async fn with_parts(
        config: Config,
        key: impl Into<Keyring>,
        store: Arc<dyn Store>,
    ) -> Result<Instance, StartError> {
        Instance::with_clock(config, key, store, Arc::new(SystemClock)).await
    }

    /// [`Instance::with_parts`] with a chosen clock (tests move time instead of sleeping).
    pub async fn with_clock(
        config: Config,
        key: impl Into<Keyring>,
        store: Arc<dyn Store>,
        clock: SharedClock,
    ) -> Result<Instance, StartError> {
        config.validate()?;
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(CertStore::load(cert, key)?),
            _ => None,
        };
        let key = Arc::new(key.into());
        // One set of metrics for the instance: the snapshot's queries, the edge, the view
        // plane and the auth service record into it.
        let metrics = Arc::new(Metrics::new());
        let acme = match &config.acme {
            Some(settings) => Some(AcmeCertificates::open(
                settings,
                &config.data_dir,
                crate::egress::EgressPolicy::new(&config.egress_allow, &[]),
                config.egress_bind.first().copied(),
                metrics.clone(),
            )?),
            None => None,
        };
        let snapshot = snapshot::build(&config, &key, store.clone(), &metrics).await?;
        let limiter = rate_limiter(&config, store.as_ref(), &clock, &metrics)?;
        // One audit log for the instance: the auth service, the edge, the admin plane and
        // (when on) the query route all write to it.
        let mut audit = Audit::new(store.clone(), clock.clone());
        if config.audit.query_runs {
            audit = audit.with_query_runs(metrics.clone(), crate::audit::runs::QUEUE);
        }
        let audit = Arc::new(audit);
        let exports = audit_exports(&config, &audit, &metrics)?;
        let alerts = alerts(&config)?;
        let auth = Arc::new(AuthState {
            service: Arc::new(
                auth_service(
                    &config,
                    &key,
                    store.clone(),
                    audit.clone(),
                    clock.clone(),
                    limiter.clone(),
                )?
                .with_metrics(metrics.clone())
                .with_cache(config.auth_cache, config.auth_cache_stale),
            ),
            cookie: CookieSettings {
                secure: config.secure_cookies(),
                same_site: config.auth.cookie_same_site,
            },
            max_body_bytes: config.max_body_bytes,
            sso: Arc::new(sso(&config)?),
            public_url: config.public_url.clone(),
        });
        let state = GatewayState::new(
            snapshot,
            GatewayParts {
                limits: Limits {
                    max_body_bytes: config.max_body_bytes,
                },
                auth,
                edge: Arc::new(EdgeState {
                    trusted_proxies: config.edge.trusted_proxies.clone(),
                    per_ip: config.edge.per_ip,
                    limiter,
                    metrics: metrics.clone(),
                    tls: config.serves_tls(),
                    // The origin is scheme://host[:port]; a public URL may carry a path after it.
                    public_origin: config.public_url.as_deref().and_then(|url| {
                        let (scheme, rest) = url.split_once("://")?;
                        let authority = rest.split('/').next()?;
                        crate::policy::cors::normalize_origin(&format!("{scheme}://{authority}"))
                    }),
                }),
                audit,
                metrics,
                readiness: Readiness::new(store.clone()),
            },
        );
        Ok(Instance {
            config,
            tls,
            acme,
            key,
            store,
            state,
            exports,
            alerts,
            clock,
            extra_routes: None,
        })
    }

    /// Reloads the catalog from the store. The old snapshot keeps serving until the new one
    /// is fully built; on error nothing changes.
    pub async fn reload(&self) -> Result<i64, StartError> {
        let _changing = self.state.catalog_change.lock().await;
        let snapshot = snapshot::build(
            &self.config,
            &self.key,
            self.store.clone(),
            &self.state.metrics,
        )
        .await?;
        let revision = snapshot.revision;
        // The previous snapshot's pools close when the last request using them finishes
        // and drops its reference. A reload may go back to a lower revision (a restored
        // store): under `catalog_change` it is the newest, so it replaces whatever serves.
        drop(self.state.replace_snapshot(snapshot));
        Ok(revision)
    }

    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Every route of this instance behind its middleware: what the listener serves (tests
    /// call it with tower's `oneshot`, without a socket).
    pub fn front(&self) -> Front {
        let admin_state = Arc::new(AdminState {
            auth: self.state.auth.clone(),
            config: self.config.clone(),
            gateway: self.state.clone(),
            store: self.store.clone(),
            keys: self.key.clone(),
        });
        let scim = self.config.scim_token.clone().map(|token| {
            Arc::new(crate::scim::routes::ScimState {
                service: crate::scim::service::ScimService::new(
                    self.store.clone(),
                    self.state.audit.clone(),
                    self.clock.clone(),
                ),
                token,
                public_url: self.config.public_url.clone(),
                max_body_bytes: self.config.max_body_bytes,
            })
        });
        front(
            self.state.clone(),
            admin::router(admin_state),
            self.config.metrics_token.clone(),
            scim,
            self.config.console,
            self.extra_routes.clone(),
        )
    }

    /// Serves `routes` too, behind the same middleware (request id, edge, security
    /// headers). The demo adds its page this way. `POST` and `OPTIONS` on
    /// `/v1/apps/{app}/queries/{query}` are always the query route: a route of `routes` there
    /// is never reached.
    pub fn with_routes(mut self, routes: axum::Router) -> Instance {
        self.extra_routes = Some(routes);
        self
    }

    /// Binds the configured listen address with the configured listen backlog.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let address = self.config.listen;
        server::bind(address, self.config.listen_backlog)
            .map_err(|source| StartError::Listen { address, source })
    }

    /// Binds `SLUICE_METRICS_LISTEN`, when it is set (with a short listen queue: one
    /// scraper is expected).
    pub async fn bind_metrics(&self) -> Result<Option<TcpListener>, StartError> {
        let Some(address) = self.config.metrics_listen else {
            return Ok(None);
        };
        server::bind(address, 64)
            .map(Some)
            .map_err(|source| StartError::Listen { address, source })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains. SIGHUP reloads the
    /// catalog from the store. No metrics listener: see [`Instance::serve_with_metrics`].
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_with_metrics(listener, None, shutdown).await;
    }

    /// [`Instance::serve`], and `GET /metrics` on `metrics` (from [`Instance::bind_metrics`])
    /// until the same shutdown.
    pub async fn serve_with_metrics(
        mut self,
        listener: TcpListener,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let exports = std::mem::take(&mut self.exports);
        let alerts = std::mem::replace(&mut self.alerts, Alerts::Off);
        let instance = Arc::new(self);
        let reloader = tokio::spawn(reload_on_hangup(instance.clone()));
        let watcher = instance
            .config
            .catalog_reload
            .map(|every| tokio::spawn(reload_on_new_revision(instance.clone(), every)));
        // Pushed notices (PostgreSQL) reload at once; the periodic check stays the backstop.
        let notices = instance
            .store
            .catalog_changes()
            .map(|changes| tokio::spawn(reload_on_notice(instance.clone(), changes)));
        let purger = tokio::spawn(purge_sessions(instance.state.auth.service.clone()));
        // The audit log's background work: its exports and retention.
        let mut audit_tasks: Vec<_> = exports
            .into_iter()
            .map(|export| tokio::spawn(export.run()))
            .collect();
        if let Alerts::On { webhook } = alerts {
            audit_tasks.push(tokio::spawn(alert_watcher(&instance, webhook)));
        }
        if let Some(days) = instance.config.audit.retention_days {
            audit_tasks.push(tokio::spawn(crate::audit::retention::run(
                instance.state.audit.store().clone(),
                instance.clock.clone(),
                instance.state.metrics.clone(),
                days,
            )));
        }
        let front = instance.front();
        let settings = ServerSettings {
            header_read_timeout: instance.config.header_read_timeout,
            body_read_timeout: instance.config.body_read_timeout,
            shutdown_grace: instance.config.shutdown_grace,
            limits: ConnectionLimits {
                max_total: instance.config.max_connections,
                max_per_ip: instance.config.max_connections_per_ip,
                // A reverse proxy carries many clients: it counts toward the total only.
                exempt: instance.config.edge.trusted_proxies.clone(),
            },
            tls: match (&instance.tls, &instance.acme) {
                (Some(store), _) => match store.acceptor() {
                    Ok(acceptor) => Some(acceptor),
                    Err(error) => {
                        tracing::error!(error = %error, "TLS set-up failed; not serving");
                        return;
                    }
                },
                (None, Some(acme)) => match acme.acceptor() {
                    Ok(acceptor) => Some(acceptor),
                    Err(error) => {
                        tracing::error!(error = %error, "TLS set-up failed; not serving");
                        return;
                    }
                },
                (None, None) => None,
            },
        };
        // Orders and renewals need the listener up: the CA's TLS-ALPN-01 check reaches it.
        let renewer = instance.acme.clone().map(|acme| tokio::spawn(acme.run()));
        let state = instance.state.clone();
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let metrics_server = metrics.map(|listener| {
            let settings = ServerSettings {
                tls: None,
                limits: ConnectionLimits {
                    max_total: 64,
                    max_per_ip: 0,
                    exempt: Vec::new(),
                },
                ..settings.clone()
            };
            if let Ok(address) = listener.local_addr() {
                tracing::info!(address = %address, "Metrics are served at /metrics");
            }
            let mut stopped = stopped;
            tokio::spawn(server::run(
                listener,
                metrics::listener_router(state.clone()),
                settings,
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            ))
        });
        let shutdown = async move {
            shutdown.await;
            state.start_draining();
            let _ = stopping.send(true);
        };
        if let Ok(address) = listener.local_addr() {
            tracing::info!(address = %address, "Sluice is listening");
        }
        server::run(listener, front.listener_service(), settings, shutdown).await;
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        reloader.abort();
        if let Some(renewer) = renewer {
            renewer.abort();
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(notices) = notices {
            notices.abort();
        }
        purger.abort();
        for task in audit_tasks {
            task.abort();
        }
        instance.state.snapshot().pools.close_all();
    }
}
