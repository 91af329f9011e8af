//! [`StoreError`]: how any metadata store operation fails, whatever the backend.
//!
//! Its messages say what failed (`reading a user`) and, for an undecodable row, which one
//! (a user id, a datasource name, a token's SHA-256): never a password, token, code, sealed
//! secret or other stored value.

/// A failure of the metadata store. The cause is kept for the server log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("metadata store: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: PgError,
    },
    /// `SLUICE_METADATA_URL` (or its password) cannot be used; the message never quotes the
    /// password.
    #[error("SLUICE_METADATA_URL: {0}")]
    Settings(String),
    /// `SLUICE_REDIS_URL` cannot be used; the message never quotes the password.
    #[error("SLUICE_REDIS_URL: {0}")]
    Redis(String),
    #[error("metadata store: stored {what} `{name}` does not decode")]
    Corrupt {
        what: &'static str,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    /// A unique value (an email, a key id) is already taken.
    #[error("metadata store: {0} already exists")]
    Conflict(&'static str),
    /// A conditional catalog write found a newer revision than the one it was based on.
    #[error("metadata store: the catalog is at revision {current}, not {expected}")]
    RevisionMoved { expected: i64, current: i64 },
    /// The record to change does not exist.
    #[error("metadata store: no such {0}")]
    NotFound(&'static str),
    /// The file-system error is part of the message, not a chained source: printed once.
    #[error("metadata store: {0}")]
    Io(std::io::Error),
    /// The store does not exist and this command may not create one (only `serve` and
    /// `init` do: a command run from the wrong folder must not start an empty store).
    #[error(
        "metadata store {} does not exist: run `sluice init` to create it, or point \
         SLUICE_DATA_DIR / SLUICE_METADATA_DB at the existing one",
        .0.display()
    )]
    Missing(std::path::PathBuf),
    #[error(
        "metadata store schema version {found} is newer than this build understands ({supported})"
    )]
    TooNew { found: i64, supported: i64 },
    /// The store answered the readiness check, but not as the one opened at start-up.
    #[error("metadata store: {0}")]
    Unreachable(&'static str),
    /// A store (a backup, opened read-only) from before the audit log was hash-chained.
    #[error(
        "metadata store schema version {found} predates the audit hash chain (version {needed}); \
         restore it, or open it once with this build, to chain its audit log"
    )]
    Unchained { found: i64, needed: i64 },
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> StoreError {
        StoreError::Io(error)
    }
}

/// A PostgreSQL failure as the metadata store reports it: the SQLSTATE and the server's
/// message, never its DETAIL (which quotes the values of the row at fault, such as an email
/// or a sealed secret), nor a connection string; `Debug` shows the same.
pub struct PgError(tokio_postgres::Error);

impl PgError {
    pub fn new(error: tokio_postgres::Error) -> PgError {
        PgError(error)
    }

    /// The SQLSTATE, for a failure the server reported.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.0.code()
    }

    /// The server's error, for a failure the server reported.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.0.as_db_error()
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} ({})", db.message(), db.code().code()),
            // Connection, protocol and I/O failures hold no stored value.
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::fmt::Debug for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgError({self})")
    }
}

impl std::error::Error for PgError {}
