//! The store conformance suite: one set of tests, written once against the store traits,
//! run against both stores. Each file under `conformance/` holds one aggregate's tests; the
//! [`suite!`] macro compiles every file twice, once in `sqlite` (a fresh SQLite file per
//! test) and once in `postgres` (a fresh PostgreSQL database per test, made and dropped by
//! `postgres::testing`, so tests run in parallel; they fail, never skip, without the server
//! on 127.0.0.1:5432). A test reaches its store through a [`Harness`], which derefs to
//! [`Store`] and adds what a test needs beyond the traits, for either store: the single
//! steps the trait methods are made of (to set up or pin a statement's semantics), raw SQL
//! (to show the triggers refuse it), an injected failure at one step (to show a method is
//! one transaction: a failure half-way changes nothing), a second store on the same data
//! (two processes or replicas), and a reopen (migrations, version refusal).
//!
//! A new aggregate or migration gets its tests here, so both stores are held to them; tests
//! of what only one store has (SQLite's file, backup, old-version upgrades) stay beside
//! that store (`sqlite/tests/`).

use std::ops::Deref;

use super::postgres::testing::TestDatabase;
use super::{PostgresStore, SqliteStore, Store, StoreError};
use crate::auth::Role;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyScope};
use crate::store::audit::AuditEvent;
#[allow(unused_imports)]
use crate::store::sessions::{SessionChange, SessionRecord};
use crate::store::tokens::{TokenPurpose, TokenRecord};
#[allow(unused_imports)]
use crate::store::users::{FailureCount, NewUser, SignIn, UserRecord};

const NOW: i64 = 1_700_000_000;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test, with what the tests need beyond the traits.
#[allow(clippy::large_enum_variant)]
enum Harness {
    Sqlite {
        store: SqliteStore,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: PostgresStore,
        database: TestDatabase,
    },
}

impl Deref for Harness {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Harness::Sqlite { store, .. } => store,
            Harness::Postgres { store, .. } => store,
        }
    }
}

/// Calls the same single step on whichever store the harness holds.
macro_rules! step {
    ($harness:expr, $method:ident ( $($arg:expr),* )) => {
        match $harness {
            Harness::Sqlite { store, .. } => store.$method($($arg),*),
            Harness::Postgres { store, .. } => store.$method($($arg),*),
        }
    };
}

impl Harness {
    fn new(backend: Backend) -> Harness {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("sluice.db");
                Harness::Sqlite {
                    store: SqliteStore::open(&path).unwrap(),
                    path,
                    _dir: dir,
                }
            }
            Backend::Postgres => {
                let database = TestDatabase::new();
                Harness::Postgres {
                    store: database.open(),
                    database,
                }
            }
        }
    }

    fn backend(&self) -> Backend {
        match self {
            Harness::Sqlite { .. } => Backend::Sqlite,
            Harness::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Another store on the same data: another process on the SQLite file, another replica
    /// on the PostgreSQL database. Opening it migrates (or refuses) as a start-up does.
    fn open_again(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(match self {
            Harness::Sqlite { path, .. } => Box::new(SqliteStore::open(path)?),
            Harness::Postgres { database, .. } => {
                Box::new(PostgresStore::open(database.settings())?)
            }
        })
    }

    /// Runs `sql` outside the store's methods (as someone with access to the database
    /// would); the error's text when the database refuses it.
    fn raw(&self, sql: &str) -> Result<(), String> {
        match self {
            Harness::Sqlite { store, .. } => store.execute_raw(sql),
            Harness::Postgres { database, .. } => {
                database
                    .execute(sql)
                    .map_err(|error| match error.as_db_error() {
                        Some(db) => db.message().to_string(),
                        None => error.to_string(),
                    })
            }
        }
    }

    /// One number read with raw SQL.
    fn number(&self, sql: &str) -> i64 {
        match self {
            Harness::Sqlite { store, .. } => store.query_number(sql),
            Harness::Postgres { database, .. } => database.query_number(sql),
        }
    }

    /// An attacker with access to the database: drops one of the audit log's triggers and
    /// runs `sql`.
    fn tamper(&self, trigger: &str, sql: &str) {
        let drop = match self.backend() {
            Backend::Sqlite => format!("DROP TRIGGER {trigger};"),
            Backend::Postgres => {
                let table = if trigger.starts_with("audit_chain") {
                    "audit_chain"
                } else {
                    "audit_events"
                };
                format!("DROP TRIGGER {trigger} ON {table};")
            }
        };
        self.raw(&format!("{drop} {sql}")).unwrap();
    }

    /// Makes every statement of kind `event` (`DELETE ON sessions`, `INSERT ON users`, ...)
    /// fail from now on, as an error or a crash at that step would.
    fn fail_at(&self, event: &str) {
        match self {
            Harness::Sqlite { store, .. } => store
                .execute_raw(&format!(
                    "CREATE TEMP TRIGGER injected_failure BEFORE {event} \
                     BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
                ))
                .unwrap(),
            Harness::Postgres { database, .. } => {
                let (operation, table) = event.split_once(" ON ").expect("OPERATION ON table");
                database
                    .execute(&format!(
                        "CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS \
                         $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
                         CREATE TRIGGER injected_failure BEFORE {operation} ON {table} \
                         FOR EACH ROW EXECUTE FUNCTION injected_failure();"
                    ))
                    .unwrap();
            }
        }
    }

    fn stop_failing(&self) {
        match self {
            Harness::Sqlite { store, .. } => store
                .execute_raw("DROP TRIGGER temp.injected_failure")
                .unwrap(),
            Harness::Postgres { database, .. } => database
                .execute("DROP FUNCTION injected_failure() CASCADE")
                .unwrap(),
        }
    }

    // The single steps the trait's operations are made of (see each store's tests impl).

    fn set_role(&self, id: &str, role: Role) -> Result<(), StoreError> {
        step!(self, set_role(id, role))
    }

    fn set_groups(&self, id: &str, groups: &[String]) -> Result<(), StoreError> {
        step!(self, set_groups(id, groups))
    }

    fn set_email(&self, id: &str, email: &str) -> Result<(), StoreError> {
        step!(self, set_email(id, email))
    }

    fn set_password(&self, id: &str, hash: &str) -> Result<(), StoreError> {
        step!(self, set_password(id, hash))
    }

    /// A success for the account as it is now; false unless admitted.
    fn record_login_success(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        step!(self, record_login_success(id, now))
    }

    fn turn_mfa_on(&self, id: &str) -> Result<(), StoreError> {
        step!(self, turn_mfa_on(id))
    }

    fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        step!(self, create_session(session))
    }

    fn set_session_authenticated(
        &self,
        user_id: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        step!(self, set_session_authenticated(user_id, token_hash, now))
    }

    fn consume_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        step!(self, consume_token(token_hash, purpose, now))
    }

    fn revoke_user_tokens(&self, user_id: &str, purpose: TokenPurpose) -> Result<(), StoreError> {
        step!(self, revoke_user_tokens(user_id, purpose))
    }
}

fn assert_injected<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    let injected = match &result {
        Err(StoreError::Sqlite { source, .. }) => source.to_string().contains("injected failure"),
        Err(StoreError::Postgres { source, .. }) => source.to_string().contains("injected failure"),
        _ => false,
    };
    assert!(injected, "expected the injected failure, got {result:?}");
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

fn with_user_on(backend: Backend, id: &str) -> Harness {
    let store = Harness::new(backend);
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

fn session_ids(store: &Harness, user_id: &str) -> Vec<String> {
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
fn accounts_on(backend: Backend) -> Harness {
    let store = with_user_on(backend, "u1");
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

fn usable(store: &Harness, hash: &str, purpose: TokenPurpose) -> bool {
    store.find_token(hash, purpose, NOW).unwrap().is_some()
}

/// Compiles each file of the suite into a module whose fixtures make stores of `$backend`.
macro_rules! suite {
    ($backend:expr; $($file:ident),* $(,)?) => {
        $(
            mod $file {
                #[allow(unused_imports)]
                use super::super::*;

                const BACKEND: Backend = $backend;

                #[allow(dead_code)]
                fn store() -> Harness {
                    Harness::new(BACKEND)
                }

                #[allow(dead_code)]
                fn with_user(id: &str) -> Harness {
                    with_user_on(BACKEND, id)
                }

                #[allow(dead_code)]
                fn accounts() -> Harness {
                    accounts_on(BACKEND)
                }

                include!(concat!("conformance/", stringify!($file), ".rs"));
            }
        )*
    };
}

mod sqlite {
    suite!(Backend::Sqlite; api_keys, audit, catalog, identities, members, scim, mfa, migrations, replicas, sealed, sessions, tokens, users);
}

mod postgres {
    suite!(Backend::Postgres; api_keys, audit, catalog, identities, members, scim, mfa, migrations, replicas, sealed, sessions, tokens, users);
}
