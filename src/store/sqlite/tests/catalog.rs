//! Reopening a SQLite store file, and the history migration on a store from before it.
//! (The catalog's behaviour on both stores is in `store::conformance`.)

use super::*;
use crate::spec::CatalogSpec;
use crate::spec::yaml;

const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int, required: true }\n";

#[test]
fn reopening_keeps_data_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta/sluice.db");
    let spec = yaml::parse(CATALOG).unwrap();
    SqliteStore::open(&path)
        .unwrap()
        .replace_catalog(&spec, "test")
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.load_catalog().unwrap(), spec);
    let version: i64 = store
        .lock()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let synchronous: i64 = store
        .lock()
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 1, "synchronous=NORMAL");
}

#[test]
fn the_history_migration_keeps_the_catalog_serving_at_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let spec = yaml::parse(CATALOG).unwrap();
    {
        // A store as the previous release left it: two revisions without content.
        let store = SqliteStore::open(&path).unwrap();
        store.replace_catalog(&CatalogSpec::default(), "a").unwrap();
        store.replace_catalog(&spec, "b").unwrap();
        let conn = store.lock();
        // The audit chain and the SCIM tables (later migrations) are undone too, so the
        // rewind is complete.
        conn.execute_batch(super::super::audit::UNDO_CHAIN_MIGRATION)
            .unwrap();
        conn.execute_batch(
            "DROP TABLE scim_group_members; DROP TABLE scim_groups; DROP TABLE scim_users; \
             UPDATE catalog_revisions SET spec = NULL; \
             ALTER TABLE catalog_revisions DROP COLUMN spec; \
             ALTER TABLE app_members DROP COLUMN editor; DROP TABLE user_identities; \
             DROP TABLE sso_flows; PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let history = store.catalog_history(10).unwrap();
    assert_eq!(history[0].spec, Some(spec), "the current one is kept");
    assert_eq!(history[1].spec, None, "older content was never stored");
}
