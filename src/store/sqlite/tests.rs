//! Tests of what only the SQLite store has (its file, upgrades from old schema versions,
//! the readiness check of a file), under `tests/`, and the single steps the conformance
//! suite (`store::conformance`, run against both stores) calls on a SQLite store.

mod audit;
mod catalog;
mod health;

use super::*;
use crate::auth::Role;
use crate::store::audit::{AuditEvent, AuditStore};
use crate::store::catalog::CatalogStore;
use crate::store::members::MemberStore;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::{TokenPurpose, TokenRecord};
use crate::store::users::{NewUser, SignIn, UserStore};

const NOW: i64 = 1_700_000_000;

/// The single steps the trait's operations are made of, for tests that pin each
/// statement's own semantics (the trait offers them only combined).
impl SqliteStore {
    pub(crate) fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError> {
        super::users::set_role(&self.lock(), id, role)
    }

    pub(crate) fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        super::users::set_groups(&self.lock(), id, groups)
    }

    pub(crate) fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError> {
        super::users::set_email(&self.lock(), id, email)
    }

    pub(crate) fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        super::users::set_password(&self.lock(), id, hash)
    }

    /// A success for the account as it is now; false unless admitted.
    pub(crate) fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let Some(verified) = self.user_by_id(id)? else {
            return Ok(false);
        };
        Ok(super::users::record_login_success(&self.lock(), &verified, now)? == SignIn::Admitted)
    }

    pub(crate) fn turn_mfa_on(&self, id: &str) -> Result<(), StoreError> {
        super::mfa::turn_mfa_on(&self.lock(), id)
    }

    pub(crate) fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        super::sessions::insert_session(&self.lock(), session)
    }

    pub(crate) fn set_session_authenticated(
        &self,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        super::sessions::set_session_authenticated(&self.lock(), user_id, token_hash, now)
    }

    pub(crate) fn consume_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        super::tokens::consume_token(&self.lock(), token_hash, purpose, now)
    }

    pub(crate) fn revoke_user_tokens(
        &self,
        user_id: &str,
        purpose: TokenPurpose,
    ) -> Result<(), StoreError> {
        super::tokens::revoke_user_tokens(&self.lock(), user_id, purpose, NOW)
    }

    /// Runs `sql` on the store's connection, outside its methods; the error's text.
    pub(crate) fn execute_raw(&self, sql: &str) -> Result<(), String> {
        self.lock()
            .execute_batch(sql)
            .map_err(|error| error.to_string())
    }

    /// One number read with raw SQL.
    pub(crate) fn query_number(&self, sql: &str) -> i64 {
        self.lock().query_row(sql, [], |row| row.get(0)).unwrap()
    }
}

fn new_user(id: &str, email: &str) -> NewUser {
    NewUser {
        id: id.into(),
        email: email.into(),
        display_name: format!("User {id}"),
        role: Role::Developer,
        groups: vec!["eng".into(), "ops".into()],
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        created_at: NOW,
    }
}

fn audit(event: &str, at: i64) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        event: event.into(),
        user_id: Some("u1".into()),
        email: Some("u1@example.com".into()),
        actor: Some("cli".into()),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
        reason: Some("wrong_password".into()),
        details: Some(r#"{"role":"admin"}"#.into()),
    }
}

#[test]
fn a_version_1_store_migrates_and_keeps_its_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    {
        // A store as the previous release left it: the catalog tables only.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::MIGRATIONS[0].sqlite).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO apps (name, visibility, updated_at) \
             VALUES ('shop', 'private', '2024-01-01T00:00:00.000Z')",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = store
        .lock()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, super::MIGRATIONS.len() as i64);
    assert!(store.load_catalog().unwrap().apps.contains_key("shop"));
    store
        .create_user(&new_user("u1", "u1@example.com"))
        .unwrap();
    store.add_app_member("shop", "u1", false).unwrap();
    drop(store);

    // Reopening runs nothing again and keeps the new data.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count_users().unwrap(), 1);
    assert!(store.is_app_member("shop", "u1").unwrap());
}
