//! [`MemberStore`] for the PostgreSQL store: the `app_members` table (no foreign key to
//! `apps`, so a catalog apply keeps the members).

use super::rows::insert_error;
use super::{PostgresStore, pg};
use crate::clock::{Clock, SystemClock};
use crate::store::StoreError;
use crate::store::members::{AppMember, MemberStore};

impl MemberStore for PostgresStore {
    /// Adding a member twice is not an error (it sets the editor flag). `added_at` takes
    /// the wall clock (the trait passes no time); it is only a record.
    fn add_app_member(&self, app: &str, user_id: &str, editor: bool) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                "INSERT INTO app_members (app, user_id, added_at, editor) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app, user_id) DO UPDATE SET editor = excluded.editor",
                &[&app, &user_id, &SystemClock.now(), &editor],
            )
            .await
            .map_err(insert_error("adding an app member", "app member"))?;
            Ok(())
        })
    }

    fn remove_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let deleted = db
                .execute(
                    "DELETE FROM app_members WHERE app = $1 AND user_id = $2",
                    &[&app, &user_id],
                )
                .await
                .map_err(pg("removing an app member"))?;
            Ok(deleted > 0)
        })
    }

    fn is_app_member(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query_opt(
                    "SELECT 1 FROM app_members WHERE app = $1 AND user_id = $2",
                    &[&app, &user_id],
                )
                .await
                .map_err(pg("reading app members"))?
                .is_some())
        })
    }

    fn is_app_editor(&self, app: &str, user_id: &str) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query_opt(
                    "SELECT editor FROM app_members WHERE app = $1 AND user_id = $2",
                    &[&app, &user_id],
                )
                .await
                .map_err(pg("reading app members"))?
                .is_some_and(|row| row.get::<_, bool>(0)))
        })
    }

    fn app_members(&self, app: &str) -> Result<Vec<AppMember>, StoreError> {
        self.with_client(async |db| {
            Ok(db
                .query(
                    "SELECT user_id, editor FROM app_members WHERE app = $1 \
                     ORDER BY added_at, user_id COLLATE \"C\"",
                    &[&app],
                )
                .await
                .map_err(pg("reading app members"))?
                .iter()
                .map(|row| AppMember {
                    user_id: row.get(0),
                    editor: row.get(1),
                })
                .collect())
        })
    }

    fn remove_app_members(&self, app: &str) -> Result<usize, StoreError> {
        self.with_client(async |db| {
            let deleted = db
                .execute("DELETE FROM app_members WHERE app = $1", &[&app])
                .await
                .map_err(pg("removing an app's members"))?;
            Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
        })
    }
}
