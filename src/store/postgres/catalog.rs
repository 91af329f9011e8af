//! [`CatalogStore`] for the PostgreSQL store: the `datasources`, `apps`, `queries` and
//! `catalog_revisions` tables. An apply is one transaction under the catalog's advisory
//! lock ([`CATALOG_LOCK`]): a conditional apply's check of the latest revision and its write
//! are one step across replicas, and revision ids are the latest plus one, without gaps. A
//! committed apply notifies `sluice_catalog` ([`super::listen`]), so every replica reloads
//! at once.

use tokio_postgres::Row;

use super::rows::Db;
use super::{CATALOG_LOCK, Finish, PostgresStore, decode, pg};
use crate::spec::{AppSpec, CatalogSpec, DatasourceSpec, QuerySpec};
use crate::store::StoreError;
use crate::store::catalog::{CatalogChanges, CatalogRevision, CatalogStore};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn kind_name(spec: &DatasourceSpec) -> &'static str {
    match spec {
        DatasourceSpec::Postgres(_) => "postgres",
        DatasourceSpec::Mysql(_) => "mysql",
        DatasourceSpec::Sqlite(_) => "sqlite",
        DatasourceSpec::Http(_) => "http",
    }
}

const REVISION_COLUMNS: &str = "id, applied_at, source, spec";

fn revision_from_row(row: &Row) -> Result<CatalogRevision, StoreError> {
    let id: i64 = row.get(0);
    let spec = match row.get::<_, Option<&str>>(3) {
        Some(json) => Some(decode("catalog revision", &id.to_string(), json)?),
        None => None,
    };
    Ok(CatalogRevision {
        id,
        applied_at: row.get(1),
        source: row.get(2),
        spec,
    })
}

/// The current catalog, from the catalog tables.
async fn load(db: &impl Db) -> Result<CatalogSpec, StoreError> {
    let mut spec = CatalogSpec::default();
    for row in db
        .query("SELECT name, spec FROM datasources", &[])
        .await
        .map_err(pg("reading datasources"))?
    {
        let name: String = row.get(0);
        let datasource: DatasourceSpec = decode("datasource", &name, row.get::<_, &str>(1))?;
        spec.datasources.insert(name, datasource);
    }
    for row in db
        .query("SELECT name, visibility, spec FROM apps", &[])
        .await
        .map_err(pg("reading apps"))?
    {
        let name: String = row.get(0);
        let visibility: &str = row.get(1);
        let mut app: AppSpec = match row.get::<_, Option<&str>>(2) {
            Some(json) => decode("app", &name, json)?,
            None => AppSpec::default(),
        };
        app.visibility = decode("app", &name, &format!("\"{visibility}\""))?;
        app.queries = Default::default();
        spec.apps.insert(name, app);
    }
    for row in db
        .query("SELECT app, name, spec FROM queries", &[])
        .await
        .map_err(pg("reading queries"))?
    {
        let app: String = row.get(0);
        let name: String = row.get(1);
        let query: QuerySpec = decode("query", &format!("{app}/{name}"), row.get::<_, &str>(2))?;
        spec.apps
            .entry(app)
            .or_default()
            .queries
            .insert(name, query);
    }
    Ok(spec)
}

/// The latest revision (0 when none was applied).
async fn latest_revision(db: &impl Db) -> Result<i64, StoreError> {
    Ok(db
        .query_one("SELECT coalesce(max(id), 0) FROM catalog_revisions", &[])
        .await
        .map_err(pg("reading the revision"))?
        .get(0))
}

/// Takes the catalog's advisory lock until the transaction ends.
pub(super) async fn lock_catalog(db: &impl Db) -> Result<(), StoreError> {
    db.query_one("SELECT pg_advisory_xact_lock($1)", &[&CATALOG_LOCK])
        .await
        .map_err(pg("locking the catalog"))?;
    Ok(())
}

impl CatalogStore for PostgresStore {
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError> {
        self.read("reading the catalog", async |tx| load(tx).await)
    }

    fn current_catalog(&self) -> Result<(i64, CatalogSpec), StoreError> {
        // REPEATABLE READ: the revision and the tables as one state, whatever another
        // replica applies in between.
        self.read("reading the catalog", async |tx| {
            let revision = latest_revision(tx).await?;
            Ok((revision, load(tx).await?))
        })
    }

    fn replace_catalog(&self, spec: &CatalogSpec, source: &str) -> Result<i64, StoreError> {
        self.replace(spec, source, None)
    }

    fn replace_catalog_at(
        &self,
        spec: &CatalogSpec,
        source: &str,
        expected: i64,
    ) -> Result<i64, StoreError> {
        self.replace(spec, source, Some(expected))
    }

    fn catalog_revision(&self) -> Result<i64, StoreError> {
        self.with_client(async |db| latest_revision(db).await)
    }

    fn catalog_history(&self, limit: u32) -> Result<Vec<CatalogRevision>, StoreError> {
        self.with_client(async |db| {
            db.query(
                &format!(
                    "SELECT {REVISION_COLUMNS} FROM catalog_revisions ORDER BY id DESC LIMIT $1"
                ),
                &[&i64::from(limit)],
            )
            .await
            .map_err(pg("reading the catalog history"))?
            .iter()
            .map(revision_from_row)
            .collect()
        })
    }

    fn catalog_changes(&self) -> Option<CatalogChanges> {
        Some(self.catalog_listener())
    }

    fn catalog_revision_at(&self, id: i64) -> Result<Option<CatalogRevision>, StoreError> {
        self.with_client(async |db| {
            db.query_opt(
                &format!("SELECT {REVISION_COLUMNS} FROM catalog_revisions WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg("reading a catalog revision"))?
            .as_ref()
            .map(revision_from_row)
            .transpose()
        })
    }
}

impl PostgresStore {
    /// Replaces the catalog tables and records the revision, in one transaction under the
    /// catalog lock; with `expected`, only if the latest revision is still that one.
    fn replace(
        &self,
        spec: &CatalogSpec,
        source: &str,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write("committing the apply", async |tx| {
            lock_catalog(tx).await?;
            let current = latest_revision(tx).await?;
            if let Some(expected) = expected
                && current != expected
            {
                return Err(StoreError::RevisionMoved { expected, current });
            }
            let at = now();
            tx.batch_execute("DELETE FROM queries; DELETE FROM apps; DELETE FROM datasources;")
                .await
                .map_err(pg("clearing the catalog"))?;
            for (name, datasource) in &spec.datasources {
                let json = serde_json::to_string(datasource).expect("specs serialise");
                tx.execute(
                    "INSERT INTO datasources (name, kind, spec, updated_at) VALUES ($1, $2, $3, $4)",
                    &[name, &kind_name(datasource), &json, &at],
                )
                .await
                .map_err(pg("writing a datasource"))?;
            }
            for (name, app) in &spec.apps {
                let visibility = serde_json::to_value(app.visibility).expect("specs serialise");
                let policy = AppSpec {
                    queries: Default::default(),
                    ..app.clone()
                };
                let json = serde_json::to_string(&policy).expect("specs serialise");
                tx.execute(
                    "INSERT INTO apps (name, visibility, spec, updated_at) VALUES ($1, $2, $3, $4)",
                    &[
                        name,
                        &visibility.as_str().unwrap_or("private"),
                        &json,
                        &at,
                    ],
                )
                .await
                .map_err(pg("writing an app"))?;
                for (query_name, query) in &app.queries {
                    let json = serde_json::to_string(query).expect("specs serialise");
                    tx.execute(
                        "INSERT INTO queries (app, name, datasource, spec, updated_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[name, query_name, &query.datasource, &json, &at],
                    )
                    .await
                    .map_err(pg("writing a query"))?;
                }
            }
            let whole = serde_json::to_string(spec).expect("specs serialise");
            let revision = current + 1;
            tx.execute(
                "INSERT INTO catalog_revisions (id, applied_at, source, spec) \
                 VALUES ($1, $2, $3, $4)",
                &[&revision, &at, &source, &whole],
            )
            .await
            .map_err(pg("recording the revision"))?;
            // Delivered to every listening replica when (and only if) this commits.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&super::CATALOG_CHANNEL, &revision.to_string()],
            )
            .await
            .map_err(pg("announcing the revision"))?;
            Ok(Finish::Commit(revision))
        })
    }
}
