//! The metadata store an instance or a command opens: the embedded SQLite file or
//! PostgreSQL (`SLUICE_METADATA_URL`), migrated on open.

use std::sync::Arc;

use crate::config::Config;
use crate::store::{PgSettings, PostgresStore, SqliteStore, Store, StoreError};

/// Whether opening the metadata store may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOpening {
    /// `serve` and `init`: create the data directory and an empty store when missing.
    CreateIfMissing,
    /// Every other command: a missing store is an error ([`StoreError::Missing`]), so a
    /// command run from the wrong folder never starts an empty store beside the real one.
    ExistingOnly,
}

/// The metadata store an instance or a command opened: the embedded SQLite file (the
/// default) or PostgreSQL (`SLUICE_METADATA_URL`). Dereferences to [`Store`]; what only one
/// of them can do (a SQLite file backup) goes through [`MetadataStore::sqlite`].
#[allow(clippy::large_enum_variant)] // One per command or instance, never moved about.
pub enum MetadataStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl MetadataStore {
    /// The store, shared (what an instance holds).
    pub fn shared(self) -> Arc<dyn Store> {
        match self {
            MetadataStore::Sqlite(store) => Arc::new(store),
            MetadataStore::Postgres(store) => Arc::new(store),
        }
    }

    /// The SQLite store, or `None` on PostgreSQL.
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            MetadataStore::Sqlite(store) => Some(store),
            MetadataStore::Postgres(_) => None,
        }
    }

    /// The store's name for logs and messages: the file's path, or the URL without its
    /// password.
    pub fn describe(&self) -> String {
        match self {
            MetadataStore::Sqlite(store) => store.describe(),
            MetadataStore::Postgres(store) => store.describe().to_string(),
        }
    }
}

impl std::ops::Deref for MetadataStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            MetadataStore::Sqlite(store) => store,
            MetadataStore::Postgres(store) => store,
        }
    }
}

/// The store's name for messages before it is opened: the SQLite file's path, or the
/// PostgreSQL URL without its password (`postgres://...` when it does not parse).
pub fn store_name(config: &Config) -> String {
    match &config.metadata_url {
        Some(url) => PgSettings::parse(url.expose(), None)
            .map(|settings| settings.describe().to_string())
            .unwrap_or_else(|_| "the PostgreSQL store (SLUICE_METADATA_URL)".to_string()),
        None => config.metadata_path().display().to_string(),
    }
}

/// Opens the metadata store the configuration names and migrates it: PostgreSQL when
/// `SLUICE_METADATA_URL` is set, else the SQLite file (`SLUICE_METADATA_DB`, else
/// `<data dir>/sluice.db`), created only with [`StoreOpening::CreateIfMissing`]. On
/// PostgreSQL the database must exist (a DBA creates it, owned by the store's user); its
/// tables are created by any command that opens it. Blocking.
pub fn open_store(config: &Config, opening: StoreOpening) -> Result<MetadataStore, StoreError> {
    if let Some(url) = &config.metadata_url {
        let settings = PgSettings::parse(
            url.expose(),
            config.metadata_password.as_ref().map(|p| p.expose()),
        )?;
        return Ok(MetadataStore::Postgres(PostgresStore::open(settings)?));
    }
    let path = config.metadata_path();
    Ok(MetadataStore::Sqlite(match opening {
        StoreOpening::CreateIfMissing => SqliteStore::open(&path)?,
        StoreOpening::ExistingOnly => SqliteStore::open_existing(&path)?,
    }))
}
