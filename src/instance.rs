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
pub mod sso_only;

pub use edge::Front;
pub use router::front;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::acme::{AcmeCertificates, AcmeError};
use crate::admin::{self, AdminState};
use crate::audit::alerts::{AppNames, Detector, Notifier, Watcher};
use crate::audit::export::{Export, Sink};
use crate::audit::webhook::Webhook;
use crate::audit::{Audit, AuditError};
use crate::auth::mail::{MailError, Mailer};
use crate::auth::routes::{AuthState, CookieSettings};
use crate::auth::service::AuthService;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{AuditExport, Config, ConfigError};
use crate::gateway::{GatewayParts, GatewayState, Limits, Readiness};
use crate::http::connections::ConnectionLimits;
use crate::http::server::{self, ServerSettings};
use crate::http::tls::{CertStore, TlsError};
use crate::limits::SharedLimiter;
use crate::metrics::Metrics;
use crate::policy::edge::EdgeState;
use crate::policy::rate_limit::{MemoryLimiter, RateLimiter};
use crate::snapshot::{self, SnapshotError};
use crate::store::buckets::SharedBuckets;
use crate::store::buckets::redis::RedisBuckets;
use crate::store::{PgSettings, PostgresStore, SqliteStore, Store, StoreError};
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
    /// The auth alerts' webhook, set up (its address checked) at start, started with the
    /// server; `None` inside: alerts without a webhook. `None`: every alert is off.
    alerts: Option<Option<Webhook>>,
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
        let alerts = alert_webhook(&config)?;
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

    /// Every route of this instance behind its middleware, as served, as a router (tests
    /// call it with tower's `oneshot`, without a socket).
    pub fn router(&self) -> axum::Router {
        axum::Router::new().fallback_service(self.front())
    }

    /// Every route of this instance behind its middleware: what the listener serves.
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
    /// headers). The demo adds its page this way.
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
        let alerts = self.alerts.take();
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
        if let Some(webhook) = alerts {
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
        server::run(listener, front, settings, shutdown).await;
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

/// The audit exports the configuration asks for (not started yet). A webhook whose address
/// is an IP literal the egress policy refuses stops start-up here.
fn audit_exports(
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

/// The alert webhook the configuration asks for, checked against the egress policy (an IP
/// literal it refuses stops start-up); `None` when every alert is off.
fn alert_webhook(config: &Config) -> Result<Option<Option<Webhook>>, StartError> {
    if !Detector::new(config.alerts.clone()).any_on() {
        return Ok(None);
    }
    let Some(url) = &config.alerts.webhook_url else {
        return Ok(Some(None));
    };
    let url = url::Url::parse(url.expose())
        .map_err(|_| AuditError::Webhook("SLUICE_ALERT_WEBHOOK_URL", "not a URL".into()))?;
    Ok(Some(Some(Webhook::new(
        "SLUICE_ALERT_WEBHOOK_URL",
        &url,
        config.alerts.webhook_token.clone(),
        crate::egress::EgressPolicy::new(&config.egress_allow, &[]),
        config.egress_bind.first().copied(),
    )?)))
}

/// The auth alerts' watcher over the instance's audit log (see [`crate::audit::alerts`]),
/// as a task body.
fn alert_watcher(
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

/// Whether opening the metadata store may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOpening {
    /// `serve` and `init`: create the data directory and an empty store when missing.
    CreateIfMissing,
    /// Every other command: a missing store is an error ([`StoreError::Missing`]), so a
    /// command run from the wrong folder never starts an empty store beside the real one.
    ExistingOnly,
}

/// The metadata store an instance or a command opened: the embedded SQLite file (the
/// default) or PostgreSQL (`SLUICE_METADATA_URL`). Dereferences to [`Store`]; what only one
/// of them can do (a SQLite file backup) goes through [`MetadataStore::sqlite`].
#[allow(clippy::large_enum_variant)] // One per command or instance, never moved about.
pub enum MetadataStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl MetadataStore {
    /// The store, shared (what an instance holds).
    pub fn shared(self) -> Arc<dyn Store> {
        match self {
            MetadataStore::Sqlite(store) => Arc::new(store),
            MetadataStore::Postgres(store) => Arc::new(store),
        }
    }

    /// The SQLite store, or `None` on PostgreSQL.
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            MetadataStore::Sqlite(store) => Some(store),
            MetadataStore::Postgres(_) => None,
        }
    }

    /// The store's name for logs and messages: the file's path, or the URL without its
    /// password.
    pub fn describe(&self) -> String {
        match self {
            MetadataStore::Sqlite(store) => store.describe(),
            MetadataStore::Postgres(store) => store.describe().to_string(),
        }
    }
}

impl std::ops::Deref for MetadataStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            MetadataStore::Sqlite(store) => store,
            MetadataStore::Postgres(store) => store,
        }
    }
}

/// The store's name for messages before it is opened: the SQLite file's path, or the
/// PostgreSQL URL without its password (`postgres://...` when it does not parse).
pub fn store_name(config: &Config) -> String {
    match &config.metadata_url {
        Some(url) => PgSettings::parse(url.expose(), None)
            .map(|settings| settings.describe().to_string())
            .unwrap_or_else(|_| "the PostgreSQL store (SLUICE_METADATA_URL)".to_string()),
        None => config.metadata_path().display().to_string(),
    }
}

/// Opens the metadata store the configuration names and migrates it: PostgreSQL when
/// `SLUICE_METADATA_URL` is set, else the SQLite file (`SLUICE_METADATA_DB`, else
/// `<data dir>/sluice.db`), created only with [`StoreOpening::CreateIfMissing`]. On
/// PostgreSQL the database must exist (a DBA creates it, owned by the store's user); its
/// tables are created by any command that opens it. Blocking.
pub fn open_store(config: &Config, opening: StoreOpening) -> Result<MetadataStore, StoreError> {
    if let Some(url) = &config.metadata_url {
        let settings = PgSettings::parse(
            url.expose(),
            config.metadata_password.as_ref().map(|p| p.expose()),
        )?;
        return Ok(MetadataStore::Postgres(PostgresStore::open(settings)?));
    }
    let path = config.metadata_path();
    Ok(MetadataStore::Sqlite(match opening {
        StoreOpening::CreateIfMissing => SqliteStore::open(&path)?,
        StoreOpening::ExistingOnly => SqliteStore::open_existing(&path)?,
    }))
}

/// The account service over the configured store, with the system clock and an in-memory
/// limiter, as the CLI uses it (the same rules and audit events as the HTTP API).
pub async fn account_service(config: &Config) -> Result<AuthService, StartError> {
    config.validate()?;
    // The store first: a missing one is reported before the key derivation's wait.
    let store: Arc<dyn Store> = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config, StoreOpening::ExistingOnly))
            .await??
            .shared()
    };
    let key = Arc::new(derive_key(config).await?);
    let clock: SharedClock = Arc::new(SystemClock);
    let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryLimiter::new(clock.clone()));
    let audit = Arc::new(Audit::new(store.clone(), clock.clone()));
    auth_service(config, &key, store, audit, clock, limiter)
}

/// The instance's rate limiter: buckets shared by the replicas in Redis
/// (`SLUICE_REDIS_URL`) or in the PostgreSQL metadata store, else in this process's memory.
fn rate_limiter(
    config: &Config,
    store: &dyn Store,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn RateLimiter>, StartError> {
    let shared: Option<Arc<dyn SharedBuckets>> = match &config.redis_url {
        Some(url) => {
            let redis = RedisBuckets::open(url.expose())?;
            tracing::info!(redis = %redis.describe(), "Rate limits are shared through Redis");
            Some(Arc::new(redis))
        }
        None => store.shared_buckets(),
    };
    Ok(match shared {
        Some(shared) => Arc::new(SharedLimiter::new(shared, clock.clone(), metrics.clone())),
        None => Arc::new(MemoryLimiter::new(clock.clone())),
    })
}

/// The authentication service for this configuration: mailer, limiter, clock.
/// The SSO providers and issuers of `SLUICE_SSO_FILE` (none without one). A provider's
/// `client_secret_env` is read from the process environment.
pub fn sso(config: &Config) -> Result<crate::sso::Sso, StartError> {
    let Some(path) = &config.auth.sso_file else {
        return Ok(crate::sso::Sso::disabled());
    };
    let settings = crate::sso::settings::load(path, &|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })?;
    if config.auth.sso_only && settings.providers.is_empty() {
        return Err(crate::sso::settings::SettingsError::Invalid {
            path: path.clone(),
            at: "oidc".into(),
            reason: "SLUICE_SSO_ONLY needs at least one OpenID Connect provider to sign in with"
                .into(),
        }
        .into());
    }
    Ok(crate::sso::Sso::new(
        settings,
        config.auth.sso_only,
        &config.egress_allow,
    )?)
}

pub fn auth_service(
    config: &Config,
    key: &Arc<Keyring>,
    store: Arc<dyn Store>,
    audit: Arc<Audit>,
    clock: SharedClock,
    limiter: Arc<dyn RateLimiter>,
) -> Result<AuthService, StartError> {
    let mailer = match (&config.auth.smtp_url, &config.auth.mail_from) {
        (Some(url), Some(from)) => {
            Some(Mailer::new(url, from)?.with_source_addresses(config.egress_bind.clone()))
        }
        _ => None,
    };
    Ok(AuthService::new(
        store,
        audit,
        key.clone(),
        clock.clone(),
        config.auth.clone(),
        config.public_url.clone(),
        mailer,
        limiter,
    ))
}

/// The keyring: the current key, and the old one during a key rotation.
async fn derive_key(config: &Config) -> Result<Keyring, StartError> {
    let config = config.clone();
    Ok(tokio::task::spawn_blocking(move || config.keyring()).await??)
}

/// Deletes expired sessions every ten minutes (they are refused on sight anyway; this keeps
/// the table small).
async fn purge_sessions(service: Arc<AuthService>) {
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
async fn reload_on_new_revision(instance: Arc<Instance>, every: std::time::Duration) {
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
async fn reload_on_notice(
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
async fn reload_on_hangup(instance: Arc<Instance>) {
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
async fn reload_on_hangup(_instance: Arc<Instance>) {}
