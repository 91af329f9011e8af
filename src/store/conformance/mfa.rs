// `MfaStore`: TOTP secrets, the replay guard, recovery codes, MFA on and off.

#[test]
fn totp_steps_are_accepted_once_and_in_order() {
    let store = with_user("u1");
    store.set_totp_secret("u1", "sealed").unwrap();
    assert!(store.accept_totp_step("u1", 100).unwrap());
    assert!(!store.accept_totp_step("u1", 100).unwrap(), "replay");
    assert!(!store.accept_totp_step("u1", 99).unwrap(), "older step");
    assert!(store.accept_totp_step("u1", 101).unwrap());
    assert_eq!(
        store.user_by_id("u1").unwrap().unwrap().totp_last_step,
        Some(101)
    );
    // A new secret (MFA still off) resets the guard.
    store.set_totp_secret("u1", "sealed-2").unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.totp_secret_sealed.as_deref(), Some("sealed-2"));
    assert!(!user.mfa_enabled);
    assert_eq!(user.totp_last_step, None);
    assert!(store.accept_totp_step("u1", 50).unwrap());
}

#[test]
fn clearing_totp_removes_all_mfa_state() {
    let store = with_user("u1");
    store.set_totp_secret("u1", "sealed").unwrap();
    store.turn_mfa_on("u1").unwrap();
    store.accept_totp_step("u1", 7).unwrap();
    store
        .replace_recovery_codes("u1", &["a".into(), "b".into()])
        .unwrap();
    store.disable_mfa("u1", SessionChange::Keep).unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        (
            user.totp_secret_sealed,
            user.mfa_enabled,
            user.totp_last_step
        ),
        (None, false, None)
    );
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
    assert!(!store.use_recovery_code("u1", "a", NOW).unwrap());
}

#[test]
fn recovery_codes_work_once() {
    let store = with_user("u1");
    store
        .replace_recovery_codes("u1", &["a".into(), "b".into(), "c".into()])
        .unwrap();
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 3);
    assert!(store.use_recovery_code("u1", "b", NOW).unwrap());
    assert!(!store.use_recovery_code("u1", "b", NOW).unwrap(), "reuse");
    assert!(
        !store.use_recovery_code("u1", "zzz", NOW).unwrap(),
        "unknown"
    );
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    // Another user's code is not this user's.
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    assert!(!store.use_recovery_code("u2", "a", NOW).unwrap());
    // Replacing gives a fresh set and voids the old one.
    store
        .replace_recovery_codes("u1", &["d".into(), "e".into()])
        .unwrap();
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    assert!(!store.use_recovery_code("u1", "a", NOW).unwrap());
    assert!(store.use_recovery_code("u1", "d", NOW).unwrap());
}

#[test]
fn mfa_is_turned_on_only_with_the_end_of_sessions_and_the_new_one() {
    let store = accounts();
    store.set_totp_secret("u1", "sealed").unwrap();
    store.replace_recovery_codes("u1", &["old".into()]).unwrap();
    let codes = ["a".to_string(), "b".to_string()];

    let result = store.enable_mfa("u1", &codes, Some(("t1", &colliding_session())));
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );
    assert!(!store.user_by_id("u1").unwrap().unwrap().mfa_enabled);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 1);
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    let new = session("t3", "p3", "u1", NOW);
    store.enable_mfa("u1", &codes, Some(("t1", &new))).unwrap();
    assert!(store.user_by_id("u1").unwrap().unwrap().mfa_enabled);
    assert!(!store.use_recovery_code("u1", "old", NOW).unwrap());
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    assert_eq!(session_ids(&store, "u1"), ["t3"]);
    assert_eq!(session_ids(&store, "u2"), ["other"]);
    // Without a session to open (an API key caller), every session still ends.
    store.enable_mfa("u1", &codes, None).unwrap();
    assert!(session_ids(&store, "u1").is_empty());
}

#[test]
fn mfa_is_turned_off_only_with_its_session_change() {
    let store = accounts();
    store.set_totp_secret("u1", "sealed").unwrap();
    store
        .enable_mfa("u1", &["a".into(), "b".into()], None)
        .unwrap();
    for (hash, public_id) in [("t1", "p1"), ("t2", "p2")] {
        store
            .create_session(&session(hash, public_id, "u1", NOW))
            .unwrap();
    }
    let enabled = store.user_by_id("u1").unwrap().unwrap();

    // The caller's session cannot be rotated: MFA stays on with its codes.
    let rotate = SessionChange::Rotate {
        old: "t1",
        new: &colliding_session(),
    };
    let result = store.disable_mfa("u1", rotate);
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    // An admin's reset cannot end the sessions: MFA stays on too.
    store.fail_at("DELETE ON sessions");
    assert_injected(store.disable_mfa("u1", SessionChange::EndAll));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
    store.stop_failing();

    let new = session("t3", "p3", "u1", NOW);
    let rotate = SessionChange::Rotate {
        old: "t1",
        new: &new,
    };
    store.disable_mfa("u1", rotate).unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.totp_secret_sealed, user.mfa_enabled), (None, false));
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
    assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);
    store.disable_mfa("u1", SessionChange::EndAll).unwrap();
    assert!(session_ids(&store, "u1").is_empty());
    assert_eq!(session_ids(&store, "u2"), ["other"]);
}

#[test]
fn an_enrolment_never_turns_mfa_off() {
    let store = accounts();
    store.set_totp_secret("u1", "sealed").unwrap();
    store
        .enable_mfa("u1", &["a".into(), "b".into()], None)
        .unwrap();
    let enabled = store.user_by_id("u1").unwrap().unwrap();

    // An enrolment that checked "MFA off" before the confirmation committed.
    let result = store.set_totp_secret("u1", "sealed-2");
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), enabled);
    assert!(enabled.mfa_enabled);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 2);
}
