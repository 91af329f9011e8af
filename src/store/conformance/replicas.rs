// Two stores on the same data (two processes on one SQLite file, two replicas on one
// PostgreSQL database), racing: each operation that must not race stays exact.

use std::sync::{Arc, Barrier};

use crate::spec::CatalogSpec;
use crate::spec::yaml;

/// Runs `work(store, i)` on `n` threads at once, alternating between the harness's store
/// and a second one on the same data; the results in thread order.
fn race<T: Send + 'static>(
    store: &Harness,
    n: usize,
    work: impl Fn(&dyn Store, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let stores: [Arc<dyn Store>; 2] = [
        Arc::from(store.open_again().unwrap()),
        Arc::from(store.open_again().unwrap()),
    ];
    let barrier = Arc::new(Barrier::new(n));
    let work = Arc::new(work);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let store = stores[i % 2].clone();
            let barrier = barrier.clone();
            let work = work.clone();
            std::thread::spawn(move || {
                barrier.wait();
                work(store.as_ref(), i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn failures_from_every_store_lock_the_account_at_the_threshold_exactly() {
    let store = with_user("u1");
    let outcomes = race(&store, 5, |store, _| {
        store.record_login_failure("u1", NOW, 5, 900).unwrap()
    });
    let mut counts: Vec<u32> = outcomes.iter().map(|o| o.failed_logins).collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 3, 4, 5], "every failure counted once");
    let locking: Vec<_> = outcomes.iter().filter(|o| o.locked_until.is_some()).collect();
    assert_eq!(locking.len(), 1, "exactly the fifth failure locks: {outcomes:?}");
    assert_eq!(locking[0].failed_logins, 5);
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.locked_until, Some(NOW + 900));
}

#[test]
fn a_reset_token_is_spent_once_across_stores() {
    let store = with_user("u1");
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    let outcomes = race(&store, 6, |store, i| {
        store
            .complete_password_reset("r1", "u1", &format!("hash-{i}"), NOW)
            .unwrap()
    });
    let winners: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_some())
        .collect();
    assert_eq!(winners.len(), 1, "one reset wins: {outcomes:?}");
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        user.password_hash,
        Some(format!("hash-{}", winners[0].0)),
        "the winner's password is the one set"
    );
}

#[test]
fn conditional_catalog_writes_from_two_stores_never_both_win() {
    let store = store();
    let spec = yaml::parse("apps:\n  shop:\n    visibility: public\n").unwrap();
    let outcomes = race(&store, 4, move |store, i| {
        let source = format!("writer {i}");
        if i % 2 == 0 {
            store.replace_catalog_at(&spec, &source, 0)
        } else {
            store.replace_catalog_at(&CatalogSpec::default(), &source, 0)
        }
    });
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    for outcome in &outcomes {
        match outcome {
            Ok(revision) => assert_eq!(*revision, 1),
            Err(StoreError::RevisionMoved {
                expected: 0,
                current: 1,
            }) => {}
            Err(other) => panic!("expected RevisionMoved, got {other}"),
        }
    }
    assert_eq!(store.catalog_history(10).unwrap().len(), 1);
}

#[test]
fn a_session_opened_on_one_store_is_seen_and_ended_on_the_other() {
    let store = with_user("u1");
    let other = store.open_again().unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        store
            .complete_login(&user, NOW, &session("s1", "p1", "u1", NOW), None)
            .unwrap(),
        SignIn::Admitted
    );
    assert_eq!(
        other.session_by_hash("s1").unwrap().map(|s| s.user_id),
        Some("u1".to_string())
    );
    other
        .set_role_and_end_sessions("u1", Role::Viewer)
        .unwrap();
    assert_eq!(store.session_by_hash("s1").unwrap(), None);
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().role, Role::Viewer);
}

#[test]
fn concurrent_audit_appends_from_two_stores_make_one_chain() {
    let store = store();
    race(&store, 4, |store, i| {
        for n in 0..15 {
            store
                .append_audit(&audit(&format!("writer_{i}"), NOW + n))
                .unwrap();
        }
    });
    let verified = crate::store::audit::verify(&*store).unwrap();
    assert_eq!((verified.entries, verified.last_id), (60, 60));
}
