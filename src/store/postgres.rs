//! The PostgreSQL metadata store, for several gateway replicas on one store: the connection
//! pool ([`pool`]), `SLUICE_METADATA_URL` ([`settings`]), migrations (the shared list in
//! [`super::migrations`], the version in `sluice_schema`), and one file per aggregate
//! implementing its trait, as for SQLite: [`catalog`], [`users`], [`mfa`], [`sessions`],
//! [`tokens`], [`api_keys`], [`members`], [`audit`], [`sealed`], [`health`], with the
//! helpers they share in [`rows`]; [`listen`] pushes catalog and account change notices to the replicas.
//!
//! Each trait method is one transaction (or one statement, which PostgreSQL runs as one),
//! with the SQLite store's semantics. Where SQLite relied on its single writer (IMMEDIATE
//! transactions), this store takes the lock that the operation needs explicitly: the
//! conditional single statements (lockout counting, a checked sign-in, spending a token or a
//! recovery code, the TOTP replay guard) rely on PostgreSQL re-checking an UPDATE's
//! condition on the row it waited for; a catalog apply takes a transaction-level advisory
//! lock, so a conditional apply's check and write are one step across replicas; an audit
//! append locks the chain's head row (`SELECT ... FOR UPDATE`), so appends from several
//! replicas never fork the chain; reads that must be one state (the catalog with its
//! revision, the audit walk, every sealed value) run in REPEATABLE READ.
//!
//! Migrations run under a session advisory lock: replicas starting together migrate once,
//! the others wait and find the schema current. Every value arriving here is already hashed
//! or sealed; this module stores and compares them and never logs them, and its errors carry
//! no DETAIL from the server ([`PgError`](super::error::PgError)).

use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::StoreError;
use super::error::PgError;
use super::migrations::MIGRATIONS;

mod api_keys;
mod audit;
mod buckets;
mod catalog;
mod health;
mod identities;
mod listen;
mod members;
mod mfa;
mod pool;
mod rows;
mod scim;
mod sealed;
mod sessions;
pub mod settings;
mod tokens;
mod users;

pub use settings::PgSettings;

/// The advisory lock key migrations hold (any constant both builds agree on: "sluice-m").
const MIGRATION_LOCK: i64 = 0x736c_7569_6365_2d6d;
/// The channel a committed catalog apply notifies ([`listen`]).
pub(super) const CATALOG_CHANNEL: &str = "sluice_catalog";
/// The channel the account triggers notify: a deleted session, a changed or deleted user, a
/// changed or deleted API key ([`listen`]; migration 8).
pub(super) const AUTH_CHANNEL: &str = "sluice_auth";
/// The transaction-level advisory lock key of a catalog apply and a re-seal of the catalog.
pub(super) const CATALOG_LOCK: i64 = 0x736c_7569_6365_2d63;

/// Connections the store keeps open at most. Metadata calls are short and rare on the hot
/// path (a session or key lookup per request at most), so a handful serves a replica.
pub const POOL_SIZE: usize = 8;

/// The PostgreSQL-backed store.
pub struct PostgresStore {
    pool: pool::Pool,
    /// The catalog and account change notices, once asked for ([`listen`]).
    notices: std::sync::OnceLock<listen::Notices>,
    /// The shared rate-limit buckets, once asked for ([`buckets`]).
    buckets: std::sync::OnceLock<std::sync::Arc<buckets::PgBuckets>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("store", &self.describe())
            .finish()
    }
}

fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres {
        context,
        source: PgError::new(source),
    }
}

/// How a transaction body ends: committed, or rolled back (a refused change whose first
/// steps, such as spending a token, must not stay).
pub(super) enum Finish<T> {
    Commit(T),
    Rollback(T),
}

impl PostgresStore {
    /// Connects to the store `settings` names, creates its schema or brings it up to date
    /// (once, whatever the number of replicas starting at the same time), and refuses a
    /// store newer than this build ([`StoreError::TooNew`]).
    pub fn open(settings: PgSettings) -> Result<PostgresStore, StoreError> {
        let pool = pool::Pool::new(settings, POOL_SIZE)?;
        let mut client = pool.connect()?;
        pool::block_on(migrate(&mut client))?;
        drop(client);
        Ok(PostgresStore {
            pool,
            notices: std::sync::OnceLock::new(),
            buckets: std::sync::OnceLock::new(),
        })
    }

    /// The store's name for logs: the URL without its password.
    pub fn describe(&self) -> &str {
        self.pool.settings().describe()
    }

    /// Runs `body` with a pooled client (one statement, or several that need no
    /// transaction).
    pub(super) fn with_client<T>(
        &self,
        body: impl AsyncFnOnce(&Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = self.pool.get()?;
        pool::block_on(body(&client))
    }

    /// Runs `body` in one READ COMMITTED transaction, committed when it returns
    /// [`Finish::Commit`] and rolled back on [`Finish::Rollback`] or an error.
    pub(super) fn write<T>(
        &self,
        context: &'static str,
        body: impl AsyncFnOnce(&Transaction<'_>) -> Result<Finish<T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(context, IsolationLevel::ReadCommitted, false, body)
    }

    /// Runs `body` in one REPEATABLE READ, read-only transaction: everything it reads is
    /// one state, whatever commits meanwhile.
    pub(super) fn read<T>(
        &self,
        context: &'static str,
        body: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(context, IsolationLevel::RepeatableRead, true, async |tx| {
            body(tx).await.map(Finish::Commit)
        })
    }

    fn transaction<T>(
        &self,
        context: &'static str,
        isolation: IsolationLevel,
        read_only: bool,
        body: impl AsyncFnOnce(&Transaction<'_>) -> Result<Finish<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get()?;
        pool::block_on(async {
            let tx = client
                .build_transaction()
                .isolation_level(isolation)
                .read_only(read_only)
                .start()
                .await
                .map_err(pg(context))?;
            match body(&tx).await {
                Ok(Finish::Commit(value)) => {
                    tx.commit().await.map_err(pg(context))?;
                    Ok(value)
                }
                Ok(Finish::Rollback(value)) => {
                    tx.rollback().await.map_err(pg(context))?;
                    Ok(value)
                }
                // Dropping the transaction rolls it back.
                Err(error) => Err(error),
            }
        })
    }
}

/// Brings the schema up to date under the migration lock, each migration in its own
/// transaction with the version it reaches.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg("taking the migration lock"))?;
    let outcome = migrate_locked(client).await;
    // Released with the connection too, should this fail.
    let _ = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome
}

async fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS sluice_schema (
                 id      INTEGER PRIMARY KEY CHECK (id = 1),
                 version BIGINT NOT NULL
             );
             INSERT INTO sluice_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
        )
        .await
        .map_err(pg("creating the schema version table"))?;
    let version: i64 = client
        .query_one("SELECT version FROM sluice_schema WHERE id = 1", &[])
        .await
        .map_err(pg("reading the schema version"))?
        .get(0);
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = client
            .transaction()
            .await
            .map_err(pg("starting a migration"))?;
        tx.batch_execute(migration.postgres)
            .await
            .map_err(pg("running a migration"))?;
        tx.execute(
            "UPDATE sluice_schema SET version = $1 WHERE id = 1",
            &[&(index as i64 + 1)],
        )
        .await
        .map_err(pg("recording the schema version"))?;
        tx.commit().await.map_err(pg("committing a migration"))?;
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

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
