//! Where a SQLite datasource may point: never at Sluice's own files (the metadata store, its
//! WAL, journal and shared-memory files, anything in the data directory: the Appsmith
//! CVE-2024-55963 class, a datasource aimed at the gateway's own store), and, when
//! `SLUICE_SQLITE_DIRS` is set, only under one of those directories.
//!
//! Paths are judged after symbolic links are resolved (the file's when it exists, else its
//! directory's), so a link or a `..` cannot lead out of an allowed directory or into the
//! data directory. SQLite URI filenames (`file:...`) are refused outright: their query
//! string can choose a VFS or another file. `:memory:` is always allowed (it opens no file).

use std::path::{Component, Path, PathBuf};

/// What a SQLite datasource path is judged against.
#[derive(Debug, Clone)]
pub struct SqlitePathRules {
    /// `SLUICE_SQLITE_DIRS`; empty: anywhere but Sluice's own files.
    pub allowed_dirs: Vec<PathBuf>,
    /// Sluice's data directory (everything in it is Sluice's).
    pub data_dir: PathBuf,
    /// The metadata store file (which may lie outside the data directory).
    pub metadata_db: PathBuf,
}

/// Why a path was refused; the message names the path's problem, never a file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlitePathError {
    #[error("SQLite URI filenames (`file:...`) are not accepted: give a file path")]
    Uri,
    #[error("an empty path")]
    Empty,
    #[error(
        "`{0}` is one of Sluice's own files (its data directory or metadata store); a datasource may never open them"
    )]
    OwnFile(String),
    #[error("`{path}` is not under an allowed directory (SLUICE_SQLITE_DIRS: {allowed})")]
    OutsideAllowed { path: String, allowed: String },
}

impl SqlitePathRules {
    /// Judges `path` (as written in the catalog, relative to the working directory).
    pub fn check(&self, path: &str) -> Result<(), SqlitePathError> {
        if path == ":memory:" {
            return Ok(());
        }
        if path.is_empty() {
            return Err(SqlitePathError::Empty);
        }
        if path
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("file:"))
        {
            return Err(SqlitePathError::Uri);
        }
        let resolved = resolve(Path::new(path));
        let store = resolve(&self.metadata_db);
        let own = resolved.starts_with(resolve(&self.data_dir))
            || (resolved.parent() == store.parent()
                && store.file_name().is_some_and(|store_name| {
                    resolved.file_name().is_some_and(|name| {
                        name.as_encoded_bytes()
                            .starts_with(store_name.as_encoded_bytes())
                    })
                }));
        if own {
            return Err(SqlitePathError::OwnFile(path.to_string()));
        }
        if !self.allowed_dirs.is_empty()
            && !self
                .allowed_dirs
                .iter()
                .any(|dir| resolved.starts_with(resolve(dir)))
        {
            return Err(SqlitePathError::OutsideAllowed {
                path: path.to_string(),
                allowed: self
                    .allowed_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }
}

/// `path` made absolute with its symbolic links resolved: the whole path when it exists,
/// else the nearest existing ancestor's, with the rest appended after `.`/`..` are
/// applied lexically.
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let normal = lexical(&absolute);
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return normal,
        }
    }
}

/// `.` and `..` applied to an absolute path without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(root: &Path, allowed: &[&str]) -> SqlitePathRules {
        SqlitePathRules {
            allowed_dirs: allowed.iter().map(|d| root.join(d)).collect(),
            data_dir: root.join("data"),
            metadata_db: root.join("data/sluice.db"),
        }
    }

    fn at(root: &Path, p: &str) -> String {
        root.join(p).display().to_string()
    }

    #[test]
    fn own_files_are_refused_however_they_are_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("dbs")).unwrap();
        std::fs::write(root.join("data/sluice.db"), b"").unwrap();
        std::os::unix::fs::symlink(root.join("data/sluice.db"), root.join("dbs/link.db")).unwrap();
        std::os::unix::fs::symlink(root.join("data"), root.join("dbs/datalink")).unwrap();
        let r = rules(root, &[]);
        for path in [
            "data/sluice.db",
            "data/sluice.db-wal",
            "data/sluice.db-shm",
            "data/sluice.db-journal",
            "data/sluice.db.before-restore-2026",
            "data/acme/account.json",
            "dbs/../data/sluice.db",
            "dbs/./../data//sluice.db",
            "dbs/link.db",
            "dbs/datalink/sluice.db",
            "dbs/datalink/new.db",
        ] {
            assert!(
                matches!(r.check(&at(root, path)), Err(SqlitePathError::OwnFile(_))),
                "{path}"
            );
        }
        // A store outside the data directory: its siblings are refused, other files not.
        let outside = SqlitePathRules {
            metadata_db: root.join("dbs/meta.db"),
            ..rules(root, &[])
        };
        assert!(outside.check(&at(root, "dbs/meta.db-wal")).is_err());
        assert!(outside.check(&at(root, "dbs/shop.db")).is_ok());
    }

    #[test]
    fn allowed_directories_confine_and_uris_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dbs")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::os::unix::fs::symlink(root.join("other"), root.join("dbs/escape")).unwrap();
        let r = rules(root, &["dbs"]);
        assert_eq!(r.check(&at(root, "dbs/shop.db")), Ok(()));
        assert_eq!(r.check(&at(root, "dbs/sub/new.db")), Ok(()));
        assert_eq!(r.check(":memory:"), Ok(()));
        for path in [
            "other/x.db",
            "dbs/../other/x.db",
            "dbs/escape/x.db",
            "dbsx/y.db",
        ] {
            assert!(
                matches!(
                    r.check(&at(root, path)),
                    Err(SqlitePathError::OutsideAllowed { .. })
                ),
                "{path}"
            );
        }
        for uri in [
            "file:/tmp/x.db",
            "FILE:x.db?vfs=unix",
            "file::memory:?cache=shared",
        ] {
            assert_eq!(r.check(uri), Err(SqlitePathError::Uri), "{uri}");
        }
        assert_eq!(r.check(""), Err(SqlitePathError::Empty));
        // Without allowed directories, anything but Sluice's own files.
        assert_eq!(rules(root, &[]).check(&at(root, "other/x.db")), Ok(()));
    }
}
