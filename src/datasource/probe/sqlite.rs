//! The SQLite test: the file (there, a file, readable), opening it as serving does (same
//! flags: read-only or not, never created), and `SELECT 1` (which is when SQLite finds a file
//! that is not a database).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Failure, Passed, Recorder};
use crate::datasource::sqlite::SqliteSource;

const STEPS: &[&str] = &["file", "open", "select_1"];

pub(super) async fn probe(source: &SqliteSource, name: &str) -> super::ProbeReport {
    let (path, flags) = source.location();
    let path = path.to_path_buf();
    let recorder = Recorder::new(name, "sqlite", STEPS);
    match tokio::task::spawn_blocking(move || run(recorder, path, flags)).await {
        Ok(report) => report,
        Err(_) => {
            let mut recorder = Recorder::new(name, "sqlite", STEPS);
            recorder.record::<()>(
                "open",
                Duration::ZERO,
                Err(Failure::new("the test's thread failed", "try again")),
            );
            recorder.finish()
        }
    }
}

fn run(mut recorder: Recorder, path: PathBuf, flags: OpenFlags) -> super::ProbeReport {
    let shown = path.display().to_string();
    let in_memory = shown == ":memory:" || shown.starts_with("file:");
    if in_memory {
        recorder.skip(
            "file",
            Some("not a plain file path (in memory, or a URI): checked by opening it".into()),
        );
    } else {
        let started = Instant::now();
        let outcome = check_file(&path, &shown);
        if recorder
            .record("file", started.elapsed(), outcome)
            .is_none()
        {
            return recorder.finish();
        }
    }
    let started = Instant::now();
    let opened = Connection::open_with_flags(&path, flags);
    let read_only = flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY);
    let conn = match opened {
        Ok(conn) => recorder.record(
            "open",
            started.elapsed(),
            Ok(Passed::new(
                conn,
                if read_only {
                    "opened read-only"
                } else {
                    "opened read-write"
                },
            )),
        ),
        Err(error) => recorder.record::<Connection>(
            "open",
            started.elapsed(),
            Err(sqlite_failure(&error, &shown, read_only)),
        ),
    };
    let Some(conn) = conn else {
        return recorder.finish();
    };
    let started = Instant::now();
    let outcome = match conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)) {
        Ok(_) => Ok(Passed::new((), "SELECT 1 answered")),
        Err(error) => Err(sqlite_failure(&error, &shown, read_only)),
    };
    recorder.record("select_1", started.elapsed(), outcome);
    recorder.finish()
}

fn check_file(path: &Path, shown: &str) -> Result<Passed<()>, Failure> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(
                format!("no file at `{shown}`"),
                "check `path` (relative paths start from the gateway's working directory); \
                 Sluice opens an existing database and never creates one",
            ));
        }
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Failure::new(
                format!("`{shown}` cannot be reached"),
                "the gateway's user may not enter a directory on the way to the file",
            ));
        }
        Err(error) => {
            return Err(Failure::new(
                format!("`{shown}` cannot be read ({:?})", error.kind()),
                "check `path`",
            ));
        }
    };
    if !metadata.is_file() {
        return Err(Failure::new(
            format!("`{shown}` is not a file"),
            "`path` must name the database file itself",
        ));
    }
    if let Err(error) = std::fs::File::open(path) {
        return Err(Failure::new(
            format!("`{shown}` cannot be opened ({:?})", error.kind()),
            "the gateway's user may not read the file: check its owner and mode",
        ));
    }
    Ok(Passed::new(
        (),
        format!("`{shown}`, {} bytes", metadata.len()),
    ))
}

fn sqlite_failure(error: &rusqlite::Error, shown: &str, read_only: bool) -> Failure {
    let code = error.sqlite_error_code();
    let detail = match code {
        Some(code) => format!("SQLite error {code:?}"),
        None => "SQLite error".to_string(),
    };
    let hint = match code {
        Some(ErrorCode::NotADatabase) => format!("`{shown}` is not an SQLite database"),
        Some(ErrorCode::CannotOpen) if !read_only => format!(
            "`{shown}` cannot be opened for writing: make it (and its directory) writable by \
             the gateway's user, or set `read_only: true`"
        ),
        Some(ErrorCode::CannotOpen) => format!("`{shown}` cannot be opened: check `path`"),
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            "the gateway's user may not use the file as configured: check its owner and mode"
                .to_string()
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds a lock on the database; try again".to_string()
        }
        Some(ErrorCode::DatabaseCorrupt) => format!("`{shown}` is damaged"),
        _ => "SQLite refused; check the file".to_string(),
    };
    Failure::new(detail, hint)
}
