//! Test databases for the PostgreSQL store: each test gets a fresh, uniquely named database
//! on the local server (127.0.0.1:5432, user `postgres`), dropped when the test ends, so
//! tests run in parallel. A test fails (never skips) when the server is not there.

use super::pool::{Pool, block_on};
use super::users::update_user;
use super::{PgSettings, PostgresStore, sessions, tokens, users};
use crate::auth::Role;
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::{TokenPurpose, TokenRecord};
use crate::store::users::SignIn;

/// The server the tests use.
pub(crate) const SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one test, dropped with it.
pub(crate) struct TestDatabase {
    name: String,
    settings: PgSettings,
}

fn admin() -> Pool {
    Pool::new(PgSettings::parse(SERVER, None).unwrap(), 1).unwrap()
}

impl TestDatabase {
    pub(crate) fn new() -> TestDatabase {
        let name = format!("sluice_store_{}", uuid::Uuid::new_v4().simple());
        let pool = admin();
        let client = pool.connect().unwrap_or_else(|error| {
            panic!("PostgreSQL on 127.0.0.1:5432 is needed by the store tests: {error}")
        });
        block_on(client.batch_execute(&format!("CREATE DATABASE {name}"))).unwrap();
        let settings = PgSettings::parse(SERVER, None)
            .unwrap()
            .with_database(&name);
        TestDatabase { name, settings }
    }

    pub(crate) fn settings(&self) -> PgSettings {
        self.settings.clone()
    }

    pub(crate) fn open(&self) -> PostgresStore {
        PostgresStore::open(self.settings()).unwrap()
    }

    /// Runs `sql` on the test database with a connection of its own.
    pub(crate) fn execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        let pool = Pool::new(self.settings(), 1).unwrap();
        let client = pool.connect().unwrap();
        block_on(client.batch_execute(sql))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let pool = admin();
        if let Ok(client) = pool.connect() {
            let _ = block_on(client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )));
        }
    }
}

impl TestDatabase {
    /// One number read with raw SQL, on a connection of its own.
    pub(crate) fn query_number(&self, sql: &str) -> i64 {
        let pool = Pool::new(self.settings(), 1).unwrap();
        let client = pool.connect().unwrap();
        block_on(client.query_one(sql, &[])).unwrap().get(0)
    }
}

/// The single steps the trait's operations are made of, for the conformance suite's tests
/// that pin each statement's own semantics (the trait offers them only combined).
impl PostgresStore {
    pub(crate) fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError> {
        self.with_client(async |db| {
            update_user(
                db,
                "UPDATE users SET role = $2 WHERE id = $1",
                &[&id, &role.as_str()],
                "changing a role",
            )
            .await
        })
    }

    pub(crate) fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        self.with_client(async |db| {
            update_user(
                db,
                "UPDATE users SET \"groups\" = $2 WHERE id = $1",
                &[&id, &serde_json::to_string(groups).unwrap()],
                "changing groups",
            )
            .await
        })
    }

    pub(crate) fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError> {
        self.with_client(async |db| users::set_email(db, id, email).await)
    }

    pub(crate) fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        self.with_client(async |db| users::set_password(db, id, hash).await)
    }

    /// A success for the account as it is now; false unless admitted.
    pub(crate) fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let Some(verified) = users::user_by_id(db, id).await? else {
                return Ok(false);
            };
            Ok(users::record_login_success(db, &verified, now).await? == SignIn::Admitted)
        })
    }

    pub(crate) fn turn_mfa_on(&self, id: &str) -> Result<(), StoreError> {
        self.with_client(async |db| {
            update_user(
                db,
                "UPDATE users SET mfa_enabled = TRUE WHERE id = $1",
                &[&id],
                "enabling MFA",
            )
            .await
        })
    }

    pub(crate) fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.with_client(async |db| sessions::insert_session(db, session).await)
    }

    pub(crate) fn set_session_authenticated(
        &self,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.with_client(async |db| {
            sessions::set_session_authenticated(db, user_id, token_hash, now).await
        })
    }

    pub(crate) fn consume_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.with_client(async |db| tokens::consume_token(db, token_hash, purpose, now).await)
    }

    pub(crate) fn revoke_user_tokens(
        &self,
        user_id: &str,
        purpose: TokenPurpose,
    ) -> Result<(), StoreError> {
        self.with_client(async |db| {
            tokens::revoke_user_tokens(db, user_id, purpose, 1_700_000_000).await
        })
    }
}
