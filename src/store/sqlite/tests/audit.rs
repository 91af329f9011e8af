//! The audit log on a SQLite file: chaining the entries of a store from before the chain,
//! and refusing such a store read-only. (The log's behaviour on both stores is in
//! `store::conformance`.)

use super::*;
use crate::store::audit::chain::GENESIS;
use crate::store::audit::verify;

#[test]
fn existing_entries_are_chained_by_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let chain_at = crate::store::migrations::AUDIT_CHAIN;
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for migration in &MIGRATIONS[..chain_at] {
            tx.execute_batch(migration.sqlite).unwrap();
        }
        tx.pragma_update(None, "user_version", chain_at as i64)
            .unwrap();
        for n in 0..4 {
            tx.execute(
                "INSERT INTO audit_events (at, event, email) VALUES (?1, 'login_failed', 'a@example.com')",
                [NOW + n],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let verified = verify(&store).unwrap();
    assert_eq!((verified.entries, verified.last_id), (4, 4));
    assert_eq!(store.audit_after(0, 1).unwrap()[0].prev_hash, GENESIS);
    store.append_audit(&audit("after", NOW)).unwrap();
    assert_eq!(verify(&store).unwrap().entries, 5);
    // A read-only open of the same file (as for a backup) reads the same chain.
    drop(store);
    let copy = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(verify(&copy).unwrap().entries, 5);
}

#[test]
fn a_store_from_before_the_chain_is_refused_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0].sqlite).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    assert!(matches!(
        SqliteStore::open_read_only(&path),
        Err(StoreError::Unchained { found: 1, .. })
    ));
}
