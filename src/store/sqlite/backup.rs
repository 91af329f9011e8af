//! Backup and restore of the SQLite store with SQLite's online backup API.
//!
//! A backup copies every page in one step, inside one read transaction, so it is a
//! consistent picture of the store even while a gateway writes to it (WAL mode lets both go
//! on). It is written to a temporary file beside the target (0600: it holds password hashes
//! and sealed secrets), switched out of WAL mode so it is one self-contained file, and renamed
//! into place: a backup file is whole or absent. An existing file is never overwritten.
//!
//! A restore checks the backup first (it opens, passes `PRAGMA integrity_check`, is a Sluice
//! store no newer than this build), then copies it over the live store through the same API,
//! in one step under the store's write lock: a gateway using the store sees the old content or
//! the new, never a mix. The copy is migrated to this build's schema afterwards.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::files::FILE_MODE;
use super::{MIGRATIONS, SqliteStore, migrate, sqlite};
use crate::store::StoreError;

/// What a checked backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// Its schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    pub catalog_revision: i64,
    pub users: i64,
}

impl SqliteStore {
    /// Writes a consistent copy of the store to `target`, which must not exist.
    pub fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        if target.exists() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists; a backup never overwrites a file",
                    target.display()
                ),
            )));
        }
        let partial = partial_path(target);
        let _ = std::fs::remove_file(&partial);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&partial)?;
        let written = (|| {
            let mut copy = Connection::open(&partial).map_err(sqlite("opening the backup file"))?;
            copy_all(&self.lock(), &mut copy)?;
            copy.pragma_update(None, "journal_mode", "DELETE")
                .map_err(sqlite("making the backup one file"))?;
            drop(copy);
            std::fs::rename(&partial, target)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written
    }

    /// Checks that `backup` is a whole Sluice store this build can read, without changing it.
    pub fn check_backup(backup: &Path) -> Result<BackupSummary, StoreError> {
        if !backup.is_file() {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist or is not a file", backup.display()),
            )));
        }
        let conn = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite("opening the backup"))?;
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .map_err(sqlite("checking the backup (is it a Sluice store?)"))?;
        if integrity != "ok" {
            return Err(StoreError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} fails SQLite's integrity check", backup.display()),
            )));
        }
        let schema_version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite("reading the backup's schema version"))?;
        let supported = MIGRATIONS.len() as i64;
        if schema_version > supported {
            return Err(StoreError::TooNew {
                found: schema_version,
                supported,
            });
        }
        let count = |sql: &str| -> Result<i64, StoreError> {
            conn.query_row(sql, [], |row| row.get(0))
                .map_err(sqlite("reading the backup (is it a Sluice store?)"))
        };
        // A store before the accounts migration has no users table.
        let users = if schema_version >= 2 {
            count("SELECT count(*) FROM users")?
        } else {
            0
        };
        Ok(BackupSummary {
            schema_version,
            catalog_revision: count("SELECT coalesce(max(id), 0) FROM catalog_revisions")?,
            users,
        })
    }

    /// Replaces the whole store with `backup` (checked with [`SqliteStore::check_backup`]),
    /// then brings the schema up to date.
    pub fn restore_from(&self, backup: &Path) -> Result<BackupSummary, StoreError> {
        let summary = SqliteStore::check_backup(backup)?;
        let source = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite("opening the backup"))?;
        let mut conn = self.lock();
        copy_all(&source, &mut conn)?;
        migrate(&mut conn)?;
        Ok(summary)
    }
}

/// Copies every page of `from` into `to` in one step.
fn copy_all(from: &Connection, to: &mut Connection) -> Result<(), StoreError> {
    let backup = Backup::new(from, to).map_err(sqlite("starting the copy"))?;
    match backup.step(-1).map_err(sqlite("copying the store"))? {
        StepResult::Done => Ok(()),
        // Another connection holds a lock the copy needs; nothing was written.
        _ => Err(StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "the store is locked by another writer; try again",
        ))),
    }
}

/// `<target>.partial`, where a backup is written before it is renamed into place.
fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}
