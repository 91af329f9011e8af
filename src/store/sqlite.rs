//! The embedded SQLite metadata store: the connection (WAL mode), migrations by
//! `PRAGMA user_version`, and one file per aggregate implementing its trait: [`catalog`],
//! [`users`], [`mfa`], [`sessions`], [`tokens`], [`api_keys`], [`members`], [`audit`], with
//! the helpers they share in [`rows`]; [`health`] is the readiness check.
//!
//! Every value arriving here is already hashed or sealed; this module stores and compares
//! them and never logs them. Operations that must not race (lockout counting, the success of
//! a checked sign-in, starting MFA enrolment, the TOTP replay guard, single-use tokens and
//! recovery codes) are each one conditional statement, so two concurrent requests cannot
//! both pass the check. An operation that changes several rows runs its steps in one
//! IMMEDIATE transaction: each aggregate's file has the single steps (each runs on the
//! connection or transaction it is given) and the trait methods run one alone, or several in
//! one transaction when an operation needs them all to happen or none.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use super::StoreError;

mod api_keys;
mod audit;
mod backup;
pub use backup::BackupSummary;
mod catalog;
pub mod files;
mod health;
mod identities;
mod members;
mod mfa;
mod rows;
mod scim;
mod sealed;
mod sessions;
#[cfg(test)]
mod tests;
mod tokens;
mod users;

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
    // Authentication (see `users.rs`, `sessions.rs`, ...). Times are Unix seconds. `app_members` has no foreign key
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
    // Catalog history: each revision keeps the whole catalog (JSON, secrets sealed) for
    // `catalog history`, `diff` and `rollback`. Older revisions keep none, except the
    // current one, which `catalog::keep_current_in_history` fills in after this migration.
    r#"
    ALTER TABLE catalog_revisions ADD COLUMN spec TEXT;
"#,
    // App editors: a member with `editor = 1` may edit the app's settings and queries
    // through the catalog API (developers only; see `admin::catalog`).
    r#"
    ALTER TABLE app_members ADD COLUMN editor INTEGER NOT NULL DEFAULT 0;
"#,
    audit::CHAIN_MIGRATION,
    // Federated identities (`identities.rs`): provider accounts linked to users, one per
    // (provider, subject), and the OpenID Connect sign-ins under way (taken once).
    r#"
    CREATE TABLE user_identities (
        provider        TEXT NOT NULL,
        subject         TEXT NOT NULL,
        user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email           TEXT,
        linked_at       INTEGER NOT NULL,
        last_sign_in_at INTEGER,
        PRIMARY KEY (provider, subject)
    );
    CREATE INDEX user_identities_user ON user_identities (user_id);
    CREATE TABLE sso_flows (
        state_hash    TEXT PRIMARY KEY,   -- SHA-256 of the state sent to the provider
        provider      TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        verifier_hash TEXT NOT NULL,      -- SHA-256 of the PKCE verifier (in the browser)
        return_to     TEXT NOT NULL,
        link_user     TEXT,
        expires_at    INTEGER NOT NULL
    );
"#,
    // SCIM provisioning (`scim.rs`): an IdP's profile of an account beside `users` (a SCIM
    // user is an account; `deleted_at` set: SCIM deleted it and answers 404, the disabled
    // account stays for the audit log), and SCIM groups, mirrored into their members'
    // `users.groups` under `group_name`. Self-contained: it only adds tables.
    r#"
    CREATE TABLE scim_users (
        user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        external_id TEXT UNIQUE,
        user_name   TEXT NOT NULL,
        given_name  TEXT,
        family_name TEXT,
        formatted   TEXT,
        deleted_at  INTEGER,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE scim_groups (
        id           TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        group_name   TEXT NOT NULL UNIQUE,
        external_id  TEXT UNIQUE,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE TABLE scim_group_members (
        group_id TEXT NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX scim_group_members_user_id ON scim_group_members(user_id);
"#,
];

/// The SQLite-backed store. One connection behind a mutex: metadata writes are rare and
/// reads happen at start-up and reload, never per request.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The database file, for the readiness check; `None` in memory.
    file: Option<health::DatabaseFile>,
}

fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    /// A directory or file it creates is private to the owner ([`files`]); existing ones
    /// that others can read are logged as a warning.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        files::prepare(path)?;
        for files::TooOpen { path, mode } in files::too_open(path) {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{mode:o}"),
                "The metadata store is readable by others (it holds password hashes and sealed secrets): chmod it to 700 for the directory, 600 for files"
            );
        }
        let conn = Connection::open(path).map_err(sqlite("opening the database"))?;
        let file = health::DatabaseFile::opened(path)?;
        Self::from_connection(conn, Some(file))
    }

    /// Opens the store at `path` and brings its schema up to date, like [`SqliteStore::open`],
    /// but refuses with [`StoreError::Missing`] when there is no database file there yet.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        SqliteStore::open(path)
    }

    /// Opens the store (or a backup of it) at `path` read-only, without migrating it, to
    /// read its audit log: it must have the audit hash chain already
    /// ([`StoreError::Unchained`] otherwise) and not be newer than this build.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(sqlite("opening the database"))?;
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
        let needed = MIGRATIONS
            .iter()
            .position(|migration| *migration == audit::CHAIN_MIGRATION)
            .map_or(supported, |index| index as i64 + 1);
        if version < needed {
            return Err(StoreError::Unchained {
                found: version,
                needed,
            });
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite("setting the busy timeout"))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            file: None,
        })
    }

    /// Creates the directory the store at `path` lives in, private to the owner (0700), as
    /// [`SqliteStore::open`] does, without creating the store (for files kept beside it).
    pub fn prepare_directory(path: &Path) -> Result<(), StoreError> {
        Ok(files::prepare_directory(path)?)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(sqlite("opening the database"))?;
        Self::from_connection(conn, None)
    }

    fn from_connection(
        mut conn: Connection,
        file: Option<health::DatabaseFile>,
    ) -> Result<SqliteStore, StoreError> {
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
            file,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The migration that adds the catalog's content to its revisions.
const HISTORY_MIGRATION: usize = 3;

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
        if index == HISTORY_MIGRATION {
            catalog::keep_current_in_history(&tx)?;
        }
        // Matched by content, not position, so migrations added beside it keep their order.
        if *migration == audit::CHAIN_MIGRATION {
            audit::chain_existing_entries(&tx)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)
            .map_err(sqlite("recording the schema version"))?;
        tx.commit().map_err(sqlite("committing a migration"))?;
    }
    Ok(())
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
