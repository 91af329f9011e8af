// `UserStore`: accounts, sign-in accounting and lockout, and the account changes that end
// sessions or void tokens with them.

#[test]
fn users_round_trip_and_change() {
    let store = store();
    let created = store
        .create_user(&new_user("u1", "u1@example.com"))
        .unwrap();
    assert_eq!(store.user_by_id("u1").unwrap(), Some(created.clone()));
    assert_eq!(
        store.user_by_email("u1@example.com").unwrap(),
        Some(created.clone())
    );
    assert_eq!(store.user_by_id("nobody").unwrap(), None);
    assert_eq!(store.user_by_email("nobody@example.com").unwrap(), None);

    store.set_role("u1", Role::Admin).unwrap();
    store.set_groups("u1", &["finance".into()]).unwrap();
    assert!(store.record_login_success("u1", NOW + 5).unwrap());
    store.set_disabled("u1", true).unwrap();
    store.set_display_name("u1", "Alice").unwrap();
    store.set_email("u1", "alice@example.com").unwrap();
    store.set_password("u1", "new-hash").unwrap();
    store.set_totp_secret("u1", "sealed").unwrap();
    store.turn_mfa_on("u1").unwrap();
    assert!(store.accept_totp_step("u1", 42).unwrap());
    let expected = UserRecord {
        email: "alice@example.com".into(),
        display_name: "Alice".into(),
        role: Role::Admin,
        groups: vec!["finance".into()],
        disabled: true,
        password_hash: Some("new-hash".into()),
        totp_secret_sealed: Some("sealed".into()),
        mfa_enabled: true,
        totp_last_step: Some(42),
        last_login_at: Some(NOW + 5),
        ..created
    };
    assert_eq!(store.user_by_id("u1").unwrap(), Some(expected.clone()));
    assert_eq!(store.user_by_email("u1@example.com").unwrap(), None);

    store
        .create_user(&NewUser {
            password_hash: None,
            groups: vec![],
            ..new_user("u2", "aaron@example.com")
        })
        .unwrap();
    assert_eq!(store.count_users().unwrap(), 2);
    let listed = store.list_users().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, "u2");
    assert_eq!(listed[0].password_hash, None);
    assert_eq!(listed[1], expected);
}

#[test]
fn changing_a_missing_user_is_not_found() {
    let store = store();
    let missing = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::NotFound("user"))),
            "{result:?}"
        );
    };
    missing(store.set_role("nobody", Role::Viewer));
    missing(store.set_groups("nobody", &[]));
    missing(store.set_disabled("nobody", true));
    missing(store.set_display_name("nobody", "x"));
    missing(store.set_email("nobody", "x@example.com"));
    missing(store.set_password("nobody", "hash"));
    assert!(!store.record_login_success("nobody", NOW).unwrap());
    missing(store.clear_lockout("nobody"));
    missing(store.record_login_failure("nobody", NOW, 5, 60).map(|_| ()));
    missing(store.set_totp_secret("nobody", "sealed"));
    missing(store.disable_mfa("nobody", SessionChange::Keep));
    missing(store.turn_mfa_on("nobody"));
    missing(store.replace_recovery_codes("nobody", &["c".into()]));
    missing(store.create_session(&session("t", "p", "nobody", NOW)));
    missing(store.create_token(&token("t", TokenPurpose::PasswordReset, Some("nobody"))));
    missing(store.create_api_key(&api_key("k", "nobody", NOW)));
    missing(store.add_app_member("shop", "nobody", false));
    missing(store.set_role_and_end_sessions("nobody", Role::Viewer));
    missing(store.set_groups_and_end_sessions("nobody", &[]));
    assert!(matches!(
        store.change_password("nobody", "hash", "t", &session("t", "p", "nobody", NOW)),
        Err(StoreError::NotFound("session"))
    ));
    missing(store.enable_mfa("nobody", &[], None));
    let nobody = UserRecord {
        id: "nobody".into(),
        email: "nobody@example.com".into(),
        display_name: "Nobody".into(),
        role: Role::Viewer,
        groups: vec![],
        disabled: false,
        password_hash: Some("hash".into()),
        failed_logins: 0,
        locked_until: None,
        totp_secret_sealed: None,
        mfa_enabled: false,
        totp_last_step: None,
        created_at: NOW,
        last_login_at: None,
    };
    assert_eq!(
        store
            .complete_login(&nobody, NOW, &session("t", "p", "nobody", NOW), None)
            .unwrap(),
        SignIn::CredentialsChanged
    );
    assert!(!store.accept_totp_step("nobody", 1).unwrap());
    assert!(!store.use_recovery_code("nobody", "c", NOW).unwrap());
}

#[test]
fn taken_emails_conflict() {
    let store = store();
    store
        .create_user(&new_user("u1", "u1@example.com"))
        .unwrap();
    store
        .create_user(&new_user("u2", "u2@example.com"))
        .unwrap();
    let result = store.create_user(&new_user("u3", "u1@example.com"));
    assert!(
        matches!(result, Err(StoreError::Conflict("user with this email"))),
        "{result:?}"
    );
    let result = store.set_email("u2", "u1@example.com");
    assert!(
        matches!(result, Err(StoreError::Conflict("user with this email"))),
        "{result:?}"
    );
    let result = store.create_user(&new_user("u1", "other@example.com"));
    assert!(
        matches!(result, Err(StoreError::Conflict("user"))),
        "{result:?}"
    );
    assert_eq!(store.count_users().unwrap(), 2);
    // Setting one's own email again is not a conflict.
    store.set_email("u2", "u2@example.com").unwrap();
}

#[test]
fn lockout_starts_at_the_threshold_and_success_resets() {
    let store = with_user("u1");
    for attempt in 1..=4 {
        let count = store.record_login_failure("u1", NOW, 5, 900).unwrap();
        assert_eq!(
            count,
            FailureCount {
                failed_logins: attempt,
                locked_until: None
            }
        );
    }
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().locked_until, None);
    let count = store.record_login_failure("u1", NOW + 1, 5, 900).unwrap();
    assert_eq!(
        count,
        FailureCount {
            failed_logins: 5,
            locked_until: Some(NOW + 901)
        }
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        (user.failed_logins, user.locked_until),
        (5, Some(NOW + 901))
    );

    // While locked, a success changes nothing; after the lock it resets the count.
    assert!(!store.record_login_success("u1", NOW + 900).unwrap());
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (5, None));
    assert!(store.record_login_success("u1", NOW + 2000).unwrap());
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        (user.failed_logins, user.locked_until, user.last_login_at),
        (0, None, Some(NOW + 2000))
    );
    store
        .record_login_failure("u1", NOW + 2001, 1, 900)
        .unwrap();
    store.clear_lockout("u1").unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.locked_until), (0, None));
    let count = store.record_login_failure("u1", NOW, 5, 900).unwrap();
    assert_eq!(count.failed_logins, 1);
}

#[test]
fn an_expired_lock_starts_a_new_count() {
    let store = store();
    let user = store
        .create_user(&new_user("u-lapsed", "lapsed@example.com"))
        .unwrap();
    for n in 0..5 {
        store
            .record_login_failure(&user.id, 1_000 + n, 5, 60)
            .unwrap();
    }
    let locked = store.user_by_id(&user.id).unwrap().unwrap();
    assert_eq!(locked.locked_until, Some(1_064));
    // After the lock runs out, one failure counts as the first of a new series.
    let after = store.record_login_failure(&user.id, 2_000, 5, 60).unwrap();
    assert_eq!(
        after,
        FailureCount {
            failed_logins: 1,
            locked_until: None
        }
    );
    assert_eq!(
        store.user_by_id(&user.id).unwrap().unwrap().locked_until,
        None
    );
    for n in 1..4 {
        let count = store
            .record_login_failure(&user.id, 2_000 + n, 5, 60)
            .unwrap();
        assert_eq!(count.locked_until, None);
    }
    let relocked = store.record_login_failure(&user.id, 2_010, 5, 60).unwrap();
    assert_eq!(
        relocked,
        FailureCount {
            failed_logins: 5,
            locked_until: Some(2_070)
        }
    );
}

#[test]
fn a_new_password_clears_the_lock() {
    let store = with_user("u1");
    for _ in 0..3 {
        store.record_login_failure("u1", NOW, 3, 900).unwrap();
    }
    assert!(
        store
            .user_by_id("u1")
            .unwrap()
            .unwrap()
            .locked_until
            .is_some()
    );
    store.set_password("u1", "reset-hash").unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.locked_until), (0, None));
    assert_eq!(user.password_hash.as_deref(), Some("reset-hash"));
}

#[test]
fn deleting_a_user_removes_what_hangs_off_it_but_not_the_audit_log() {
    let store = with_user("u1");
    store
        .create_session(&session("t1", "p1", "u1", NOW))
        .unwrap();
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    store.create_api_key(&api_key("k1", "u1", NOW)).unwrap();
    store.replace_recovery_codes("u1", &["a".into()]).unwrap();
    store.add_app_member("shop", "u1", false).unwrap();
    store.append_audit(&audit("user_created", NOW)).unwrap();
    store.delete_user("u1").unwrap();
    assert_eq!(store.user_by_id("u1").unwrap(), None);
    assert_eq!(store.session_by_hash("t1").unwrap(), None);
    assert_eq!(store.api_key("k1").unwrap(), None);
    assert_eq!(store.remaining_recovery_codes("u1").unwrap(), 0);
    assert!(!store.is_app_member("shop", "u1").unwrap());
    assert_eq!(
        store
            .consume_token("r1", TokenPurpose::PasswordReset, NOW)
            .unwrap(),
        None
    );
    assert_eq!(store.list_audit(10, None).unwrap().len(), 1);
    assert!(matches!(
        store.delete_user("u1"),
        Err(StoreError::NotFound("user"))
    ));
}

#[test]
fn an_administrators_password_change_happens_whole_or_not_at_all() {
    let store = accounts();
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    store
        .create_token(&token("e1", TokenPurpose::EmailChange, Some("u1")))
        .unwrap();
    store
        .create_token(&token("r2", TokenPurpose::PasswordReset, Some("u2")))
        .unwrap();
    let before = store.user_by_id("u1").unwrap().unwrap();

    store.fail_at("DELETE ON sessions");
    assert_injected(store.set_password_and_end_sessions("u1", "admin-set", NOW));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
    assert!(usable(&store, "r1", TokenPurpose::PasswordReset));
    assert!(usable(&store, "e1", TokenPurpose::EmailChange));

    store.stop_failing();
    store
        .set_password_and_end_sessions("u1", "admin-set", NOW)
        .unwrap();
    let after = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(after.password_hash.as_deref(), Some("admin-set"));
    assert_eq!((after.failed_logins, after.locked_until), (0, None));
    assert!(session_ids(&store, "u1").is_empty());
    assert!(!usable(&store, "r1", TokenPurpose::PasswordReset));
    assert!(!usable(&store, "e1", TokenPurpose::EmailChange));
    // Another account keeps its sessions and tokens.
    assert_eq!(session_ids(&store, "u2"), ["other"]);
    assert!(usable(&store, "r2", TokenPurpose::PasswordReset));
    assert!(matches!(
        store.set_password_and_end_sessions("nobody", "x", NOW),
        Err(StoreError::NotFound("user"))
    ));
}

#[test]
fn a_role_change_and_the_end_of_sessions_happen_together() {
    let store = accounts();
    store.fail_at("DELETE ON sessions");
    assert_injected(store.set_role_and_end_sessions("u1", Role::Admin));
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.role, Role::Developer, "the role did not change");
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    store.stop_failing();
    store.set_role_and_end_sessions("u1", Role::Admin).unwrap();
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().role, Role::Admin);
    assert!(session_ids(&store, "u1").is_empty());
    assert_eq!(session_ids(&store, "u2"), ["other"]);
}

#[test]
fn a_group_change_and_the_end_of_sessions_happen_together() {
    let store = accounts();
    store.fail_at("DELETE ON sessions");
    assert_injected(store.set_groups_and_end_sessions("u1", &["finance".into()]));
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.groups, ["eng", "ops"], "the groups did not change");
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    store.stop_failing();
    store
        .set_groups_and_end_sessions("u1", &["finance".into()])
        .unwrap();
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().groups, ["finance"]);
    assert!(session_ids(&store, "u1").is_empty());
    assert_eq!(session_ids(&store, "u2"), ["other"]);
}

#[test]
fn disabling_and_the_end_of_sessions_happen_together() {
    let store = accounts();
    store.fail_at("DELETE ON sessions");
    assert_injected(store.set_disabled("u1", true));
    assert!(!store.user_by_id("u1").unwrap().unwrap().disabled);
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    store.stop_failing();
    store.set_disabled("u1", true).unwrap();
    assert!(store.user_by_id("u1").unwrap().unwrap().disabled);
    assert!(session_ids(&store, "u1").is_empty());
    // Enabling ends nothing.
    store
        .create_session(&session("t3", "p3", "u1", NOW))
        .unwrap();
    store.set_disabled("u1", false).unwrap();
    assert!(!store.user_by_id("u1").unwrap().unwrap().disabled);
    assert_eq!(session_ids(&store, "u1"), ["t3"]);
}

#[test]
fn a_sign_in_records_its_success_only_with_its_session() {
    let store = accounts();
    let u1 = store.user_by_id("u1").unwrap().unwrap();
    // Opening the session fails: the failure count is not reset, no login is recorded
    // and the session the request came with is not ended.
    let result = store.complete_login(&u1, NOW + 5, &colliding_session(), Some("t1"));
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (2, None));
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    // Ending the replaced session fails: the new one is not kept either.
    store.fail_at("DELETE ON sessions");
    let new = session("t3", "p3", "u1", NOW + 5);
    assert_injected(store.complete_login(&u1, NOW + 5, &new, Some("t1")));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap().failed_logins, 2);
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
    store.stop_failing();

    assert_eq!(
        store
            .complete_login(&u1, NOW + 5, &new, Some("t1"))
            .unwrap(),
        SignIn::Admitted
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (0, Some(NOW + 5)));
    assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);

    // Locked at the time of the success: nothing changes, no session opens.
    for _ in 0..5 {
        store.record_login_failure("u1", NOW + 6, 5, 900).unwrap();
    }
    let refused = session("t4", "p4", "u1", NOW + 7);
    assert_eq!(
        store.complete_login(&u1, NOW + 7, &refused, None).unwrap(),
        SignIn::Locked
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (5, Some(NOW + 5)));
    assert_eq!(session_ids(&store, "u1"), ["t2", "t3"]);
}

#[test]
fn a_reauthentication_records_its_success_only_with_the_session() {
    let store = accounts();
    let u1 = store.user_by_id("u1").unwrap().unwrap();
    let result = store.complete_reauthentication(&u1, "gone", NOW + 5);
    assert!(
        matches!(result, Err(StoreError::NotFound("session"))),
        "{result:?}"
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (2, None));

    // Another account's session is not renewed either.
    let result = store.complete_reauthentication(&u1, "other", NOW + 5);
    assert!(
        matches!(result, Err(StoreError::NotFound("session"))),
        "{result:?}"
    );
    assert_eq!(
        store
            .session_by_hash("other")
            .unwrap()
            .unwrap()
            .authenticated_at,
        NOW
    );

    assert_eq!(
        store.complete_reauthentication(&u1, "t1", NOW + 5).unwrap(),
        SignIn::Admitted
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!((user.failed_logins, user.last_login_at), (0, Some(NOW + 5)));
    let renewed = store.session_by_hash("t1").unwrap().unwrap();
    assert_eq!(renewed.authenticated_at, NOW + 5);

    for _ in 0..5 {
        store.record_login_failure("u1", NOW + 6, 5, 900).unwrap();
    }
    assert_eq!(
        store.complete_reauthentication(&u1, "t2", NOW + 7).unwrap(),
        SignIn::Locked
    );
    assert_eq!(
        store
            .session_by_hash("t2")
            .unwrap()
            .unwrap()
            .authenticated_at,
        NOW
    );
}

#[test]
fn a_password_change_happens_whole_or_not_at_all() {
    let store = accounts();
    let change = token("c1", TokenPurpose::EmailChange, Some("u1"));
    store.create_token(&change).unwrap();
    let before = store.user_by_id("u1").unwrap().unwrap();

    // The caller's new session cannot open: the password, the pending email change and
    // the other sessions all stay as they were.
    let result = store.change_password("u1", "new-hash", "t1", &colliding_session());
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
    assert!(usable(&store, "c1", TokenPurpose::EmailChange));
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    let new = session("t3", "p3", "u1", NOW + 10);
    store.change_password("u1", "new-hash", "t1", &new).unwrap();
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("new-hash"));
    assert_eq!((user.failed_logins, user.locked_until), (0, None));
    assert!(!usable(&store, "c1", TokenPurpose::EmailChange));
    assert_eq!(session_ids(&store, "u1"), ["t3"]);
    assert_eq!(session_ids(&store, "u2"), ["other"]);
}

// ----- Races with a request in flight ----------------------------------------------

#[test]
fn a_sign_in_is_refused_when_the_account_changed_after_its_check() {
    let store = accounts();
    let attempt = session("t9", "p9", "u1", NOW + 5);
    let refused = |store: &Harness, verified: &UserRecord| {
        let before = store.user_by_id("u1").unwrap().unwrap();
        assert_eq!(
            store
                .complete_login(verified, NOW + 5, &attempt, None)
                .unwrap(),
            SignIn::CredentialsChanged
        );
        assert_eq!(store.session_by_hash("t9").unwrap(), None, "no session");
        assert_eq!(
            store
                .complete_reauthentication(verified, "t3", NOW + 5)
                .unwrap(),
            SignIn::CredentialsChanged
        );
        assert_eq!(store.user_by_id("u1").unwrap().unwrap(), before);
    };

    // The password changes between the check and the completion.
    let verified = store.user_by_id("u1").unwrap().unwrap();
    let t3 = session("t3", "p3", "u1", NOW + 1);
    store.change_password("u1", "new-hash", "t1", &t3).unwrap();
    refused(&store, &verified);
    assert_eq!(
        store
            .session_by_hash("t3")
            .unwrap()
            .unwrap()
            .authenticated_at,
        NOW + 1,
        "the session was not re-authenticated"
    );

    // MFA is turned on meanwhile.
    let verified = store.user_by_id("u1").unwrap().unwrap();
    store.set_totp_secret("u1", "sealed").unwrap();
    store
        .enable_mfa("u1", &["a".into()], Some(("t3", &t3)))
        .unwrap();
    refused(&store, &verified);

    // The email changes meanwhile.
    let verified = store.user_by_id("u1").unwrap().unwrap();
    store.set_email("u1", "moved@example.com").unwrap();
    refused(&store, &verified);

    // The account is disabled meanwhile (its sessions end; one is back for the check).
    let verified = store.user_by_id("u1").unwrap().unwrap();
    store.set_disabled("u1", true).unwrap();
    store.create_session(&t3).unwrap();
    refused(&store, &verified);

    // As verified, it goes through.
    store.set_disabled("u1", false).unwrap();
    let verified = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(
        store
            .complete_login(&verified, NOW + 5, &attempt, None)
            .unwrap(),
        SignIn::Admitted
    );
    assert!(store.session_by_hash("t9").unwrap().is_some());
}

#[test]
fn undecodable_rows_are_reported_as_corrupt() {
    let store = with_user("u1");
    store
        .raw("UPDATE users SET \"groups\" = 'not json'")
        .unwrap();
    let result = store.user_by_id("u1");
    assert!(
        matches!(result, Err(StoreError::Corrupt { what: "user", .. })),
        "{result:?}"
    );
    assert!(store.list_users().is_err());
}
