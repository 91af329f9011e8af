//! The served snapshot: a stored catalog turned into what the request path reads.
//!
//! [`build`] loads the catalog from the store, compiles it (`catalog::compile`), checks that
//! every sealed secret opens for its own owner, and builds the connection pools (which open
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
use crate::config::Config;
use crate::datasource::sqlite::SqlitePathRules;
use crate::datasource::tls::DbTls;
use crate::datasource::{PoolDefaults, PoolError, Pools};
use crate::metrics::{Metrics, PoolReading, QuerySeries, Reading};
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::{Store, StoreError};
use crate::vault::{InstanceKey, Owner};

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
    #[error("sealed secrets in the stored catalog do not open with this instance key:\n{0}")]
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
    key: &Arc<InstanceKey>,
    store: Arc<dyn Store>,
    metrics: &Metrics,
) -> Result<Snapshot, SnapshotError> {
    let (revision, spec) = tokio::task::spawn_blocking(move || store.current_catalog()).await??;
    assemble(config, key, spec, revision, metrics)
}

/// Builds the snapshot serving `spec` as revision `revision` (the catalog API builds it
/// before it stores the revision, so a write that could not serve stores nothing).
pub fn assemble(
    config: &Config,
    key: &Arc<InstanceKey>,
    spec: CatalogSpec,
    revision: i64,
    metrics: &Metrics,
) -> Result<Snapshot, SnapshotError> {
    let catalog =
        compile::compile(&spec, config.query_defaults()).map_err(SnapshotError::Catalog)?;
    verify_secrets(&spec, key).map_err(SnapshotError::Secrets)?;
    verify_sqlite_paths(&spec, config).map_err(SnapshotError::Catalog)?;
    let pools = Pools::build(&spec, key, &pool_defaults(config))?;
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

/// Checks that every sealed secret opens for its own owner under `key`; all failures are
/// reported, each naming its field.
pub fn verify_secrets(spec: &CatalogSpec, key: &InstanceKey) -> Result<(), CatalogErrors> {
    let mut problems = Vec::new();
    for (name, datasource) in &spec.datasources {
        for (field, value) in datasource.secret_fields() {
            let Some(sealed) = value else { continue };
            let location = format!("datasources.{name}.{field}");
            let opened = Owner::datasource(name, field).and_then(|owner| key.open(&owner, sealed));
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

/// The instance-wide pool settings of `config`.
pub fn pool_defaults(config: &Config) -> PoolDefaults {
    PoolDefaults {
        pool_size: config.pool_size,
        pool_wait: config.pool_wait,
        egress_allow: config.egress_allow.clone(),
        egress_bind: config.egress_bind.clone(),
        ..PoolDefaults::default()
    }
}

/// The rules SQLite datasource paths are judged by (`SLUICE_SQLITE_DIRS`, and Sluice's own
/// files, which no datasource may open).
pub fn sqlite_path_rules(config: &Config) -> SqlitePathRules {
    SqlitePathRules {
        allowed_dirs: config.sqlite_dirs.clone(),
        data_dir: config.data_dir.clone(),
        metadata_db: config.metadata_path(),
    }
}

/// Checks every SQLite datasource's path against [`sqlite_path_rules`]: a catalog whose
/// datasource points at the metadata store (or anything of Sluice's) neither applies nor
/// serves. Every problem is reported, each at its datasource's `path`.
pub fn verify_sqlite_paths(spec: &CatalogSpec, config: &Config) -> Result<(), CatalogErrors> {
    let rules = sqlite_path_rules(config);
    let problems: Vec<CatalogProblem> = spec
        .datasources
        .iter()
        .filter_map(|(name, datasource)| match datasource {
            DatasourceSpec::Sqlite(sqlite) => {
                rules.check(&sqlite.path).err().map(|error| CatalogProblem {
                    location: format!("datasources.{name}.path"),
                    message: error.to_string(),
                })
            }
            _ => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CatalogErrors(problems))
    }
}

/// Everything `catalog check`, `apply`, `rollback` and the catalog API verify before a
/// catalog is stored, exactly as serving will: the templates compile, every secret opens
/// for its owner, the database TLS files load, and no SQLite path reaches Sluice's own
/// files. Returns the compiled catalog.
pub fn verify(
    spec: &CatalogSpec,
    config: &Config,
    key: &InstanceKey,
) -> Result<CompiledCatalog, VerifyError> {
    let compiled = compile::compile(spec, config.query_defaults()).map_err(VerifyError::Compile)?;
    verify_secrets(spec, key).map_err(VerifyError::Secrets)?;
    verify_tls(spec, Some(key)).map_err(VerifyError::Tls)?;
    verify_sqlite_paths(spec, config).map_err(VerifyError::Paths)?;
    Ok(compiled)
}

/// Why [`verify`] refused a catalog; each list locates every problem at its field.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the catalog does not compile:\n{0}")]
    Compile(CatalogErrors),
    #[error("sealed secrets do not open with this instance key:\n{0}")]
    Secrets(CatalogErrors),
    #[error("database TLS files cannot be used:\n{0}")]
    Tls(CatalogErrors),
    #[error("SQLite datasource paths are refused:\n{0}")]
    Paths(CatalogErrors),
}

impl VerifyError {
    /// The problems, each located at its field.
    pub fn problems(&self) -> &[CatalogProblem] {
        match self {
            VerifyError::Compile(e)
            | VerifyError::Secrets(e)
            | VerifyError::Tls(e)
            | VerifyError::Paths(e) => &e.0,
        }
    }
}

/// Checks the TLS files of every database datasource as building its pool will: the CA
/// bundle and the client certificate read and parsed, and, when `key` is given, the client
/// key opened and matched to its certificate. Every problem is reported, each located at
/// its field. Settings that do not fit together are the compiler's to report, and a key
/// that does not open is [`verify_secrets`]'s: both are skipped here.
pub fn verify_tls(spec: &CatalogSpec, key: Option<&InstanceKey>) -> Result<(), CatalogErrors> {
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
        let checked = match (key, &net.tls_client_key) {
            (Some(key), Some(sealed)) => {
                let Ok(opened) = Owner::datasource(name, "tls_client_key")
                    .and_then(|owner| key.open(&owner, sealed))
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
