// `IdentityStore`: sign-in flows taken once, links unique per provider account, a federated
// account created with its link in one transaction.

use crate::store::identities::{LinkedIdentity, SsoFlow};

fn flow(state: &str, expires_at: i64) -> SsoFlow {
    SsoFlow {
        state_hash: state.into(),
        provider: "corp".into(),
        nonce: "n".into(),
        verifier_hash: "v".into(),
        return_to: "/".into(),
        link_user: None,
        expires_at,
    }
}

fn link(subject: &str, user: &str) -> LinkedIdentity {
    LinkedIdentity {
        provider: "corp".into(),
        subject: subject.into(),
        user_id: user.into(),
        email: None,
        linked_at: NOW,
        last_sign_in_at: None,
    }
}

#[test]
fn a_sign_in_flow_is_taken_once_and_not_after_it_expires() {
    let store = store();
    store.begin_sso_flow(&flow("s1", NOW + 600)).unwrap();
    store.begin_sso_flow(&flow("s2", NOW + 600)).unwrap();
    assert_eq!(store.take_sso_flow("s1", NOW).unwrap(), Some(flow("s1", NOW + 600)));
    assert_eq!(store.take_sso_flow("s1", NOW).unwrap(), None, "taken once");
    assert_eq!(store.take_sso_flow("s2", NOW + 601).unwrap(), None, "expired");
    assert_eq!(store.take_sso_flow("s2", NOW).unwrap(), None, "and gone");
    assert!(matches!(
        store.begin_sso_flow(&flow("s3", NOW + 600)).and(store.begin_sso_flow(&flow("s3", NOW + 600))),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn a_provider_account_links_to_one_user_and_a_failed_create_writes_nothing() {
    let store = with_user("u1");
    store.link_identity(&link("sub-1", "u1")).unwrap();
    assert_eq!(store.user_for_identity("corp", "sub-1").unwrap().unwrap().id, "u1");
    assert!(store.user_for_identity("corp", "sub-2").unwrap().is_none());
    store.create_user(&new_user("u2", "u2@example.com")).unwrap();
    assert!(matches!(
        store.link_identity(&link("sub-1", "u2")),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.link_identity(&link("sub-9", "nobody")),
        Err(StoreError::NotFound(_))
    ));
    // The email is taken: neither the account nor the link is written.
    let taken = NewUser {
        email: "u2@example.com".into(),
        ..new_user("u3", "u3@example.com")
    };
    assert!(store.create_user_with_identity(&taken, &link("sub-3", "u3")).is_err());
    assert!(store.user_by_id("u3").unwrap().is_none());
    assert!(store.user_for_identity("corp", "sub-3").unwrap().is_none());
    let created = store
        .create_user_with_identity(&new_user("u4", "u4@example.com"), &link("sub-4", "u4"))
        .unwrap();
    assert_eq!(store.user_for_identity("corp", "sub-4").unwrap().unwrap().id, created.id);
    store.record_identity_sign_in("corp", "sub-4", NOW + 5).unwrap();
    assert_eq!(store.identities_of("u4").unwrap()[0].last_sign_in_at, Some(NOW + 5));
    assert!(store.unlink_identity("u4", "corp").unwrap());
    assert!(!store.unlink_identity("u4", "corp").unwrap());
    // Deleting the user removes its links.
    store.delete_user("u1").unwrap();
    assert!(store.user_for_identity("corp", "sub-1").unwrap().is_none());
}
