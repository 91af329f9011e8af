// `MemberStore`.

use crate::spec::CatalogSpec;
use crate::spec::yaml;

const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:AAAA\napps:\n  shop:\n    visibility: private\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n";

#[test]
fn app_members_survive_a_catalog_apply() {
    let store = with_user("u1");
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    let catalog = yaml::parse(CATALOG).unwrap();
    store.replace_catalog(&catalog, "test").unwrap();
    store.add_app_member("shop", "u1", false).unwrap();
    store.add_app_member("shop", "u1", false).unwrap();
    store.add_app_member("shop", "u2", false).unwrap();
    store.add_app_member("other", "u2", true).unwrap();

    store
        .replace_catalog(&CatalogSpec::default(), "test")
        .unwrap();
    assert!(store.is_app_member("shop", "u1").unwrap());
    let ids = |app| -> Vec<String> {
        let mut ids: Vec<String> = store
            .app_members(app)
            .unwrap()
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("shop"), ["u1", "u2"]);
    assert!(store.is_app_editor("other", "u2").unwrap());
    assert!(!store.is_app_editor("shop", "u2").unwrap());
    // Adding again sets the flag, both ways; a non-member is no editor.
    store.add_app_member("shop", "u2", true).unwrap();
    assert!(store.is_app_editor("shop", "u2").unwrap());
    store.add_app_member("other", "u2", false).unwrap();
    assert!(!store.is_app_editor("other", "u2").unwrap());
    assert!(store.is_app_member("other", "u2").unwrap());
    assert!(!store.is_app_editor("nowhere", "u2").unwrap());

    assert!(store.remove_app_member("shop", "u1").unwrap());
    assert!(!store.remove_app_member("shop", "u1").unwrap());
    assert!(!store.is_app_member("shop", "u1").unwrap());
    assert_eq!(ids("shop"), ["u2"]);
    assert_eq!(ids("other"), ["u2"]);
    assert_eq!(store.remove_app_members("other").unwrap(), 1);
    assert!(ids("other").is_empty());
    assert_eq!(ids("shop"), ["u2"]);
}
