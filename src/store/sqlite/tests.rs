//! Tests of the SQLite store, one file per aggregate under `tests/`, with the fixtures they
//! share here.

mod api_keys;
mod audit;
mod catalog;
mod health;
mod members;
mod mfa;
mod sessions;
mod tokens;
mod users;

use super::*;
use crate::auth::Role;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyScope, ApiKeyStore};
use crate::store::audit::{AuditEvent, AuditStore};
use crate::store::catalog::CatalogStore;
use crate::store::members::MemberStore;
use crate::store::mfa::MfaStore;
use crate::store::sessions::{SessionChange, SessionRecord, SessionStore};
use crate::store::tokens::{TokenPurpose, TokenRecord, TokenStore};
use crate::store::users::{FailureCount, NewUser, SignIn, UserRecord, UserStore};

const NOW: i64 = 1_700_000_000;

/// The single steps the trait's operations are made of, for tests that pin each
/// statement's own semantics (the trait offers them only combined).
impl SqliteStore {
    fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError> {
        super::users::set_role(&self.lock(), id, role)
    }

    fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        super::users::set_groups(&self.lock(), id, groups)
    }

    fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError> {
        super::users::set_email(&self.lock(), id, email)
    }

    fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        super::users::set_password(&self.lock(), id, hash)
    }

    /// A success for the account as it is now; false unless admitted.
    fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let Some(verified) = self.user_by_id(id)? else {
            return Ok(false);
        };
        Ok(super::users::record_login_success(&self.lock(), &verified, now)? == SignIn::Admitted)
    }

    fn turn_mfa_on(&self, id: &str) -> Result<(), StoreError> {
        super::mfa::turn_mfa_on(&self.lock(), id)
    }

    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        super::sessions::insert_session(&self.lock(), session)
    }

    fn set_session_authenticated(
        &self,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        super::sessions::set_session_authenticated(&self.lock(), user_id, token_hash, now)
    }

    fn consume_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        super::tokens::consume_token(&self.lock(), token_hash, purpose, now)
    }

    fn revoke_user_tokens(&self, user_id: &str, purpose: TokenPurpose) -> Result<(), StoreError> {
        super::tokens::revoke_user_tokens(&self.lock(), user_id, purpose, NOW)
    }
}

fn store() -> SqliteStore {
    SqliteStore::in_memory().unwrap()
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

fn with_user(id: &str) -> SqliteStore {
    let store = store();
    store
        .create_user(&new_user(id, &format!("{id}@example.com")))
        .unwrap();
    store
}

fn session(token_hash: &str, public_id: &str, user_id: &str, at: i64) -> SessionRecord {
    SessionRecord {
        token_hash: token_hash.into(),
        public_id: public_id.into(),
        user_id: user_id.into(),
        created_at: at,
        last_seen_at: at,
        authenticated_at: at,
        ip: "192.0.2.1".into(),
        user_agent: "test".into(),
    }
}

fn token(hash: &str, purpose: TokenPurpose, user_id: Option<&str>) -> TokenRecord {
    TokenRecord {
        token_hash: hash.into(),
        purpose,
        user_id: user_id.map(Into::into),
        email: "new@example.com".into(),
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

fn api_key(id: &str, user_id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        key_hash: format!("hash-{id}"),
        user_id: user_id.into(),
        name: format!("key {id}"),
        scope: ApiKeyScope {
            apps: vec!["shop".into()],
            queries: vec!["billing/invoices".into()],
        },
        created_at,
        expires_at: Some(created_at + 86_400),
        last_used_at: None,
        revoked_at: None,
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

// ----- Atomicity of the combined operations -----------------------------------------
//
// Each test makes one step of an operation fail — naturally (a taken email, a session id
// in use) or by an injected failure standing in for an error or a crash at that point —
// and checks that the steps before it did not happen either.

/// Makes every statement of kind `event` (`DELETE ON sessions`, ...) fail from now on,
/// as an error or a crash at that step would.
fn fail_at(store: &SqliteStore, event: &str) {
    store
        .lock()
        .execute_batch(&format!(
            "CREATE TEMP TRIGGER injected_failure BEFORE {event} \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        ))
        .unwrap();
}

fn stop_failing(store: &SqliteStore) {
    store
        .lock()
        .execute_batch("DROP TRIGGER temp.injected_failure")
        .unwrap();
}

fn assert_injected<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match &result {
        Err(StoreError::Sqlite { source, .. })
            if source.to_string().contains("injected failure") => {}
        _ => panic!("expected the injected failure, got {result:?}"),
    }
}

fn session_ids(store: &SqliteStore, user_id: &str) -> Vec<String> {
    let mut ids: Vec<_> = store
        .list_user_sessions(user_id)
        .unwrap()
        .into_iter()
        .map(|s| s.token_hash)
        .collect();
    ids.sort();
    ids
}

/// u1 with two sessions (`t1`, `t2`) and two failed logins; u2 with session `other`,
/// whose id a new session of u1 can collide with.
fn accounts() -> SqliteStore {
    let store = with_user("u1");
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    store
        .create_session(&session("t1", "p1", "u1", NOW))
        .unwrap();
    store
        .create_session(&session("t2", "p2", "u1", NOW))
        .unwrap();
    store
        .create_session(&session("other", "p-other", "u2", NOW))
        .unwrap();
    for _ in 0..2 {
        store.record_login_failure("u1", NOW, 5, 900).unwrap();
    }
    store
}

/// A new session for u1 whose id is taken (by u2's session): opening it fails.
fn colliding_session() -> SessionRecord {
    session("other", "p-new", "u1", NOW + 10)
}

fn usable(store: &SqliteStore, hash: &str, purpose: TokenPurpose) -> bool {
    store.find_token(hash, purpose, NOW).unwrap().is_some()
}

#[test]
fn a_version_1_store_migrates_and_keeps_its_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    {
        // A store as the previous release left it: the catalog tables only.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::MIGRATIONS[0]).unwrap();
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
