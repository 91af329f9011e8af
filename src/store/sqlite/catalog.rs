//! [`CatalogStore`] for the SQLite store: the `datasources`, `apps`, `queries` and
//! `catalog_revisions` tables. A catalog apply is one IMMEDIATE transaction, which also
//! records the revision with the whole catalog (JSON, secrets sealed as applied).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, decode, sqlite};
use crate::spec::{AppSpec, CatalogSpec, DatasourceSpec, QuerySpec};
use crate::store::StoreError;
use crate::store::catalog::{CatalogRevision, CatalogStore};

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

/// Fills in the content of the latest revision from the catalog tables, when the history
/// migration runs on a store whose revisions kept none: so the catalog serving at the
/// upgrade can be diffed against and rolled back to.
pub(super) fn keep_current_in_history(conn: &Connection) -> Result<(), StoreError> {
    let json = serde_json::to_string(&load(conn)?).expect("specs serialise");
    conn.execute(
        "UPDATE catalog_revisions SET spec = ?1 \
         WHERE id = (SELECT max(id) FROM catalog_revisions)",
        [json],
    )
    .map_err(sqlite("keeping the current catalog in its revision"))?;
    Ok(())
}

const REVISION_COLUMNS: &str = "id, applied_at, source, spec";

fn revision_from_row(row: &Row<'_>) -> rusqlite::Result<Result<CatalogRevision, StoreError>> {
    let id: i64 = row.get(0)?;
    let spec = match row.get::<_, Option<String>>(3)? {
        Some(json) => match decode("catalog revision", &id.to_string(), &json) {
            Ok(spec) => Some(spec),
            Err(error) => return Ok(Err(error)),
        },
        None => None,
    };
    Ok(Ok(CatalogRevision {
        id,
        applied_at: row.get(1)?,
        source: row.get(2)?,
        spec,
    }))
}

/// The current catalog, from the catalog tables.
fn load(conn: &Connection) -> Result<CatalogSpec, StoreError> {
    let mut spec = CatalogSpec::default();
    let mut stmt = conn
        .prepare("SELECT name, spec FROM datasources ORDER BY name")
        .map_err(sqlite("reading datasources"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sqlite("reading datasources"))?;
    for row in rows {
        let (name, json) = row.map_err(sqlite("reading datasources"))?;
        let datasource: DatasourceSpec = decode("datasource", &name, &json)?;
        spec.datasources.insert(name, datasource);
    }
    let mut stmt = conn
        .prepare("SELECT name, visibility, spec FROM apps ORDER BY name")
        .map_err(sqlite("reading apps"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(sqlite("reading apps"))?;
    for row in rows {
        let (name, visibility, json) = row.map_err(sqlite("reading apps"))?;
        // Apps stored before the policy column have only a visibility.
        let mut app: AppSpec = match json {
            Some(json) => decode("app", &name, &json)?,
            None => AppSpec::default(),
        };
        app.visibility = decode("app", &name, &format!("\"{visibility}\""))?;
        app.queries = Default::default();
        spec.apps.insert(name, app);
    }
    let mut stmt = conn
        .prepare("SELECT app, name, spec FROM queries ORDER BY app, name")
        .map_err(sqlite("reading queries"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .map_err(sqlite("reading queries"))?;
    for row in rows {
        let (app, name, json) = row.map_err(sqlite("reading queries"))?;
        let query: QuerySpec = decode("query", &format!("{app}/{name}"), &json)?;
        spec.apps
            .entry(app)
            .or_default()
            .queries
            .insert(name, query);
    }
    Ok(spec)
}

impl CatalogStore for SqliteStore {
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError> {
        load(&self.lock())
    }

    fn current_catalog(&self) -> Result<(i64, CatalogSpec), StoreError> {
        let mut conn = self.lock();
        // One read transaction: the revision and the tables as one state, even if another
        // process applies in between.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
            .map_err(sqlite("reading the catalog"))?;
        let revision = latest_revision(&tx)?;
        let spec = load(&tx)?;
        tx.commit().map_err(sqlite("reading the catalog"))?;
        Ok((revision, spec))
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
        latest_revision(&self.lock())
    }

    fn catalog_history(&self, limit: u32) -> Result<Vec<CatalogRevision>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {REVISION_COLUMNS} FROM catalog_revisions ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(sqlite("reading the catalog history"))?;
        let rows = stmt
            .query_map([limit], revision_from_row)
            .map_err(sqlite("reading the catalog history"))?;
        let mut revisions = Vec::new();
        for row in rows {
            revisions.push(row.map_err(sqlite("reading the catalog history"))??);
        }
        Ok(revisions)
    }
    fn catalog_revision_at(&self, id: i64) -> Result<Option<CatalogRevision>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {REVISION_COLUMNS} FROM catalog_revisions WHERE id = ?1"),
                [id],
                revision_from_row,
            )
            .optional()
            .map_err(sqlite("reading a catalog revision"))?
            .transpose()
    }
}

/// The latest revision (0 when none was applied).
fn latest_revision(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("SELECT max(id) FROM catalog_revisions", [], |row| {
        row.get::<_, Option<i64>>(0)
    })
    .optional()
    .map(|value| value.flatten().unwrap_or(0))
    .map_err(sqlite("reading the revision"))
}

impl SqliteStore {
    /// Replaces the catalog tables and records the revision, in one IMMEDIATE transaction;
    /// with `expected`, only if the latest revision is still that one.
    fn replace(
        &self,
        spec: &CatalogSpec,
        source: &str,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: the write lock up front, as for account changes (see `rows::immediate`),
        // so the revision read below cannot move before the commit.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite("starting the apply"))?;
        if let Some(expected) = expected {
            let current = latest_revision(&tx)?;
            if current != expected {
                return Err(StoreError::RevisionMoved { expected, current });
            }
        }
        let at = now();
        tx.execute_batch("DELETE FROM queries; DELETE FROM apps; DELETE FROM datasources;")
            .map_err(sqlite("clearing the catalog"))?;
        for (name, datasource) in &spec.datasources {
            let json = serde_json::to_string(datasource).expect("specs serialise");
            tx.execute(
                "INSERT INTO datasources (name, kind, spec, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, kind_name(datasource), json, at],
            )
            .map_err(sqlite("writing a datasource"))?;
        }
        for (name, app) in &spec.apps {
            let visibility = serde_json::to_value(app.visibility).expect("specs serialise");
            let policy = AppSpec {
                queries: Default::default(),
                ..app.clone()
            };
            let json = serde_json::to_string(&policy).expect("specs serialise");
            tx.execute(
                "INSERT INTO apps (name, visibility, spec, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, visibility.as_str().unwrap_or("private"), json, at],
            )
            .map_err(sqlite("writing an app"))?;
            for (query_name, query) in &app.queries {
                let json = serde_json::to_string(query).expect("specs serialise");
                tx.execute(
                    "INSERT INTO queries (app, name, datasource, spec, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, query_name, query.datasource, json, at],
                )
                .map_err(sqlite("writing a query"))?;
            }
        }
        let whole = serde_json::to_string(spec).expect("specs serialise");
        tx.execute(
            "INSERT INTO catalog_revisions (applied_at, source, spec) VALUES (?1, ?2, ?3)",
            params![at, source, whole],
        )
        .map_err(sqlite("recording the revision"))?;
        let revision = tx.last_insert_rowid();
        tx.commit().map_err(sqlite("committing the apply"))?;
        Ok(revision)
    }
}
