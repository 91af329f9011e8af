// `SealedStore`: every sealed value wherever it is kept, and re-sealing them batch by batch.

use crate::spec::yaml;
use crate::store::sealed::{Reseal, ResealCursor, SealedPlace};

const CATALOG: &str = "datasources:\n  db:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:OLD1\n  zz:\n    kind: postgres\n    host: db.example\n    database: shop\n    user: app\n    password: enc:v1:0011223344556677:OLD2\n";

fn places(store: &Harness) -> Vec<(SealedPlace, String, String)> {
    let mut found: Vec<_> = store
        .stored_secrets()
        .unwrap()
        .into_iter()
        .map(|s| (s.place, s.owner_name, s.value))
        .collect();
    found.sort();
    found
}

#[test]
fn every_sealed_value_is_found_and_resealed_in_batches() {
    let store = with_user("u1");
    store
        .replace_catalog(&yaml::parse(CATALOG).unwrap(), "test")
        .unwrap();
    store.set_totp_secret("u1", "enc:v1:0011223344556677:OLD3").unwrap();
    let before = places(&store);
    assert_eq!(
        before
            .iter()
            .map(|(place, owner, _)| (*place, owner.as_str()))
            .collect::<Vec<_>>(),
        [
            (SealedPlace::Catalog, "datasource/db/password"),
            (SealedPlace::Catalog, "datasource/zz/password"),
            (SealedPlace::Revision(1), "datasource/db/password"),
            (SealedPlace::Revision(1), "datasource/zz/password"),
            (SealedPlace::Totp, "user/u1/totp"),
        ]
    );
    // One row per batch: the walk visits every row once, in order, across the stages.
    let mut cursor = Some(ResealCursor::default());
    let mut batches = 0;
    let mut replaced = 0;
    while let Some(at) = cursor {
        let outcome = store
            .reseal_batch(&at, 1, &mut |secret| {
                Reseal::Replace(secret.value.replace("OLD", "NEW"))
            })
            .unwrap();
        replaced += outcome.values_replaced;
        cursor = outcome.next;
        batches += 1;
        assert!(batches < 20, "the walk ends");
    }
    assert_eq!(replaced, 5, "two datasources, one revision with two, one TOTP secret");
    let after = places(&store);
    assert!(after.iter().all(|(_, _, value)| value.contains("NEW")), "{after:?}");
    assert_eq!(store.catalog_revision().unwrap(), 1, "a rotation is no catalog change");
    assert_eq!(
        store.user_by_id("u1").unwrap().unwrap().totp_secret_sealed,
        Some("enc:v1:0011223344556677:NEW3".into())
    );
}
