//! A running Sluice instance: wires configuration, vault, metadata store, catalog, pools and
//! the HTTP server together.
//!
//! Everything is validated before a port is bound: the instance key (presence and strength),
//! the store, every template, and every sealed secret. A catalog that does not compile or a
//! secret that does not open stops start-up with the reason.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::catalog::compile::{self, CatalogErrors, QueryDefaults};
use crate::config::{Config, ConfigError};
use crate::datasource::{PoolDefaults, PoolError, Pools};
use crate::gateway::{self, GatewayState, Limits, Snapshot};
use crate::http::server::{self, ServerSettings};
use crate::store::{MetadataStore, SqliteStore, StoreError};
use crate::vault::InstanceKey;

/// Why an instance could not start (or reload).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored catalog does not compile:\n{0}")]
    Catalog(CatalogErrors),
    #[error("sealed secrets in the stored catalog do not open with this instance key:\n{0}")]
    Secrets(CatalogErrors),
    #[error(transparent)]
    Pools(#[from] PoolError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A configured instance, ready to serve.
pub struct Instance {
    config: Config,
    key: Arc<InstanceKey>,
    store: Arc<dyn MetadataStore>,
    state: Arc<GatewayState>,
}

impl Instance {
    /// Derives the instance key, opens the store named by the configuration, and builds the
    /// first snapshot.
    pub async fn open(config: Config) -> Result<Instance, StartError> {
        let key = derive_key(&config).await?;
        let path = config.metadata_path();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await??;
        Instance::with_parts(config, key, Arc::new(store)).await
    }

    /// Builds an instance from parts already made (the demo and tests use this).
    pub async fn with_parts(
        config: Config,
        key: InstanceKey,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Instance, StartError> {
        let key = Arc::new(key);
        let snapshot = build_snapshot(&config, &key, store.clone()).await?;
        let state = GatewayState::new(
            snapshot,
            Limits {
                max_body_bytes: config.max_body_bytes,
            },
        );
        Ok(Instance {
            config,
            key,
            store,
            state,
        })
    }

    /// Reloads the catalog from the store. The old snapshot keeps serving until the new one
    /// is fully built; on error nothing changes.
    pub async fn reload(&self) -> Result<i64, StartError> {
        let snapshot = build_snapshot(&self.config, &self.key, self.store.clone()).await?;
        let revision = snapshot.revision;
        // The previous snapshot's pools close when the last request using them finishes
        // and drops its reference.
        drop(self.state.replace_snapshot(snapshot));
        Ok(revision)
    }

    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<TcpListener, StartError> {
        let address = self.config.listen;
        TcpListener::bind(address)
            .await
            .map_err(|source| StartError::Listen { address, source })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains. SIGHUP reloads the
    /// catalog from the store.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let instance = Arc::new(self);
        let reloader = tokio::spawn(reload_on_hangup(instance.clone()));
        let admin_state = Arc::new(AdminState {
            config: instance.config.clone(),
            catalog: {
                let state = instance.state.clone();
                Arc::new(move || state.snapshot().spec.as_ref().clone())
            },
        });
        let router = gateway::router(instance.state.clone(), admin::router(admin_state));
        let settings = ServerSettings {
            header_read_timeout: instance.config.header_read_timeout,
            shutdown_grace: instance.config.shutdown_grace,
        };
        let state = instance.state.clone();
        let shutdown = async move {
            shutdown.await;
            state.start_draining();
        };
        if let Ok(address) = listener.local_addr() {
            tracing::info!(address = %address, "Sluice is listening");
        }
        server::run(listener, router, settings, shutdown).await;
        reloader.abort();
        instance.state.snapshot().pools.close_all();
    }
}

async fn derive_key(config: &Config) -> Result<InstanceKey, StartError> {
    let config = config.clone();
    Ok(tokio::task::spawn_blocking(move || config.instance_key()).await??)
}

async fn build_snapshot(
    config: &Config,
    key: &Arc<InstanceKey>,
    store: Arc<dyn MetadataStore>,
) -> Result<Snapshot, StartError> {
    let (spec, revision) = tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((store.load_catalog()?, store.catalog_revision()?))
    })
    .await??;
    let defaults = QueryDefaults {
        timeout: config.query_timeout,
        max_rows: config.max_rows,
    };
    let catalog = compile::compile(&spec, defaults).map_err(StartError::Catalog)?;
    compile::verify_secrets(&spec, key).map_err(StartError::Secrets)?;
    let pools = Pools::build(
        &spec,
        key,
        &PoolDefaults {
            pool_size: config.pool_size,
            egress_allow: config.egress_allow.clone(),
            egress_bind: config.egress_bind.clone(),
            ..PoolDefaults::default()
        },
    )?;
    Ok(Snapshot {
        spec: Arc::new(spec),
        catalog,
        pools,
        revision,
    })
}

#[cfg(unix)]
async fn reload_on_hangup(instance: Arc<Instance>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
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
