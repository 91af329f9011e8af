// `ApiKeyStore`.

#[test]
fn api_keys_round_trip_list_and_revoke() {
    let store = with_user("u1");
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    let k1 = api_key("k1", "u1", NOW);
    let k2 = api_key("k2", "u2", NOW + 10);
    let k3 = ApiKeyRecord {
        expires_at: None,
        scope: ApiKeyScope::default(),
        ..api_key("k3", "u1", NOW + 20)
    };
    for key in [&k1, &k2, &k3] {
        store.create_api_key(key).unwrap();
    }
    let result = store.create_api_key(&k1);
    assert!(
        matches!(result, Err(StoreError::Conflict("API key"))),
        "{result:?}"
    );
    assert_eq!(store.api_key("k1").unwrap(), Some(k1.clone()));
    assert_eq!(store.api_key("nope").unwrap(), None);
    assert_eq!(
        store.list_api_keys(None).unwrap(),
        [k3.clone(), k2.clone(), k1.clone()]
    );
    assert_eq!(
        store.list_api_keys(Some("u1")).unwrap(),
        [k3.clone(), k1.clone()]
    );
    assert!(store.list_api_keys(Some("nobody")).unwrap().is_empty());

    store.touch_api_key("k1", NOW + 100).unwrap();
    assert!(store.revoke_api_key("k1", NOW + 200).unwrap());
    assert!(!store.revoke_api_key("k1", NOW + 300).unwrap(), "again");
    assert!(!store.revoke_api_key("nope", NOW).unwrap(), "missing");
    assert_eq!(
        store.api_key("k1").unwrap(),
        Some(ApiKeyRecord {
            last_used_at: Some(NOW + 100),
            revoked_at: Some(NOW + 200),
            ..k1
        })
    );
}
