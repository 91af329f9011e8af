//! The readiness check on real files: a store is reachable while its database file is where
//! and what it was at open, and recovers when the file comes back.

use super::*;
use crate::store::health::HealthStore;

fn unreachable_because(store: &SqliteStore) -> String {
    match store.check_reachable() {
        Err(error) => error.to_string(),
        Ok(()) => panic!("the store was reachable"),
    }
}

#[test]
fn a_store_in_memory_is_reachable() {
    SqliteStore::in_memory().unwrap().check_reachable().unwrap();
}

#[test]
fn a_moved_database_file_is_unreachable_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store = SqliteStore::open(&path).unwrap();
    store.check_reachable().unwrap();

    let away = dir.path().join("elsewhere.db");
    std::fs::rename(&path, &away).unwrap();
    let reason = unreachable_because(&store);
    assert!(reason.contains("missing"), "{reason}");
    // The check never creates the file it did not find.
    assert!(!path.exists());

    std::fs::rename(&away, &path).unwrap();
    store.check_reachable().unwrap();
}

#[test]
fn a_replaced_database_file_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store = SqliteStore::open(&path).unwrap();

    // Another database at the same path (a restore while serving) is not the one served.
    let other = dir.path().join("other.db");
    drop(SqliteStore::open(&other).unwrap());
    std::fs::rename(&path, dir.path().join("old.db")).unwrap();
    std::fs::rename(&other, &path).unwrap();
    let reason = unreachable_because(&store);
    assert!(reason.contains("replaced"), "{reason}");

    // The file that was opened, back in its place, is the store again.
    std::fs::rename(dir.path().join("old.db"), &path).unwrap();
    store.check_reachable().unwrap();
}
