// `CatalogStore`, and reopening a store file.

use crate::spec::CatalogSpec;
use crate::spec::yaml;

const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int, required: true }\n";

#[test]
fn catalog_round_trips_and_replaces_whole() {
    let store = store();
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
fn conditional_replace_refuses_a_moved_revision_and_changes_nothing() {
    let store = store();
    assert_eq!(
        store.current_catalog().unwrap(),
        (0, CatalogSpec::default())
    );
    let spec = yaml::parse(CATALOG).unwrap();
    assert_eq!(store.replace_catalog_at(&spec, "api", 0).unwrap(), 1);
    assert_eq!(store.current_catalog().unwrap(), (1, spec.clone()));
    // A writer still based on revision 0 loses: nothing is written, no revision recorded.
    match store.replace_catalog_at(&CatalogSpec::default(), "api", 0) {
        Err(StoreError::RevisionMoved {
            expected: 0,
            current: 1,
        }) => {}
        other => panic!("expected RevisionMoved, got {other:?}"),
    }
    assert_eq!(store.current_catalog().unwrap(), (1, spec));
    assert_eq!(store.catalog_history(10).unwrap().len(), 1);
    assert_eq!(
        store
            .replace_catalog_at(&CatalogSpec::default(), "api", 1)
            .unwrap(),
        2
    );
}

#[test]
fn failed_apply_leaves_the_previous_catalog() {
    let store = store();
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
fn every_revision_keeps_its_whole_catalog() {
    let store = store();
    assert!(store.catalog_history(10).unwrap().is_empty());
    assert_eq!(store.catalog_revision_at(1).unwrap(), None);
    let first = yaml::parse(CATALOG).unwrap();
    store.replace_catalog(&first, "catalog.yaml").unwrap();
    store
        .replace_catalog(&CatalogSpec::default(), "empty.yaml")
        .unwrap();
    let history = store.catalog_history(10).unwrap();
    let ids: Vec<_> = history.iter().map(|r| (r.id, r.source.as_str())).collect();
    assert_eq!(ids, [(2, "empty.yaml"), (1, "catalog.yaml")]);
    assert_eq!(history[1].spec.as_ref(), Some(&first));
    assert_eq!(history[0].spec, Some(CatalogSpec::default()));
    assert_eq!(store.catalog_history(1).unwrap().len(), 1);
    let one = store.catalog_revision_at(1).unwrap().unwrap();
    assert_eq!(one.spec, Some(first));
    assert!(one.applied_at.ends_with('Z'), "{}", one.applied_at);
    assert_eq!(store.catalog_revision_at(3).unwrap(), None);
}

