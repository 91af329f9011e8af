//! The embedded SQLite metadata store: WAL mode, migrations by `PRAGMA user_version`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::{MetadataStore, StoreError};
use crate::spec::{AppSpec, CatalogSpec, DatasourceSpec, QuerySpec};

mod auth;

/// Migrations in order; entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE datasources (
        name       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        spec       TEXT NOT NULL,   -- JSON; secret fields hold sealed values only
        updated_at TEXT NOT NULL
    );
    CREATE TABLE apps (
        name       TEXT PRIMARY KEY,
        visibility TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE queries (
        app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        datasource TEXT NOT NULL REFERENCES datasources(name),
        spec       TEXT NOT NULL,   -- JSON
        updated_at TEXT NOT NULL,
        PRIMARY KEY (app, name)
    );
    CREATE TABLE catalog_revisions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        applied_at TEXT NOT NULL,
        source     TEXT NOT NULL
    );
"#,
    // Authentication (see `auth.rs`). Times are Unix seconds. `app_members` has no foreign key
    // to `apps`, because a catalog apply deletes and re-inserts every app and membership must
    // survive it; `audit_events` has none to `users`, because the log outlives accounts.
    r#"
    CREATE TABLE users (
        id             TEXT PRIMARY KEY,
        email          TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
        "groups"       TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
        disabled       INTEGER NOT NULL DEFAULT 0,
        password_hash  TEXT,
        failed_logins  INTEGER NOT NULL DEFAULT 0,
        locked_until   INTEGER,
        totp_secret    TEXT,                         -- sealed
        mfa_enabled    INTEGER NOT NULL DEFAULT 0,
        totp_last_step INTEGER,
        created_at     INTEGER NOT NULL,
        last_login_at  INTEGER
    );
    CREATE TABLE recovery_codes (
        user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at   INTEGER,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE sessions (
        token_hash       TEXT PRIMARY KEY,
        public_id        TEXT NOT NULL UNIQUE,
        user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at       INTEGER NOT NULL,
        last_seen_at     INTEGER NOT NULL,
        authenticated_at INTEGER NOT NULL,
        ip               TEXT NOT NULL,
        user_agent       TEXT NOT NULL
    );
    CREATE INDEX sessions_user_id ON sessions(user_id);
    CREATE TABLE one_time_tokens (
        token_hash TEXT PRIMARY KEY,
        purpose    TEXT NOT NULL,
        user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
        email      TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    );
    CREATE INDEX one_time_tokens_user_id ON one_time_tokens(user_id);
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        key_hash     TEXT NOT NULL,
        user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL,                  -- JSON
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX api_keys_user_id ON api_keys(user_id);
    CREATE TABLE app_members (
        app      TEXT NOT NULL,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (app, user_id)
    );
    CREATE INDEX app_members_user_id ON app_members(user_id);
    CREATE TABLE audit_events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        event      TEXT NOT NULL,
        user_id    TEXT,
        email      TEXT,
        actor      TEXT,
        ip         TEXT,
        user_agent TEXT,
        reason     TEXT,
        details    TEXT
    );
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
"#,
    // App-level policy (grants, CORS, headers, limits, allowed IPs) as JSON.
    r#"
    ALTER TABLE apps ADD COLUMN spec TEXT;
"#,
];

/// The SQLite-backed store. One connection behind a mutex: metadata writes are rare and
/// reads happen at start-up and reload, never per request.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path).map_err(sqlite("opening the database"))?;
        Self::from_connection(conn)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(sqlite("opening the database"))?;
        Self::from_connection(conn)
    }

    fn from_connection(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite("enabling WAL"))?;
        // WAL with synchronous=NORMAL: commits are atomic and survive a process crash; an
        // OS crash or power loss may drop the last commits, never corrupt the file. It keeps a
        // sign-in's writes from costing an fsync each (which also kept the timing of failed
        // sign-ins on known and unknown accounts apart).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite("setting synchronous mode"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite("enabling foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite("setting the busy timeout"))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite("reading the schema version"))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sqlite("starting a migration"))?;
        tx.execute_batch(migration)
            .map_err(sqlite("running a migration"))?;
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(sqlite("recording the schema version"))?;
        tx.commit().map_err(sqlite("committing a migration"))?;
    }
    Ok(())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    name: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|source| StoreError::Corrupt {
        what,
        name: name.to_string(),
        source,
    })
}

fn kind_name(spec: &DatasourceSpec) -> &'static str {
    match spec {
        DatasourceSpec::Postgres(_) => "postgres",
        DatasourceSpec::Mysql(_) => "mysql",
        DatasourceSpec::Sqlite(_) => "sqlite",
        DatasourceSpec::Http(_) => "http",
    }
}

impl MetadataStore for SqliteStore {
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError> {
        let conn = self.lock();
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

    fn replace_catalog(&self, spec: &CatalogSpec, source: &str) -> Result<i64, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: the write lock up front, as for account changes (see `sqlite::auth`).
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite("starting the apply"))?;
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
        tx.execute(
            "INSERT INTO catalog_revisions (applied_at, source) VALUES (?1, ?2)",
            params![at, source],
        )
        .map_err(sqlite("recording the revision"))?;
        let revision = tx.last_insert_rowid();
        tx.commit().map_err(sqlite("committing the apply"))?;
        Ok(revision)
    }

    fn catalog_revision(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT max(id) FROM catalog_revisions", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()
        .map(|value| value.flatten().unwrap_or(0))
        .map_err(sqlite("reading the revision"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;

    const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int, required: true }\n";

    #[test]
    fn catalog_round_trips_and_replaces_whole() {
        let store = SqliteStore::in_memory().unwrap();
        assert_eq!(store.catalog_revision().unwrap(), 0);
        let spec = yaml::parse(CATALOG).unwrap();
        assert_eq!(store.replace_catalog(&spec, "test").unwrap(), 1);
        assert_eq!(store.load_catalog().unwrap(), spec);
        store
            .replace_catalog(&CatalogSpec::default(), "test")
            .unwrap();
        assert_eq!(store.load_catalog().unwrap(), CatalogSpec::default());
        assert_eq!(store.catalog_revision().unwrap(), 2);
    }

    #[test]
    fn failed_apply_leaves_the_previous_catalog() {
        let store = SqliteStore::in_memory().unwrap();
        let spec = yaml::parse(CATALOG).unwrap();
        store.replace_catalog(&spec, "test").unwrap();
        // A query naming a datasource that does not exist violates the foreign key half-way.
        let mut broken = spec.clone();
        broken
            .apps
            .get_mut("shop")
            .unwrap()
            .queries
            .get_mut("q")
            .unwrap()
            .datasource = "missing".into();
        assert!(store.replace_catalog(&broken, "test").is_err());
        assert_eq!(store.load_catalog().unwrap(), spec);
        assert_eq!(store.catalog_revision().unwrap(), 1);
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta/sluice.db");
        let spec = yaml::parse(CATALOG).unwrap();
        SqliteStore::open(&path)
            .unwrap()
            .replace_catalog(&spec, "test")
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load_catalog().unwrap(), spec);
        let version: i64 = store
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let synchronous: i64 = store
            .lock()
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "synchronous=NORMAL");
    }
}
