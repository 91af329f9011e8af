//! [`HealthStore`] for the SQLite store. The database file is the store: the check finds it
//! at its path, as the same file (device and inode) that was opened at start-up, and opens
//! it afresh (never creating it) to read its schema version, which must be this build's. A
//! file that is gone, was replaced or moved, cannot be opened or read, is not a database or
//! has become read-only fails the check; the connection the store holds is not used, so a
//! long store operation does not make the instance look unready.
//!
//! Never writes, and never creates a file (a missing one stays missing).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{MIGRATIONS, SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::health::HealthStore;

/// How long the check waits for a lock on the file (a checkpoint, a writer in another
/// process) before it counts as unreachable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The database file a store opened, and which file it was.
#[derive(Debug)]
pub(super) struct DatabaseFile {
    path: PathBuf,
    /// Device and inode at open.
    identity: (u64, u64),
}

impl DatabaseFile {
    /// The file at `path`, as it is now (just opened).
    pub(super) fn opened(path: &Path) -> Result<DatabaseFile, StoreError> {
        let metadata = std::fs::metadata(path)?;
        Ok(DatabaseFile {
            path: path.to_path_buf(),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self) -> Result<(), StoreError> {
        let metadata = std::fs::metadata(&self.path).map_err(|_| {
            StoreError::Unreachable("the database file is missing or its directory cannot be read")
        })?;
        if (metadata.dev(), metadata.ino()) != self.identity {
            return Err(StoreError::Unreachable(
                "the database file was replaced since start-up (restart to serve the new one)",
            ));
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite("opening the database file"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("setting the busy timeout"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite("reading the database file"))?;
        if version != MIGRATIONS.len() as i64 {
            return Err(StoreError::Unreachable(
                "the database file's schema version is not the one opened at start-up",
            ));
        }
        // SQLite opens a file it may not write read-only, without an error.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(sqlite("reading the database file"))?
        {
            return Err(StoreError::Unreachable("the database file is read-only"));
        }
        Ok(())
    }
}

impl HealthStore for SqliteStore {
    fn check_reachable(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(file) => file.check(),
            // In memory the connection is the store.
            None => self
                .lock()
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(sqlite("checking the database")),
        }
    }
}
