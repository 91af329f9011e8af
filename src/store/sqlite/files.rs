//! The database's files on disk: they hold password hashes, sealed secrets and the audit
//! log, so only the owner may read them. A data directory the store creates is 0700 and a
//! database file it creates is 0600 (SQLite gives its `-wal` and `-shm` files the
//! database file's mode). Existing ones are left as they are, but every one that others
//! can read or enter is reported, for a warning at start-up.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a directory the store creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of a database file the store creates.
pub const FILE_MODE: u32 = 0o600;

/// A file or directory of the store that group or others may access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOpen {
    pub path: PathBuf,
    pub mode: u32,
}

/// Creates the directory of `database` (0700, with any missing parents) when it does not
/// exist yet.
pub fn prepare_directory(database: &Path) -> io::Result<()> {
    if let Some(parent) = database.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)?;
    }
    Ok(())
}

/// Creates the directory of `database` ([`prepare_directory`]) and the database file itself
/// (0600) when they do not exist yet.
pub fn prepare(database: &Path) -> io::Result<()> {
    prepare_directory(database)?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(database)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// The database's directory and files (the database, `-wal`, `-shm`) that group or others
/// may access; missing ones are skipped.
pub fn too_open(database: &Path) -> Vec<TooOpen> {
    let mut paths = Vec::new();
    if let Some(parent) = database.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        paths.push(parent.to_path_buf());
    }
    paths.push(database.to_path_buf());
    for suffix in ["-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        paths.push(PathBuf::from(name));
    }
    paths
        .into_iter()
        .filter_map(|path| {
            let mode = std::fs::metadata(&path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some(TooOpen { path, mode })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_store_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("data/nested/sluice.db");
        let store = crate::store::SqliteStore::open(&database).unwrap();
        // A write, so that SQLite creates the WAL and shared-memory files.
        crate::store::audit::AuditStore::append_audit(
            &store,
            &crate::store::audit::AuditEvent {
                id: 0,
                at: 1,
                event: "test".into(),
                user_id: None,
                email: None,
                actor: None,
                ip: None,
                user_agent: None,
                reason: None,
                details: None,
            },
        )
        .unwrap();
        assert_eq!(mode(&dir.path().join("data")), DIR_MODE);
        assert_eq!(mode(&dir.path().join("data/nested")), DIR_MODE);
        assert_eq!(mode(&database), FILE_MODE);
        for suffix in ["-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", database.display()));
            assert!(file.exists(), "{suffix} exists while the store is open");
            assert_eq!(mode(&file), FILE_MODE, "{suffix}");
        }
        assert_eq!(too_open(&database), Vec::new());
    }

    #[test]
    fn existing_files_that_others_can_read_are_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let database = data.join("sluice.db");
        std::fs::write(&database, b"").unwrap();
        std::fs::set_permissions(&database, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(crate::store::SqliteStore::open(&database).unwrap());
        assert_eq!(
            too_open(&database),
            vec![
                TooOpen {
                    path: data.clone(),
                    mode: 0o755
                },
                TooOpen {
                    path: database.clone(),
                    mode: 0o644
                },
            ]
        );
        assert_eq!(mode(&database), 0o644, "an existing file keeps its mode");
    }
}
