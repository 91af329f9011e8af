//! Where a SQLite datasource may point: never at Sluice's own files (the metadata store, its
//! WAL, journal and shared-memory files, anything in the data directory: the Appsmith
//! CVE-2024-55963 class, a datasource aimed at the gateway's own store), and, when
//! `SLUICE_SQLITE_DIRS` is set, only under one of those directories.
//!
//! Paths are judged after symbolic links and `..` are resolved as the kernel resolves them
//! (the longest existing prefix of the path as written is canonicalised; the missing rest may
//! not climb with `..`), so a link or a `..` cannot lead out of an allowed directory or into
//! the data directory; a hard link to the store is caught by device and inode; `/proc`,
//! `/dev` and `/sys` are refused. SQLite URI filenames (`file:...`) are refused outright: their query
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
    #[error("`{0}` climbs (`..`) out of a directory that does not exist yet")]
    Climbs(String),
    #[error("`{0}` is a special file system (/proc, /dev, /sys)")]
    Special(String),
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
        let resolved = resolve(Path::new(path))?;
        if ["/proc", "/dev", "/sys"]
            .iter()
            .any(|special| resolved.starts_with(special))
        {
            return Err(SqlitePathError::Special(path.to_string()));
        }
        let store = resolve_own(&self.metadata_db);
        let own = same_file_as_store(&resolved, &store)
            || resolved.starts_with(resolve_own(&self.data_dir))
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
                .any(|dir| resolved.starts_with(resolve_own(dir)))
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

/// `path` made absolute with its symbolic links and `..` resolved the way the kernel
/// resolves them: the longest prefix of the path *as written* that exists is canonicalised,
/// and the part that does not exist yet is appended. That part may not climb (`..`), since
/// what it climbs out of is not known yet.
fn resolve(path: &Path) -> Result<PathBuf, SqlitePathError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for split in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..split].iter().collect();
        let Ok(mut real) = prefix.canonicalize() else {
            continue;
        };
        for part in &parts[split..] {
            match part {
                Component::ParentDir => {
                    return Err(SqlitePathError::Climbs(path.display().to_string()));
                }
                Component::CurDir => {}
                other => real.push(other),
            }
        }
        return Ok(real);
    }
    Ok(lexical(&absolute))
}

/// [`resolve`] for Sluice's own paths and the configured directories (which exist in any
/// sane set-up; a lexical reading otherwise).
fn resolve_own(path: &Path) -> PathBuf {
    resolve(path).unwrap_or_else(|_| lexical(path))
}

/// Whether `path` is the same file (device and inode) as the store or one of its WAL, SHM or
/// journal files: a hard link to the store is the store.
fn same_file_as_store(path: &Path, store: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(file) = std::fs::metadata(path) else {
        return false;
    };
    let name = store.as_os_str().to_owned();
    ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        let mut candidate = name.clone();
        candidate.push(suffix);
        std::fs::metadata(&candidate)
            .is_ok_and(|own| own.dev() == file.dev() && own.ino() == file.ino())
    })
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
        std::fs::hard_link(root.join("data/sluice.db"), root.join("dbs/hard.db")).unwrap();
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
            "dbs/hard.db",
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
        assert!(matches!(
            r.check(&at(root, "dbs/missing/../../other/x.db")),
            Err(SqlitePathError::Climbs(_))
        ));
        assert!(matches!(
            r.check("/proc/self/cwd/x.db"),
            Err(SqlitePathError::Special(_)
                | SqlitePathError::OwnFile(_)
                | SqlitePathError::OutsideAllowed { .. })
        ));
        assert!(matches!(
            rules(root, &[]).check("/proc/self/environ"),
            Err(SqlitePathError::Special(_))
        ));
        // Through a link to the data directory and back out of it, as the kernel reads it.
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("data/sub"), root.join("dbs/sublink")).unwrap();
        assert!(matches!(
            r.check(&at(root, "dbs/sublink/../sluice.db")),
            Err(SqlitePathError::OwnFile(_))
        ));
        // Without allowed directories, anything but Sluice's own files.
        assert_eq!(rules(root, &[]).check(&at(root, "other/x.db")), Ok(()));
    }
}
