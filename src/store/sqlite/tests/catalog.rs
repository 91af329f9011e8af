//! `CatalogStore`, and reopening a store file.

use super::*;
use crate::spec::CatalogSpec;
use crate::spec::yaml;

const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int, required: true }\n";

#[test]
fn catalog_round_trips_and_replaces_whole() {
    let store = SqliteStore::in_memory().unwrap();
    assert_eq!(store.catalog_revision().unwrap(), 0);
    let spec = yaml::parse(CATALOG).unwrap();
    assert_eq!(store.replace_catalog(&spec, "test").unwrap(), 1);
    assert_eq!(store.load_catalog().unwrap(), spec);
    store
        .replace_catalog(&CatalogSpec::default(), "test")
        .unwrap();
    assert_eq!(store.load_catalog().unwrap(), CatalogSpec::default());
    assert_eq!(store.catalog_revision().unwrap(), 2);
}

#[test]
fn failed_apply_leaves_the_previous_catalog() {
    let store = SqliteStore::in_memory().unwrap();
    let spec = yaml::parse(CATALOG).unwrap();
    store.replace_catalog(&spec, "test").unwrap();
    // A query naming a datasource that does not exist violates the foreign key half-way.
    let mut broken = spec.clone();
    broken
        .apps
        .get_mut("shop")
        .unwrap()
        .queries
        .get_mut("q")
        .unwrap()
        .datasource = "missing".into();
    assert!(store.replace_catalog(&broken, "test").is_err());
    assert_eq!(store.load_catalog().unwrap(), spec);
    assert_eq!(store.catalog_revision().unwrap(), 1);
}

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
