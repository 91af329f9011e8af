// `SessionStore`, and rotations of the caller's session by the account changes.

#[test]
fn sessions_round_trip_and_delete() {
    let store = with_user("u1");
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    let first = session("t1", "p1", "u1", NOW);
    store.create_session(&first).unwrap();
    store
        .create_session(&session("t2", "p2", "u1", NOW + 10))
        .unwrap();
    store
        .create_session(&session("t3", "p3", "u2", NOW))
        .unwrap();
    assert_eq!(store.session_by_hash("t1").unwrap(), Some(first.clone()));
    assert_eq!(store.session_by_hash("nope").unwrap(), None);
    let result = store.create_session(&session("t1", "p9", "u1", NOW));
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );

    store.touch_session("t1", NOW + 60).unwrap();
    store
        .set_session_authenticated("u1", "t1", NOW + 30)
        .unwrap();
    let touched = store.session_by_hash("t1").unwrap().unwrap();
    assert_eq!(
        touched,
        SessionRecord {
            last_seen_at: NOW + 60,
            authenticated_at: NOW + 30,
            ..first
        }
    );
    store.touch_session("gone", NOW).unwrap();
    assert!(matches!(
        store.set_session_authenticated("u1", "gone", NOW),
        Err(StoreError::NotFound("session"))
    ));
    // Another account's session is not this user's to renew.
    assert!(matches!(
        store.set_session_authenticated("u2", "t1", NOW),
        Err(StoreError::NotFound("session"))
    ));

    let listed: Vec<_> = store
        .list_user_sessions("u1")
        .unwrap()
        .into_iter()
        .map(|s| s.public_id)
        .collect();
    assert_eq!(listed, ["p2", "p1"]);

    // Another user's public id does not reach this user's session.
    assert!(!store.delete_session_by_public_id("u2", "p1").unwrap());
    assert!(store.delete_session_by_public_id("u1", "p1").unwrap());
    assert!(!store.delete_session_by_public_id("u1", "p1").unwrap());
    store.delete_session("t3").unwrap();
    assert_eq!(store.session_by_hash("t3").unwrap(), None);
    store
        .create_session(&session("t4", "p4", "u1", NOW))
        .unwrap();
    assert_eq!(store.delete_user_sessions("u1").unwrap(), 2);
    assert_eq!(store.delete_user_sessions("u1").unwrap(), 0);
    assert!(store.list_user_sessions("u1").unwrap().is_empty());
}

#[test]
fn purge_removes_idle_and_old_sessions() {
    let store = with_user("u1");
    // Fresh: created and seen recently.
    store
        .create_session(&session("fresh", "p1", "u1", NOW))
        .unwrap();
    // Idle: seen long ago.
    store
        .create_session(&session("idle", "p2", "u1", NOW - 500))
        .unwrap();
    // Old: created before the absolute limit but active.
    store
        .create_session(&SessionRecord {
            last_seen_at: NOW,
            ..session("old", "p3", "u1", NOW - 5000)
        })
        .unwrap();
    assert_eq!(store.purge_sessions(NOW - 100, NOW - 1000).unwrap(), 2);
    let left: Vec<_> = store
        .list_user_sessions("u1")
        .unwrap()
        .into_iter()
        .map(|s| s.token_hash)
        .collect();
    assert_eq!(left, ["fresh"]);
    // The bounds are exclusive.
    assert_eq!(store.purge_sessions(NOW, NOW).unwrap(), 0);
}

#[test]
fn a_rotation_never_reopens_a_session_ended_meanwhile() {
    let store = accounts();
    store.set_totp_secret("u1", "sealed").unwrap();
    let before = store.user_by_id("u1").unwrap().unwrap();
    let codes = ["a".to_string(), "b".to_string()];
    let new = session("t3", "p3", "u1", NOW + 10);
    let gone = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::NotFound("session"))),
            "{result:?}"
        );
    };

    // The caller's request came with t1; "sign out everywhere" ended it meanwhile.
    store.delete_user_sessions("u1").unwrap();
    gone(store.change_password("u1", "new-hash", "t1", &new));
    gone(store.enable_mfa("u1", &codes, Some(("t1", &new))));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
    assert!(session_ids(&store, "u1").is_empty(), "no new session");

    store.enable_mfa("u1", &codes, None).unwrap();
    let enabled = store.user_by_id("u1").unwrap().unwrap();
    let rotate = SessionChange::Rotate {
        old: "t1",
        new: &new,
    };
    gone(store.disable_mfa("u1", rotate));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
    assert!(session_ids(&store, "u1").is_empty(), "no new session");

    // Another account's session is not the caller's to end.
    let rotate = SessionChange::Rotate {
        old: "other",
        new: &new,
    };
    gone(store.disable_mfa("u1", rotate));
    gone(store.change_password("u1", "new-hash", "other", &new));
    assert_eq!(session_ids(&store, "u2"), ["other"]);
    assert!(session_ids(&store, "u1").is_empty());
}
