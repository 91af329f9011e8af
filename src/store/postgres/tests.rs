//! What only the PostgreSQL store has: replicas starting together on a new database, losing
//! connections, and an unreachable server named without its password. (Everything the two
//! stores share is in `store::conformance`.)

use std::sync::{Arc, Barrier};

use super::testing::TestDatabase;
use super::{PgSettings, PostgresStore};
use crate::store::StoreError;
use crate::store::health::HealthStore;
use crate::store::migrations::MIGRATIONS;
use crate::store::users::{NewUser, UserStore};

fn user(id: &str) -> NewUser {
    NewUser {
        id: id.into(),
        email: format!("{id}@example.com"),
        display_name: id.into(),
        role: crate::auth::Role::Viewer,
        groups: vec![],
        password_hash: None,
        created_at: 1,
    }
}

#[test]
fn replicas_starting_together_on_a_new_database_migrate_it_once() {
    let database = TestDatabase::new();
    let barrier = Arc::new(Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let settings = database.settings();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::open(settings)
            })
        })
        .collect();
    let stores: Vec<PostgresStore> = opened
        .into_iter()
        .map(|thread| thread.join().unwrap().unwrap())
        .collect();
    assert_eq!(
        database.query_number("SELECT version FROM sluice_schema"),
        MIGRATIONS.len() as i64
    );
    stores[0].create_user(&user("u1")).unwrap();
    assert_eq!(stores[3].count_users().unwrap(), 1);
}

#[test]
fn a_store_reconnects_after_its_connections_are_terminated() {
    let database = TestDatabase::new();
    let store = database.open();
    store.create_user(&user("u1")).unwrap();
    store.check_reachable().unwrap();
    database
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .unwrap();
    // The closed connections are noticed by their I/O task; the next call opens a new one.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(store.count_users().unwrap(), 1);
    store.check_reachable().unwrap();
}

#[test]
fn an_unreachable_server_fails_without_its_password() {
    let settings =
        PgSettings::parse("postgres://sluice:hunter2-secret@127.0.0.1:1/meta", None).unwrap();
    let error = PostgresStore::open(settings).unwrap_err();
    assert!(matches!(error, StoreError::Postgres { .. }), "{error:?}");
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(!chain.contains("hunter2"), "{chain}");
    assert!(!format!("{error:?}").contains("hunter2"));
}

#[test]
fn a_catalog_apply_on_one_replica_is_noticed_by_another_and_a_refused_one_is_not() {
    use crate::spec::CatalogSpec;
    use crate::store::catalog::CatalogStore;
    use std::time::Duration;

    let database = TestDatabase::new();
    let a = database.open();
    let b = database.open();
    let mut changes = a
        .catalog_changes()
        .expect("PostgreSQL pushes catalog changes");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut next = |limit: Duration| {
        runtime
            .block_on(async { tokio::time::timeout(limit, changes.changed()).await })
            .is_ok()
    };
    // The listener's connection counts as a notice (anything before it went unseen).
    assert!(next(Duration::from_secs(5)), "the listener connects");
    b.replace_catalog(&CatalogSpec::default(), "b").unwrap();
    assert!(next(Duration::from_secs(5)), "b's apply is noticed by a");
    assert!(matches!(
        b.replace_catalog_at(&CatalogSpec::default(), "b", 0),
        Err(StoreError::RevisionMoved { .. })
    ));
    assert!(
        !next(Duration::from_millis(500)),
        "a refused apply (rolled back) announces nothing"
    );
    a.replace_catalog(&CatalogSpec::default(), "a").unwrap();
    assert!(next(Duration::from_secs(5)), "a's own apply is noticed too");
}
