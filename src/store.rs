//! The metadata store: the gateway's own state (for now the catalog).
//!
//! [`MetadataStore`] is the small interface the rest of the crate uses; [`SqliteStore`] is
//! the embedded default (one node, zero set-up). A PostgreSQL store for scale-out implements
//! the same trait later. Calls are blocking: async callers run them with
//! `tokio::task::spawn_blocking`.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::spec::CatalogSpec;

/// A failure of the metadata store. The cause is kept for the server log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {context}")]
    Sqlite {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
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
    /// The record to change does not exist.
    #[error("metadata store: no such {0}")]
    NotFound(&'static str),
    /// The file-system error is part of the message, not a chained source: printed once.
    #[error("metadata store: {0}")]
    Io(std::io::Error),
    #[error(
        "metadata store schema version {found} is newer than this build understands ({supported})"
    )]
    TooNew { found: i64, supported: i64 },
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> StoreError {
        StoreError::Io(error)
    }
}

/// Everything the instance keeps: the catalog and the accounts. One object implements both
/// (the SQLite store; later the PostgreSQL one).
pub trait Store: MetadataStore + crate::auth::store::AuthStore {}

impl<T: MetadataStore + crate::auth::store::AuthStore> Store for T {}

/// Where the gateway keeps its catalog.
pub trait MetadataStore: Send + Sync {
    /// The current catalog.
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError>;

    /// Replaces the whole catalog in one transaction (all of it or none of it) and records
    /// a revision. Returns the new revision number.
    fn replace_catalog(&self, spec: &CatalogSpec, source: &str) -> Result<i64, StoreError>;

    /// The latest catalog revision (0 when none was applied).
    fn catalog_revision(&self) -> Result<i64, StoreError>;
}
