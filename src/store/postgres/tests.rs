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

/// Shared rate-limit buckets: replicas racing for one bucket get exactly its burst between
/// them; the refill follows the caller's clock; a refused take says when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_for_one_bucket_get_exactly_its_burst() {
    use crate::spec::rate::RateRule;
    use crate::store::buckets::BucketStore;

    let database = TestDatabase::new();
    let settings = database.settings();
    let stores: Vec<Arc<PostgresStore>> = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| Arc::new(PostgresStore::open(settings.clone()).unwrap()))
            .collect()
    })
    .await
    .unwrap();
    let rule = RateRule::per_minute(10);
    let now = 1_000_000_000;
    let mut takes = tokio::task::JoinSet::new();
    for i in 0..30 {
        let buckets = stores[i % 3].shared_buckets().unwrap();
        takes.spawn(async move { buckets.take("edge:192.0.2.1", rule, now).await.unwrap() });
    }
    let mut allowed = 0;
    while let Some(taken) = takes.join_next().await {
        match taken.unwrap() {
            None => allowed += 1,
            // One token per 6 s, from empty.
            Some(secs) => assert_eq!(secs, 6),
        }
    }
    assert_eq!(allowed, 10, "the burst, across replicas");
    let buckets = stores[0].shared_buckets().unwrap();
    // Another key has its own bucket; 6 s later one token is back, not two.
    assert_eq!(
        buckets.take("edge:192.0.2.2", rule, now).await.unwrap(),
        None
    );
    assert_eq!(
        buckets
            .take("edge:192.0.2.1", rule, now + 6_000)
            .await
            .unwrap(),
        None
    );
    assert!(
        buckets
            .take("edge:192.0.2.1", rule, now + 6_000)
            .await
            .unwrap()
            .is_some()
    );
    // A replica whose clock is behind adds nothing.
    assert!(
        buckets
            .take("edge:192.0.2.1", rule, now)
            .await
            .unwrap()
            .is_some()
    );
    // A rule that never refills says so.
    let never = RateRule {
        burst: 0,
        per_second: 0.0,
    };
    assert_eq!(
        buckets.take("edge:never", never, now).await.unwrap(),
        Some(u64::MAX)
    );
    assert_eq!(
        database.query_number("SELECT count(*) FROM rate_buckets"),
        3
    );
    drop(buckets);
    tokio::task::spawn_blocking(move || drop(stores))
        .await
        .unwrap();
}

/// The account triggers announce what a cache must forget, and nothing for sign-in
/// bookkeeping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_are_announced_to_every_listener() {
    use crate::store::sessions::{AuthChange, SessionStore};

    let database = TestDatabase::new();
    let settings = database.settings();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || PostgresStore::open(settings).unwrap())
            .await
            .unwrap(),
    );
    let mut changes = store.auth_changes().unwrap();
    let next = async |changes: &mut crate::store::sessions::AuthChanges| {
        tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
            .await
            .expect("a notice within 5 s")
            .unwrap()
    };
    assert_eq!(next(&mut changes).await, AuthChange::Listening);
    let writer = store.clone();
    tokio::task::spawn_blocking(move || {
        writer.create_user(&user("u1")).unwrap();
        // Bookkeeping: not announced.
        writer.record_login_success("u1", 5).unwrap();
        writer.set_role("u1", crate::auth::Role::Developer).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(next(&mut changes).await, AuthChange::User("u1".into()));
    let writer = store.clone();
    tokio::task::spawn_blocking(move || writer.delete_session("no-such-session").unwrap())
        .await
        .unwrap();
    // A delete of nothing announces nothing; the next notice is a real one.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), changes.recv())
            .await
            .is_err()
    );
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .unwrap();
}
