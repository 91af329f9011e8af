// `ScimStore`: provisioning, groups mirrored into members' `groups`, and deactivation ending
// sessions and keys in the same transaction.

use crate::store::scim::{ScimEmail, ScimGroup, ScimProfile, ScimUserUpdate};

fn profile(name: &str, external: &str) -> ScimProfile {
    ScimProfile {
        external_id: Some(external.into()),
        user_name: name.into(),
        ..ScimProfile::default()
    }
}

fn group(id: &str, name: &str, members: &[&str]) -> ScimGroup {
    ScimGroup {
        id: id.into(),
        display_name: name.into(),
        group_name: name.into(),
        external_id: None,
        members: members.iter().map(|m| m.to_string()).collect(),
        created_at: NOW,
        updated_at: NOW,
    }
}

#[test]
fn provisioning_groups_and_deactivation_hold_on_every_store() {
    let store = store();
    let ann = store
        .create_scim_user(&new_user("ann", "ann@example.com"), &profile("ann@example.com", "e-1"), true)
        .unwrap();
    assert_eq!(ann.profile.as_ref().unwrap().external_id.as_deref(), Some("e-1"));
    // A second account with the same external id is refused, and nothing of it is kept.
    assert!(matches!(
        store.create_scim_user(&new_user("bob", "bob@example.com"), &profile("bob@example.com", "e-1"), true),
        Err(StoreError::Conflict(_))
    ));
    assert!(store.user_by_id("bob").unwrap().is_none());

    // A hand-set group stays; SCIM groups are mirrored into the member's list.
    store.set_groups_and_end_sessions("ann", &["manual".into()]).unwrap();
    store.put_scim_group(&group("g1", "sales", &["ann"]), true).unwrap();
    assert_eq!(store.user_by_id("ann").unwrap().unwrap().groups, ["manual", "sales"]);
    store.put_scim_group(&group("g1", "sales-eu", &["ann"]), false).unwrap();
    assert_eq!(store.user_by_id("ann").unwrap().unwrap().groups, ["manual", "sales-eu"]);
    assert!(matches!(
        store.put_scim_group(&group("g2", "other", &["nobody"]), true),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.scim_group("g2").unwrap().is_none(), "nothing of a refused group is kept");
    store.delete_scim_group("g1").unwrap();
    assert_eq!(store.user_by_id("ann").unwrap().unwrap().groups, ["manual"]);

    // Deactivation disables the account and ends its sessions, in one step.
    store.create_session(&session("t-ann", "p-ann", "ann", NOW)).unwrap();
    let update = ScimUserUpdate {
        email: "ann@example.com".into(),
        display_name: "Ann".into(),
        profile: profile("ann@example.com", "e-1"),
        active: Some(false),
    };
    let updated = store.update_scim_user("ann", &update, NOW + 1).unwrap();
    assert!(updated.user.disabled);
    assert!(store.list_user_sessions("ann").unwrap().is_empty());
    store.delete_scim_user("ann", NOW + 2).unwrap();
    assert!(store.scim_user("ann").unwrap().is_none(), "deleted: SCIM answers 404");
    assert!(store.user_by_id("ann").unwrap().is_some(), "the account stays for the audit log");
}

#[test]
fn a_profile_keeps_what_the_idp_set_as_it_set_it() {
    let store = store();
    let mut ann = profile("ann.lee", "e-9");
    ann.display_name = Some("Ann Lee".into());
    ann.emails = Some(vec![
        ScimEmail {
            value: "Ann@Example.com".into(),
            kind: Some("work".into()),
            primary: Some(true),
            display: None,
        },
        ScimEmail {
            value: "ann@home.example".into(),
            kind: None,
            primary: Some(false),
            display: Some("home".into()),
        },
    ]);
    let created = store
        .create_scim_user(&new_user("ann", "ann@example.com"), &ann, true)
        .unwrap();
    assert_eq!(created.profile.as_ref(), Some(&ann));
    assert!(store.user_by_email("ann@home.example").unwrap().is_none(), "a secondary email is no login");

    // `active` removed: the profile says so and the account keeps its state (disabled here).
    store.create_session(&session("t-ann", "p-ann", "ann", NOW)).unwrap();
    let mut update = ScimUserUpdate {
        email: "ann@example.com".into(),
        display_name: "Ann Lee".into(),
        profile: ann.clone(),
        active: Some(false),
    };
    store.update_scim_user("ann", &update, NOW + 1).unwrap();
    let mut removed = ann.clone();
    removed.display_name = None;
    removed.emails = Some(Vec::new());
    removed.active_removed = true;
    update.profile = removed.clone();
    update.active = None;
    let after = store.update_scim_user("ann", &update, NOW + 2).unwrap();
    assert!(after.user.disabled, "removing `active` enables nothing");
    assert_eq!(after.profile.as_ref(), Some(&removed));
    assert_eq!(store.scim_user("ann").unwrap().unwrap().profile, Some(removed));
    assert!(store.list_user_sessions("ann").unwrap().is_empty());
}
