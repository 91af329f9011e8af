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
//! Each query's result columns are described here too (`datasource::Datasource::describe`,
//! prepared, never run), for the per-app OpenAPI document; a describe that fails leaves
//! them unknown and never stops the snapshot.
//!
//! Knows nothing about HTTP. Never logs a secret; errors name the field, not the value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::compile::{
    self, CatalogErrors, CatalogProblem, CompiledCatalog, CompiledTemplate,
};
use crate::config::{Config, SecretReferences, is_reference};
use crate::datasource::sqlite::SqlitePathRules;
use crate::datasource::tls::DbTls;
use crate::datasource::{DatasourceError, PoolDefaults, PoolError, Pools, open_secret};
use crate::metrics::{Metrics, PoolReading, QuerySeries, Reading};
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::statement::{Described, RenderedSql, ResultColumn};
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
    /// Each query's result columns as its datasource described them, at its index.
    described: Vec<Described>,
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

    /// The result columns of the query at `index`, as described when the snapshot was
    /// built (`Unknown` for an index it does not have).
    pub fn described(&self, index: usize) -> &Described {
        const UNKNOWN: &Described = &Described::Unknown;
        self.described.get(index).unwrap_or(UNKNOWN)
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
    let (revision, spec) = tokio::task::spawn_blocking(move || store.current_catalog()).await??;
    assemble(config, keys, spec, revision, metrics).await
}

/// Builds the snapshot serving `spec` as revision `revision` (the catalog API builds it
/// before it stores the revision, so a write that could not serve stores nothing).
pub async fn assemble(
    config: &Config,
    keys: &Arc<Keyring>,
    spec: CatalogSpec,
    revision: i64,
    metrics: &Metrics,
) -> Result<Snapshot, SnapshotError> {
    let catalog =
        compile::compile(&spec, config.query_defaults()).map_err(SnapshotError::Catalog)?;
    verify_secrets(&spec, keys, &config.secret_references).map_err(SnapshotError::Secrets)?;
    verify_sqlite_paths(&spec, config).map_err(SnapshotError::Catalog)?;
    let pools = Pools::build(&spec, keys, &pool_defaults(config))?;
    let series = query_series(&catalog, metrics);
    let described = describe(&catalog, &pools).await;
    Ok(Snapshot {
        spec: Arc::new(spec),
        catalog,
        pools,
        revision,
        series,
        described,
    })
}

/// How long describing one datasource's statements may take while a snapshot is built;
/// past it, that datasource's queries keep unknown columns and the snapshot serves anyway.
pub const DESCRIBE_BUDGET: Duration = Duration::from_secs(5);

/// Describes the result columns of every query (the per-app OpenAPI document), one
/// connection per datasource, the datasources at once, each within [`DESCRIBE_BUDGET`].
/// A failure never stops the snapshot: those queries' columns stay unknown, and it is
/// logged once per datasource (or per query whose statement did not prepare), by name and
/// error class, never with SQL text or a value.
async fn describe(catalog: &CompiledCatalog, pools: &Pools) -> Vec<Described> {
    let mut described = vec![Described::Unknown; catalog.queries().len()];
    // Per datasource: the queries to describe and their statements, in order.
    let mut work: BTreeMap<&str, Vec<(usize, Vec<RenderedSql>)>> = BTreeMap::new();
    for query in catalog.queries() {
        match &query.template {
            CompiledTemplate::Http(_) => described[query.index] = Described::Http,
            CompiledTemplate::Sql(sql) => match sql.describe_statements() {
                Some(statements) => work
                    .entry(query.datasource.as_str())
                    .or_default()
                    .push((query.index, statements)),
                None => tracing::info!(
                    app = %query.app,
                    query = %query.name,
                    "Result columns left unknown: the query's closed-list params give too many statements to describe"
                ),
            },
        }
    }
    let runs = work.into_iter().filter_map(|(name, queries)| {
        let source = pools.get(name)?.clone();
        Some(async move {
            let statements: Vec<RenderedSql> = queries
                .iter()
                .flat_map(|(_, statements)| statements.iter().cloned())
                .collect();
            let outcome = tokio::time::timeout(DESCRIBE_BUDGET, source.describe(statements)).await;
            (name, queries, outcome)
        })
    });
    for (name, queries, outcome) in futures_util::future::join_all(runs).await {
        let results = match outcome {
            Ok(Ok(results)) => results,
            Ok(Err(error)) => {
                tracing::warn!(
                    datasource = %name,
                    error_class = error.class(),
                    queries = queries.len(),
                    "Describing result columns failed: the datasource's queries keep unknown columns in their OpenAPI documents"
                );
                continue;
            }
            Err(_) => {
                tracing::warn!(
                    datasource = %name,
                    queries = queries.len(),
                    budget_ms = DESCRIBE_BUDGET.as_millis() as u64,
                    "Describing result columns took too long: the datasource's queries keep unknown columns in their OpenAPI documents"
                );
                continue;
            }
        };
        let catalog_queries = catalog.queries();
        let mut results = results.into_iter();
        for (index, statements) in queries {
            let mut columns: Option<Result<Vec<ResultColumn>, DatasourceError>> = None;
            for _ in 0..statements.len() {
                let Some(next) = results.next() else { break };
                columns = Some(match (columns, next) {
                    (None, next) => next,
                    (Some(Err(error)), _) | (Some(Ok(_)), Err(error)) => Err(error),
                    (Some(Ok(first)), Ok(next)) if first == next => Ok(first),
                    (Some(Ok(_)), Ok(_)) => Err(DatasourceError::Internal {
                        class: "variants_differ",
                    }),
                });
            }
            let query = &catalog_queries[index];
            match columns {
                Some(Ok(columns)) => described[index] = Described::Columns(columns),
                Some(Err(error)) => tracing::warn!(
                    datasource = %name,
                    app = %query.app,
                    query = %query.name,
                    error_class = error.class(),
                    "Describing a query's result columns failed: its OpenAPI document leaves them unknown"
                ),
                None => {}
            }
        }
    }
    described
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
    keys: &Keyring,
) -> Result<CompiledCatalog, VerifyError> {
    let compiled = compile::compile(spec, config.query_defaults()).map_err(VerifyError::Compile)?;
    let references = &config.secret_references;
    verify_secrets(spec, keys, references).map_err(VerifyError::Secrets)?;
    verify_tls(spec, Some((keys, references))).map_err(VerifyError::Tls)?;
    verify_sqlite_paths(spec, config).map_err(VerifyError::Paths)?;
    Ok(compiled)
}

/// Why [`verify`] refused a catalog; each list locates every problem at its field.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the catalog does not compile:\n{0}")]
    Compile(CatalogErrors),
    #[error(
        "secrets do not open with this instance's keys or are references it does not allow:\n{0}"
    )]
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
