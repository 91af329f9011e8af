//! [`MemberStore`] for the SQLite store: the `app_members` table (no foreign key to `apps`,
//! so a catalog apply keeps the members).

use rusqlite::{OptionalExtension, params};

use super::rows::insert_error;
use super::{SqliteStore, sqlite};
use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;
use crate::store::members::{AppMember, MemberStore};

impl MemberStore for SqliteStore {
    /// Adding a member twice is not an error (it sets the editor flag). `added_at` takes
    /// the wall clock (the trait passes no time); it is only a record.
    fn add_app_member(&self, app: &str, user_id: &str, editor: bool) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO app_members (app, user_id, added_at, editor) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (app, user_id) DO UPDATE SET editor = excluded.editor",
                params![app, user_id, SystemClock.now(), editor],
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

    fn remove_app_members(&self, app: &str) -> Result<usize, StoreError> {
        self.lock()
            .execute("DELETE FROM app_members WHERE app = ?1", [app])
            .map_err(sqlite("removing an app's members"))
    }

    fn is_app_editor(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.lock()
            .query_row(
                "SELECT editor FROM app_members WHERE app = ?1 AND user_id = ?2",
                params![app, user_id],
                |row| row.get::<_, bool>(0),
            )
            .optional()
            .map(|editor| editor.unwrap_or(false))
            .map_err(sqlite("reading app members"))
    }

    fn app_members(&self, app: &str) -> Result<Vec<AppMember>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT user_id, editor FROM app_members WHERE app = ?1 \
                 ORDER BY added_at, user_id",
            )
            .map_err(sqlite("reading app members"))?;
        stmt.query_map([app], |row| {
            Ok(AppMember {
                user_id: row.get(0)?,
                editor: row.get(1)?,
            })
        })
        .map_err(sqlite("reading app members"))?
        .collect::<Result<_, _>>()
        .map_err(sqlite("reading app members"))
    }
}
