//! [`MemberStore`] for the SQLite store: the `app_members` table (no foreign key to `apps`,
//! so a catalog apply keeps the members).

use rusqlite::{OptionalExtension, params};

use super::rows::insert_error;
use super::{SqliteStore, sqlite};
use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;
use crate::store::members::MemberStore;

impl MemberStore for SqliteStore {
    /// Adding a member twice is not an error. `added_at` takes the wall clock (the trait
    /// passes no time); it is only a record.
    fn add_app_member(&self, app: &str, user_id: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO app_members (app, user_id, added_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
                params![app, user_id, SystemClock.now()],
            )
            .map_err(insert_error("adding an app member", "app member"))?;
        Ok(())
    }

    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .lock()
            .execute(
                "DELETE FROM app_members WHERE app = ?1 AND user_id = ?2",
                params![app, user_id],
            )
            .map_err(sqlite("removing an app member"))?;
        Ok(deleted > 0)
    }

    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.lock()
            .query_row(
                "SELECT 1 FROM app_members WHERE app = ?1 AND user_id = ?2",
                params![app, user_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(sqlite("reading app members"))
    }

    fn app_members(&self, app: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT user_id FROM app_members WHERE app = ?1 ORDER BY added_at, user_id")
            .map_err(sqlite("reading app members"))?;
        stmt.query_map([app], |row| row.get(0))
            .map_err(sqlite("reading app members"))?
            .collect::<Result<_, _>>()
            .map_err(sqlite("reading app members"))
    }
}
