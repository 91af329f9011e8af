//! [`HealthStore`] for the PostgreSQL store: a pooled connection answers, and the schema is
//! the version this build opened (a store migrated by a newer replica, or restored from an
//! older dump, is not the one this replica serves). Never writes.

use super::{PostgresStore, pg};
use crate::store::StoreError;
use crate::store::health::HealthStore;
use crate::store::migrations::MIGRATIONS;

impl HealthStore for PostgresStore {
    fn check_reachable(&self) -> Result<(), StoreError> {
        self.with_client(async |db| {
            let version: i64 = db
                .query_one("SELECT version FROM sluice_schema WHERE id = 1", &[])
                .await
                .map_err(pg("checking the database"))?
                .get(0);
            if version != MIGRATIONS.len() as i64 {
                return Err(StoreError::Unreachable(
                    "the store's schema version is not the one opened at start-up",
                ));
            }
            Ok(())
        })
    }
}
