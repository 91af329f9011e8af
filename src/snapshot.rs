//! The served snapshot: a stored catalog turned into what the request path reads.
//!
//! [`build`] loads the catalog from the store, compiles it (`catalog::compile`), checks that
//! every sealed secret opens for its own owner (with the current key or, during a key
//! rotation, the old one) and that every secret reference is allowed, and builds the connection pools (which open
//! the secrets they need). A [`Snapshot`] is immutable; a reload builds a new one and swaps
//! it in whole, so requests in flight keep the one they started with. This is the only place
//! where a stored catalog becomes a served one: `catalog check`/`apply` use
//! [`verify_secrets`] and [`verify_tls`] too, so what applies is what serves.
//!
//! Each query's metric series ([`QuerySeries`]) is made here too, once per build, and kept
//! beside the catalog by the query's index, so the request path records without a lookup.
//!
//! Knows nothing about HTTP. Never logs a secret; errors name the field, not the value.

use std::sync::Arc;

use crate::catalog::compile::{self, CatalogErrors, CatalogProblem, CompiledCatalog};
use crate::config::{Config, SecretReferences, is_reference};
use crate::datasource::tls::DbTls;
use crate::datasource::{PoolDefaults, PoolError, Pools, open_secret};
use crate::metrics::{Metrics, PoolReading, QuerySeries, Reading};
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::{Store, StoreError};
use crate::vault::{Keyring, Owner};

/// What the request path reads: the compiled catalog and its pools, swapped as one.
#[derive(Default)]
pub struct Snapshot {
    /// The catalog as stored (secrets sealed), for the edit plane's reports.
    pub spec: Arc<CatalogSpec>,
    pub catalog: CompiledCatalog,
    pub pools: Pools,
    /// The store revision this snapshot was built from.
    pub revision: i64,
    /// Each query's metric series, at its [`CompiledQuery::index`].
    series: Vec<QuerySeries>,
}

impl Snapshot {
    /// The metric series of the query at `index` (a
    /// [`CompiledQuery::index`](crate::catalog::compile::CompiledQuery::index) of this
    /// snapshot's), or of unknown queries when `index` is `None`.
    pub fn series<'a>(&'a self, index: Option<usize>, metrics: &'a Metrics) -> &'a QuerySeries {
        index
            .and_then(|index| self.series.get(index))
            .unwrap_or_else(|| metrics.unknown_query())
    }

    /// What a metrics scrape reads from the snapshot: its revision and its pools' use.
    pub fn reading(&self) -> Reading<'_> {
        Reading {
            catalog_revision: self.revision,
            pools: self
                .pools
                .usage()
                .into_iter()
                .map(|(datasource, usage)| PoolReading {
                    datasource,
                    size: usage.size,
                    in_use: usage.in_use,
                    waiting: usage.waiting,
                })
                .collect(),
        }
    }
}

/// Why a snapshot could not be built. The previous one (if any) keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored catalog does not compile:\n{0}")]
    Catalog(CatalogErrors),
    #[error(
        "secrets in the stored catalog do not open with this instance's keys or are references it does not allow:\n{0}"
    )]
    Secrets(CatalogErrors),
    #[error(transparent)]
    Pools(#[from] PoolError),
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Loads the stored catalog and builds the snapshot that serves it, its queries recording
/// into `metrics`.
pub async fn build(
    config: &Config,
    keys: &Arc<Keyring>,
    store: Arc<dyn Store>,
    metrics: &Metrics,
) -> Result<Snapshot, SnapshotError> {
    let (spec, revision) = tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((store.load_catalog()?, store.catalog_revision()?))
    })
    .await??;
    let catalog =
        compile::compile(&spec, config.query_defaults()).map_err(SnapshotError::Catalog)?;
    verify_secrets(&spec, keys, &config.secret_references).map_err(SnapshotError::Secrets)?;
    let pools = Pools::build(&spec, keys, &pool_defaults(config))?;
    let series = query_series(&catalog, metrics);
    Ok(Snapshot {
        spec: Arc::new(spec),
        catalog,
        pools,
        revision,
        series,
    })
}

/// One series per query of `catalog`, at the query's index.
fn query_series(catalog: &CompiledCatalog, metrics: &Metrics) -> Vec<QuerySeries> {
    catalog
        .queries()
        .iter()
        .map(|query| metrics.query_series(&query.app, &query.name))
        .collect()
}

/// Checks that every sealed secret opens for its own owner with `keys` (by the key id it
/// names) and that every secret reference is one `references` allows; all failures are
/// reported, each naming its field. A reference is not read here (that is when its pool is
/// built), so a missing file or variable shows at start-up or reload, naming the reference.
pub fn verify_secrets(
    spec: &CatalogSpec,
    keys: &Keyring,
    references: &SecretReferences,
) -> Result<(), CatalogErrors> {
    let mut problems = match verify_references(spec, references) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.0,
    };
    for (name, datasource) in &spec.datasources {
        for (field, value) in datasource.secret_fields() {
            let Some(sealed) = value.filter(|value| !is_reference(value)) else {
                continue;
            };
            let location = format!("datasources.{name}.{field}");
            let opened = Owner::datasource(name, field).and_then(|owner| keys.open(&owner, sealed));
            if let Err(error) = opened {
                problems.push(CatalogProblem {
                    location,
                    message: error.to_string(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CatalogErrors(problems))
    }
}

/// Checks every secret reference (`env:NAME`, `file:/path`) of `spec` against the allowlist
/// (`SLUICE_SECRET_REFERENCES`); needs no key, so `catalog check` runs it without one.
pub fn verify_references(
    spec: &CatalogSpec,
    references: &SecretReferences,
) -> Result<(), CatalogErrors> {
    let mut problems = Vec::new();
    for (name, datasource) in &spec.datasources {
        for (field, value) in datasource.secret_fields() {
            let Some(reference) = value.filter(|value| is_reference(value)) else {
                continue;
            };
            if let Err(error) = references.check(reference) {
                problems.push(CatalogProblem {
                    location: format!("datasources.{name}.{field}"),
                    message: error.to_string(),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CatalogErrors(problems))
    }
}

/// The instance-wide pool settings of `config`.
pub fn pool_defaults(config: &Config) -> PoolDefaults {
    PoolDefaults {
        pool_size: config.pool_size,
        pool_wait: config.pool_wait,
        egress_allow: config.egress_allow.clone(),
        egress_bind: config.egress_bind.clone(),
        references: config.secret_references.clone(),
        ..PoolDefaults::default()
    }
}

/// Checks the TLS files of every database datasource as building its pool will: the CA
/// bundle and the client certificate read and parsed, and, when `keys` are given, the client
/// key opened (or its reference read) and matched to its certificate. Every problem is reported, each located at
/// its field. Settings that do not fit together are the compiler's to report, and a key
/// that does not open is [`verify_secrets`]'s: both are skipped here.
pub fn verify_tls(
    spec: &CatalogSpec,
    keys: Option<(&Keyring, &SecretReferences)>,
) -> Result<(), CatalogErrors> {
    let mut problems = Vec::new();
    for (name, datasource) in &spec.datasources {
        let (DatasourceSpec::Postgres(net) | DatasourceSpec::Mysql(net)) = datasource else {
            continue;
        };
        let mode = net.tls_mode(crate::egress::is_loopback_host(&net.host));
        if net
            .check_tls(mode, matches!(datasource, DatasourceSpec::Mysql(_)))
            .is_err()
        {
            continue;
        }
        let checked = match (keys, &net.tls_client_key) {
            (Some((keys, references)), Some(value)) => {
                let Ok(Some(opened)) =
                    open_secret(keys, references, name, "tls_client_key", Some(value))
                else {
                    continue;
                };
                DbTls::load(net, mode, Some(&opened)).map(drop)
            }
            _ => DbTls::check_files(net, mode),
        };
        if let Err(error) = checked {
            problems.push(CatalogProblem {
                location: format!("datasources.{name}.{}", error.field()),
                message: error.to_string(),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CatalogErrors(problems))
    }
}
