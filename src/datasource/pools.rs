//! The pools of a catalog: [`Pools`] (one [`Datasource`] per name, built with its secrets
//! opened once), the instance-wide [`PoolDefaults`] and a datasource's egress policy.
//!
//! Owns when secrets are opened (once, at build). Must never keep a sealed secret's
//! plaintext beyond handing it to the driver, never log one, and never connect here:
//! connections open lazily, on first use, through the egress guard.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::tls::DbTls;
use super::{Datasource, PoolError, PoolUse, Slots, http, mysql, postgres, sqlite};
use crate::egress;
use crate::spec::{CatalogSpec, DatasourceSpec, NetworkDatabaseSpec, TlsMode};
use crate::vault::{InstanceKey, Owner, SecretString};

/// Instance-wide settings that apply where a datasource spec says nothing.
#[derive(Debug, Clone)]
pub struct PoolDefaults {
    pub pool_size: usize,
    /// How long a statement waits for a free connection (`SLUICE_POOL_WAIT_MS`).
    pub pool_wait: Duration,
    pub connect_timeout: Duration,
    /// Non-public networks every datasource may reach (`SLUICE_EGRESS_ALLOW`).
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Source addresses of outbound connections (`SLUICE_EGRESS_BIND`).
    pub egress_bind: Vec<std::net::IpAddr>,
}

impl Default for PoolDefaults {
    fn default() -> Self {
        PoolDefaults {
            pool_size: 16,
            pool_wait: super::DEFAULT_POOL_WAIT,
            connect_timeout: Duration::from_secs(10),
            egress_allow: Vec::new(),
            egress_bind: Vec::new(),
        }
    }
}

/// The egress policy of one datasource: the instance allow list plus its own.
pub(crate) fn egress_policy(
    name: &str,
    datasource_allow: &[String],
    defaults: &PoolDefaults,
) -> Result<egress::EgressPolicy, PoolError> {
    let own = egress::parse_cidrs(datasource_allow.iter().map(String::as_str)).map_err(|e| {
        PoolError::Config {
            datasource: name.to_string(),
            message: format!("egress_allow: {e}"),
        }
    })?;
    Ok(egress::EgressPolicy::new(&defaults.egress_allow, &own))
}

/// All datasources of a catalog, keyed by name, with secrets opened once here.
#[derive(Default, Clone)]
pub struct Pools {
    by_name: HashMap<String, Arc<Datasource>>,
}

impl Pools {
    /// Builds a pool per datasource. Connections open lazily, on first use.
    pub fn build(
        catalog: &CatalogSpec,
        key: &InstanceKey,
        defaults: &PoolDefaults,
    ) -> Result<Pools, PoolError> {
        let mut by_name = HashMap::new();
        for (name, spec) in &catalog.datasources {
            let source = match spec {
                DatasourceSpec::Postgres(net) => {
                    let password = open_secret(key, name, "password", net.password.as_deref())?;
                    let client_key =
                        open_secret(key, name, "tls_client_key", net.tls_client_key.as_deref())?;
                    let tls = load_tls(name, net, client_key.as_ref(), false)?;
                    Datasource::Postgres(postgres::PostgresSource::new(
                        name, net, password, tls, defaults,
                    )?)
                }
                DatasourceSpec::Mysql(net) => {
                    let password = open_secret(key, name, "password", net.password.as_deref())?;
                    let client_key =
                        open_secret(key, name, "tls_client_key", net.tls_client_key.as_deref())?;
                    let tls = load_tls(name, net, client_key.as_ref(), true)?;
                    Datasource::MySql(mysql::MySqlSource::new(
                        name,
                        net,
                        password,
                        tls,
                        client_key.as_ref(),
                        defaults,
                    )?)
                }
                DatasourceSpec::Sqlite(lite) => {
                    Datasource::Sqlite(sqlite::SqliteSource::new(name, lite, defaults)?)
                }
                DatasourceSpec::Http(http_spec) => {
                    let mut secret = None;
                    for (field, sealed) in spec.secret_fields() {
                        secret = open_secret(key, name, field, sealed)?;
                    }
                    Datasource::Http(http::HttpSource::new(name, http_spec, secret, defaults)?)
                }
            };
            by_name.insert(name.clone(), Arc::new(source));
        }
        Ok(Pools { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Datasource>> {
        self.by_name.get(name)
    }

    /// How each SQL datasource's connection slots are used now, by name.
    pub fn usage(&self) -> Vec<(&str, PoolUse)> {
        let mut usage: Vec<(&str, PoolUse)> = self
            .by_name
            .iter()
            .filter_map(|(name, source)| Some((name.as_str(), source.pool_use()?)))
            .collect();
        usage.sort_unstable_by_key(|(name, _)| *name);
        usage
    }

    pub fn close_all(&self) {
        for source in self.by_name.values() {
            source.close();
        }
    }
}

/// A database datasource's TLS, loaded and checked (files read, the client key opened and
/// matched to its certificate). A pool built with `tls: require` logs a warning: it is
/// encrypted but does not know who answers.
fn load_tls(
    name: &str,
    net: &NetworkDatabaseSpec,
    client_key: Option<&SecretString>,
    mysql: bool,
) -> Result<DbTls, PoolError> {
    let mode = net.tls_mode(egress::is_loopback_host(&net.host));
    net.check_tls(mode, mysql)
        .map_err(|(field, message)| PoolError::Config {
            datasource: name.to_string(),
            message: format!("{field}: {message}"),
        })?;
    let tls = DbTls::load(net, mode, client_key).map_err(|cause| PoolError::Tls {
        datasource: name.to_string(),
        cause,
    })?;
    if mode == TlsMode::Require {
        tracing::warn!(
            datasource = %name,
            "TLS without certificate verification (tls: require): the connection is encrypted, \
             but anyone who can intercept it can pose as the database; use verify-full with \
             tls_ca_file"
        );
    }
    Ok(tls)
}

fn open_secret(
    key: &InstanceKey,
    datasource: &str,
    field: &'static str,
    sealed: Option<&str>,
) -> Result<Option<SecretString>, PoolError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let secret_error = |cause| PoolError::Secret {
        datasource: datasource.to_string(),
        field,
        cause,
    };
    let owner = Owner::datasource(datasource, field).map_err(secret_error)?;
    key.open(&owner, sealed).map(Some).map_err(secret_error)
}

/// The connection slots of a SQL datasource: its pool size and how long a statement waits
/// for a free connection, from its spec or else the instance defaults.
pub(crate) fn slots_for(
    pool_size: Option<usize>,
    pool_wait_ms: Option<u64>,
    defaults: &PoolDefaults,
) -> Slots {
    Slots::new(
        pool_size.unwrap_or(defaults.pool_size),
        pool_wait_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.pool_wait),
    )
}
