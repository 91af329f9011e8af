//! The pools of a catalog: [`Pools`] (one [`Datasource`] per name, built with its secrets
//! opened once), the instance-wide [`PoolDefaults`] and a datasource's egress policy.
//!
//! Owns when secrets are opened (once, at build): a sealed value with the keyring (the
//! current key or, during a rotation, the old one), a secret reference (`env:NAME`,
//! `file:/path`) checked against `SLUICE_SECRET_REFERENCES` and read here. Must never keep
//! a secret's plaintext beyond handing it to the driver, never log one (errors name the
//! field and the reference, never what it holds), and never connect here: connections open
//! lazily, on first use, through the egress guard.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::tls::DbTls;
use super::{Datasource, PoolError, PoolUse, Slots, http, mysql, postgres, sqlite};
use crate::config::{SecretReference, SecretReferences, is_reference};
use crate::egress;
use crate::spec::{CatalogSpec, DatasourceSpec, NetworkDatabaseSpec, TlsMode};
use crate::vault::{Keyring, Owner, SecretString};

/// Largest referenced secret file read, as for `SLUICE_*_FILE` secrets.
const MAX_REFERENCED_FILE_BYTES: u64 = 64 * 1024;

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
    /// Which secret references a datasource may use (`SLUICE_SECRET_REFERENCES`); none by
    /// default.
    pub references: SecretReferences,
}

impl Default for PoolDefaults {
    fn default() -> Self {
        PoolDefaults {
            pool_size: 16,
            pool_wait: super::DEFAULT_POOL_WAIT,
            connect_timeout: Duration::from_secs(10),
            egress_allow: Vec::new(),
            egress_bind: Vec::new(),
            references: SecretReferences::default(),
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
    /// Hashed with foldhash (see [`NameMap`](crate::catalog::compile::NameMap)): looked up
    /// per request.
    by_name: HashMap<String, Arc<Datasource>, foldhash::fast::RandomState>,
}

impl Pools {
    /// Builds a pool per datasource. Connections open lazily, on first use.
    pub fn build(
        catalog: &CatalogSpec,
        keys: &Keyring,
        defaults: &PoolDefaults,
    ) -> Result<Pools, PoolError> {
        let open_secret = |name: &str, field: &'static str, value: Option<&str>| {
            open_secret(keys, &defaults.references, name, field, value)
        };
        let mut by_name = HashMap::default();
        for (name, spec) in &catalog.datasources {
            let source = match spec {
                DatasourceSpec::Postgres(net) => {
                    let password = open_secret(name, "password", net.password.as_deref())?;
                    let client_key =
                        open_secret(name, "tls_client_key", net.tls_client_key.as_deref())?;
                    let tls = load_tls(name, net, client_key.as_ref(), false)?;
                    Datasource::Postgres(postgres::PostgresSource::new(
                        name, net, password, tls, defaults,
                    )?)
                }
                DatasourceSpec::Mysql(net) => {
                    let password = open_secret(name, "password", net.password.as_deref())?;
                    let client_key =
                        open_secret(name, "tls_client_key", net.tls_client_key.as_deref())?;
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
                        secret = open_secret(name, field, sealed)?;
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

/// A secret field's value opened: a sealed value with the keyring, a reference read from
/// where it points (once allowed).
pub fn open_secret(
    keys: &Keyring,
    references: &SecretReferences,
    datasource: &str,
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<SecretString>, PoolError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if is_reference(value) {
        let reference_error = |message: String| PoolError::Reference {
            datasource: datasource.to_string(),
            field,
            message,
        };
        let reference = references
            .check(value)
            .map_err(|error| reference_error(error.to_string()))?;
        return read_reference(&reference, references)
            .map(Some)
            .map_err(|why| reference_error(format!("`{reference}`: {why}")));
    }
    let secret_error = |cause| PoolError::Secret {
        datasource: datasource.to_string(),
        field,
        cause,
    };
    let owner = Owner::datasource(datasource, field).map_err(secret_error)?;
    keys.open(&owner, value).map(Some).map_err(secret_error)
}

/// Reads what an allowed reference points at. The error says why in words of its own
/// (never the content): a variable that is unset or empty, a file that cannot be read.
fn read_reference(
    reference: &SecretReference,
    references: &SecretReferences,
) -> Result<SecretString, String> {
    match reference {
        SecretReference::Env(name) => match std::env::var_os(name) {
            None => Err("the variable is not set in the gateway's environment".into()),
            Some(value) => match value.into_string() {
                Ok(value) if value.is_empty() => Err("the variable is empty".into()),
                Ok(value) => Ok(SecretString::new(value)),
                Err(value) => {
                    drop(zeroize::Zeroizing::new(value.into_encoded_bytes()));
                    Err("the variable is not valid UTF-8".into())
                }
            },
        },
        SecretReference::File(path) => {
            // The allowlist is judged on the path as written; a symlink that leads to a file
            // this instance reads its own secret from is refused all the same.
            if let Ok(real) = std::fs::canonicalize(path)
                && references.own_files().iter().any(|own| {
                    *own == real || std::fs::canonicalize(own).is_ok_and(|own| own == real)
                })
            {
                return Err("it leads to a file this instance reads its own secret from".into());
            }
            let mut bytes = zeroize::Zeroizing::new(Vec::new());
            std::fs::File::open(path)
                .and_then(|file| {
                    file.take(MAX_REFERENCED_FILE_BYTES + 1)
                        .read_to_end(&mut bytes)
                })
                .map_err(|error| format!("cannot read the file ({})", error.kind()))?;
            if bytes.len() as u64 > MAX_REFERENCED_FILE_BYTES {
                return Err("the file is larger than 64 KiB".into());
            }
            let text =
                std::str::from_utf8(&bytes).map_err(|_| "the file is not UTF-8".to_string())?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err("the file is empty".into());
            }
            Ok(SecretString::new(text.to_owned()))
        }
    }
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
