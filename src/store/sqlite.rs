//! The embedded SQLite metadata store: the connection (WAL mode), migrations (the shared
//! list in [`super::migrations`], the version in `PRAGMA user_version`), and one file per aggregate implementing its trait: [`catalog`],
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
use super::migrations::{self, MIGRATIONS};

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

/// The number of migrations, which is this build's schema version.
fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

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
        let supported = supported_version();
        if version > supported {
            return Err(StoreError::TooNew {
                found: version,
                supported,
            });
        }
        let needed = migrations::AUDIT_CHAIN as i64 + 1;
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

    /// The store's name for logs: its file's path (`in memory` for a test store).
    pub fn describe(&self) -> String {
        match &self.file {
            Some(file) => file.path().display().to_string(),
            None => "in memory".to_string(),
        }
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
    let supported = supported_version();
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sqlite("starting a migration"))?;
        tx.execute_batch(migration.sqlite)
            .map_err(sqlite("running a migration"))?;
        if index == migrations::HISTORY {
            catalog::keep_current_in_history(&tx)?;
        }
        if index == migrations::AUDIT_CHAIN {
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

/// One node keeps its rate-limit buckets in memory (the `limits` module).
impl super::buckets::BucketStore for SqliteStore {}
