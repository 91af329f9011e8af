//! Compiling a [`CatalogSpec`] into the immutable snapshot the gateway serves.
//!
//! Every template and param schema is compiled here, when a catalog is applied or loaded,
//! so a broken template never reaches serving. All problems are collected, each naming
//! where it is (`apps.shop.queries.orders`), not just the first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::http_template::{CompiledHttp, compile_http};
use crate::catalog::params::ParamSchema;
use crate::catalog::row_security::CompiledRowSecurity;
use crate::catalog::template::{CompiledSql, compile_sql};
use crate::config::QueryDefaults;
use crate::policy::{self, AppPolicy, QueryPolicy};
use crate::spec::checks::{NAME_RULE, is_valid_name};
use crate::spec::{CatalogSpec, DatasourceSpec, QuerySpec, Visibility};
use crate::statement::Dialect;
use crate::vault;

/// A compiled template: SQL for databases, a request description for HTTP APIs.
#[derive(Debug)]
pub enum CompiledTemplate {
    Sql(CompiledSql),
    Http(CompiledHttp),
}

impl CompiledTemplate {
    /// Whether the template binds `{{ user.* }}` (it then needs a signed-in caller).
    pub fn uses_user(&self) -> bool {
        match self {
            CompiledTemplate::Sql(sql) => sql.uses_user(),
            CompiledTemplate::Http(http) => http.uses_user(),
        }
    }
}

/// A query ready to serve.
#[derive(Debug)]
pub struct CompiledQuery {
    /// Its place among the catalog's queries ([`CompiledCatalog::queries`]): once found by
    /// name, a query and what is kept beside the catalog for it (the snapshot's metric
    /// series) are reached by this index, without another lookup.
    pub index: usize,
    pub app: String,
    pub name: String,
    pub datasource: String,
    pub template: CompiledTemplate,
    pub params: ParamSchema,
    pub timeout: Duration,
    pub max_rows: u64,
    /// Grant and limits.
    pub policy: QueryPolicy,
    /// The PostgreSQL role mapping each run is set up with (`row_security`), if any.
    pub row_security: Option<CompiledRowSecurity>,
}

/// A map from app or query names, hashed with foldhash rather than std's SipHash: the
/// request path looks an app and a query up per request (hash flooding needs inserts,
/// and only a catalog inserts names).
pub type NameMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// An app ready to serve.
#[derive(Debug)]
pub struct CompiledApp {
    pub visibility: Visibility,
    /// Allowed IPs, CORS and header overrides.
    pub policy: Arc<AppPolicy>,
    pub queries: NameMap<Arc<CompiledQuery>>,
}

/// The compiled catalog: the lookup table of the request path.
#[derive(Debug, Default)]
pub struct CompiledCatalog {
    pub apps: NameMap<CompiledApp>,
    /// Every query, at its [`CompiledQuery::index`].
    by_index: Vec<Arc<CompiledQuery>>,
}

impl CompiledCatalog {
    /// Every query, in [`CompiledQuery::index`] order (`0..`).
    pub fn queries(&self) -> &[Arc<CompiledQuery>] {
        &self.by_index
    }

    /// The query at `index`, once a lookup by name has found it (the edge looks a query up
    /// once and hands its index on).
    pub fn query_at(&self, index: usize) -> Option<&Arc<CompiledQuery>> {
        self.by_index.get(index)
    }

    /// O(1) lookup of a query by app and name.
    pub fn query(&self, app: &str, query: &str) -> Option<(&CompiledApp, &Arc<CompiledQuery>)> {
        let compiled_app = self.apps.get(app)?;
        compiled_app.queries.get(query).map(|q| (compiled_app, q))
    }
}

/// One problem in a catalog, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct CatalogProblem {
    pub location: String,
    pub message: String,
}

/// Every problem found in a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct CatalogErrors(pub Vec<CatalogProblem>);

/// The SQL dialect a datasource speaks (`None` for HTTP APIs).
pub fn dialect_of(spec: &DatasourceSpec) -> Option<Dialect> {
    match spec {
        DatasourceSpec::Postgres(_) => Some(Dialect::Postgres),
        DatasourceSpec::Mysql(_) => Some(Dialect::MySql),
        DatasourceSpec::Sqlite(_) => Some(Dialect::Sqlite),
        DatasourceSpec::Http(_) => None,
    }
}

/// Compiles a query's template for its datasource's kind.
fn compile_template(
    query: &QuerySpec,
    datasource: &DatasourceSpec,
) -> Result<CompiledTemplate, CatalogProblem> {
    let problem = |field: &str, message: String| CatalogProblem {
        location: field.to_string(),
        message,
    };
    match (dialect_of(datasource), &query.sql, &query.http) {
        (Some(dialect), Some(sql), None) => compile_sql(sql, dialect, &query.params)
            .map(CompiledTemplate::Sql)
            .map_err(|e| problem("sql", e.to_string())),
        (None, None, Some(http)) => {
            let DatasourceSpec::Http(spec) = datasource else {
                unreachable!("only HTTP datasources have no dialect")
            };
            let allowed = spec
                .allowed_methods()
                .map_err(|e| problem("http.method", e))?;
            compile_http(http, &query.params, &allowed)
                .map(CompiledTemplate::Http)
                .map_err(|e| problem(&format!("http.{}", e.location), e.message))
        }
        (Some(_), _, _) => Err(problem(
            "sql",
            "a query on a database datasource needs `sql` (and no `http`)".into(),
        )),
        (None, _, _) => Err(problem(
            "http",
            "a query on an HTTP datasource needs `http` (and no `sql`)".into(),
        )),
    }
}

/// Compiles every query; fails with all problems found.
pub fn compile(
    spec: &CatalogSpec,
    defaults: QueryDefaults,
) -> Result<CompiledCatalog, CatalogErrors> {
    let mut problems = Vec::new();
    let mut problem =
        |location: String, message: String| problems.push(CatalogProblem { location, message });
    for (name, datasource) in &spec.datasources {
        let location = format!("datasources.{name}");
        if !is_valid_name(name) {
            problem(location.clone(), name_rule());
        }
        let egress_allow = datasource.egress_allow().iter().map(String::as_str);
        if let Err(error) = crate::egress::parse_cidrs(egress_allow) {
            problem(format!("{location}.egress_allow"), error.to_string());
        }
        if let DatasourceSpec::Http(http) = datasource
            && let Err(message) = http.check()
        {
            problem(location.clone(), message);
        }
        if let DatasourceSpec::Postgres(net) | DatasourceSpec::Mysql(net) = datasource {
            let mode = net.tls_mode(crate::egress::is_loopback_host(&net.host));
            let mysql = matches!(datasource, DatasourceSpec::Mysql(_));
            if let Err((field, message)) = net.check_tls(mode, mysql) {
                problem(format!("{location}.{field}"), message);
            }
        }
        for (field, message) in crate::catalog::row_security::check_datasource(datasource) {
            problem(format!("{location}.{field}"), message);
        }
        for (field, value) in datasource.secret_fields() {
            if let Some(value) = value
                && !vault::is_sealed(value)
            {
                // A reference's form is checked here; whether the instance allows it is
                // `snapshot::verify_references`' call (it depends on SLUICE_SECRET_REFERENCES).
                let message = if crate::config::is_reference(value) {
                    crate::config::SecretReference::parse(value)
                        .err()
                        .map(|why| format!("not a valid secret reference: {why}"))
                } else {
                    Some(format!(
                        "secrets must be sealed, never written in plain text; run \
                         `sluice secret seal --owner datasource/{name}/{field}` and paste its \
                         output (or use an `env:`/`file:` reference the admin allows in \
                         SLUICE_SECRET_REFERENCES)"
                    ))
                };
                if let Some(message) = message {
                    problem(format!("{location}.{field}"), message);
                }
            }
        }
    }
    let mut apps = NameMap::default();
    let mut by_index = Vec::new();
    for (app_name, app) in &spec.apps {
        if !is_valid_name(app_name) {
            problem(format!("apps.{app_name}"), name_rule());
        }
        let app_policy = policy::compile_app(app).unwrap_or_else(|found| {
            for (field, message) in found {
                problem(format!("apps.{app_name}.{field}"), message);
            }
            AppPolicy::default()
        });
        let mut queries = NameMap::default();
        for (query_name, query) in &app.queries {
            let location = format!("apps.{app_name}.queries.{query_name}");
            if !is_valid_name(query_name) {
                problem(location.clone(), name_rule());
            }
            let Some(datasource) = spec.datasources.get(&query.datasource) else {
                problem(
                    format!("{location}.datasource"),
                    format!("no datasource named `{}`", query.datasource),
                );
                continue;
            };
            let params = match ParamSchema::compile(&query.params) {
                Ok(params) => params,
                Err(error) => {
                    problem(format!("{location}.params"), error.to_string());
                    continue;
                }
            };
            let template = match compile_template(query, datasource) {
                Ok(template) => template,
                Err(error) => {
                    problem(format!("{location}.{}", error.location), error.message);
                    continue;
                }
            };
            let query_policy =
                policy::compile_query(app_name, query_name, app, query, defaults.limits)
                    .unwrap_or_else(|found| {
                        for (field, message) in found {
                            problem(format!("{location}.{field}"), message);
                        }
                        QueryPolicy::default()
                    });
            let row_security = crate::catalog::row_security::compile_for_query(
                query,
                &query.datasource,
                datasource,
            )
            .unwrap_or_else(|(field, message)| {
                // A datasource's own mapping is reported once, under the datasource.
                if query.row_security.is_some() {
                    problem(format!("{location}.{field}"), message);
                }
                None
            });
            if query.max_rows == Some(0) {
                problem(format!("{location}.max_rows"), "must be at least 1".into());
            }
            if query.timeout_ms == Some(0) {
                problem(
                    format!("{location}.timeout_ms"),
                    "must be at least 1".into(),
                );
            }
            let compiled = Arc::new(CompiledQuery {
                index: by_index.len(),
                app: app_name.clone(),
                name: query_name.clone(),
                datasource: query.datasource.clone(),
                template,
                params,
                timeout: query
                    .timeout_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.timeout),
                max_rows: query.max_rows.unwrap_or(defaults.max_rows),
                policy: query_policy,
                row_security,
            });
            by_index.push(compiled.clone());
            queries.insert(query_name.clone(), compiled);
        }
        apps.insert(
            app_name.clone(),
            CompiledApp {
                visibility: app.visibility,
                policy: Arc::new(app_policy),
                queries,
            },
        );
    }
    if problems.is_empty() {
        Ok(CompiledCatalog { apps, by_index })
    } else {
        Err(CatalogErrors(problems))
    }
}

fn name_rule() -> String {
    NAME_RULE.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_has_its_own_index_and_is_found_by_it() {
        let spec = crate::spec::yaml::parse(
            "datasources:\n  db:\n    kind: sqlite\n    path: /tmp/unused.db\n\
             apps:\n  a:\n    queries:\n      one: { datasource: db, sql: SELECT 1 }\n      \
             two: { datasource: db, sql: SELECT 2 }\n  b:\n    queries:\n      \
             one: { datasource: db, sql: SELECT 3 }\n",
        )
        .unwrap();
        let catalog = compile(&spec, QueryDefaults::default()).unwrap();
        assert_eq!(catalog.queries().len(), 3);
        for (index, query) in catalog.queries().iter().enumerate() {
            assert_eq!(query.index, index);
            let (_, by_name) = catalog.query(&query.app, &query.name).unwrap();
            assert!(Arc::ptr_eq(by_name, query));
            assert!(Arc::ptr_eq(catalog.query_at(index).unwrap(), query));
        }
        assert!(catalog.query_at(3).is_none());
        assert!(CompiledCatalog::default().query_at(0).is_none());
    }
}
