// Migrations: a store reopened runs nothing again and keeps its data; a store newer than
// this build is refused, on both stores.

use crate::spec::yaml;
use crate::store::migrations::MIGRATIONS;

const CATALOG: &str = "apps:\n  shop:\n    visibility: public\n";

fn schema_version(store: &Harness) -> i64 {
    match store.backend() {
        Backend::Sqlite => store.number("PRAGMA user_version"),
        Backend::Postgres => store.number("SELECT version FROM sluice_schema WHERE id = 1"),
    }
}

#[test]
fn a_reopened_store_runs_nothing_again_and_keeps_its_data() {
    let store = with_user("u1");
    assert_eq!(schema_version(&store), MIGRATIONS.len() as i64);
    let spec = yaml::parse(CATALOG).unwrap();
    store.replace_catalog(&spec, "test").unwrap();
    store.add_app_member("shop", "u1", true).unwrap();
    let again = store.open_again().unwrap();
    assert_eq!(again.count_users().unwrap(), 1);
    assert_eq!(again.current_catalog().unwrap(), (1, spec));
    assert!(again.is_app_editor("shop", "u1").unwrap());
    assert_eq!(schema_version(&store), MIGRATIONS.len() as i64);
    again.check_reachable().unwrap();
}

#[test]
fn a_store_newer_than_this_build_is_refused() {
    let store = store();
    let newer = MIGRATIONS.len() as i64 + 1;
    match store.backend() {
        Backend::Sqlite => store.raw(&format!("PRAGMA user_version = {newer}")),
        Backend::Postgres => store.raw(&format!(
            "UPDATE sluice_schema SET version = {newer} WHERE id = 1"
        )),
    }
    .unwrap();
    match store.open_again() {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, MIGRATIONS.len() as i64));
        }
        Err(other) => panic!("expected TooNew, got {other}"),
        Ok(_) => panic!("expected TooNew, the store opened"),
    }
    // The running store's readiness check sees it too.
    assert!(store.check_reachable().is_err());
}
