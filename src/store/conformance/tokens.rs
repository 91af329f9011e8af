// `TokenStore`: one-time tokens and the changes they pay for.

#[test]
fn tokens_work_once_and_only_in_time_for_their_purpose() {
    let store = with_user("u1");
    let reset = token("reset", TokenPurpose::PasswordReset, Some("u1"));
    store.create_token(&reset).unwrap();
    let result = store.create_token(&reset);
    assert!(
        matches!(result, Err(StoreError::Conflict("token"))),
        "{result:?}"
    );

    assert_eq!(
        store
            .consume_token("reset", TokenPurpose::EmailChange, NOW)
            .unwrap(),
        None,
        "wrong purpose"
    );
    // Finding a token does not spend it.
    for _ in 0..2 {
        assert_eq!(
            store
                .find_token("reset", TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            Some(reset.clone())
        );
    }
    assert_eq!(
        store
            .find_token("reset", TokenPurpose::Signup, NOW)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .find_token("reset", TokenPurpose::PasswordReset, reset.expires_at)
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .consume_token("reset", TokenPurpose::PasswordReset, NOW)
            .unwrap(),
        Some(reset.clone()),
        "the wrong purpose did not use it up"
    );
    assert_eq!(
        store
            .find_token("reset", TokenPurpose::PasswordReset, NOW)
            .unwrap(),
        None,
        "used"
    );
    assert_eq!(
        store
            .consume_token("reset", TokenPurpose::PasswordReset, NOW)
            .unwrap(),
        None,
        "reuse"
    );
    assert_eq!(
        store
            .consume_token("unknown", TokenPurpose::PasswordReset, NOW)
            .unwrap(),
        None
    );

    let signup = token("signup", TokenPurpose::Signup, None);
    store.create_token(&signup).unwrap();
    assert_eq!(
        store
            .consume_token("signup", TokenPurpose::Signup, signup.expires_at)
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .consume_token("signup", TokenPurpose::Signup, signup.expires_at - 1)
            .unwrap(),
        Some(signup)
    );
}

#[test]
fn revoking_user_tokens_voids_only_that_purpose() {
    let store = with_user("u1");
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    store
        .create_token(&token("r2", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    let change = token("c1", TokenPurpose::EmailChange, Some("u1"));
    store.create_token(&change).unwrap();
    store
        .revoke_user_tokens("u1", TokenPurpose::PasswordReset)
        .unwrap();
    for hash in ["r1", "r2"] {
        assert_eq!(
            store
                .consume_token(hash, TokenPurpose::PasswordReset, NOW)
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .consume_token("c1", TokenPurpose::EmailChange, NOW)
            .unwrap(),
        Some(change)
    );
}

#[test]
fn a_password_reset_spends_its_token_only_with_the_whole_change() {
    let store = accounts();
    for _ in 0..3 {
        store.record_login_failure("u1", NOW, 5, 900).unwrap();
    }
    let locked = store.user_by_id("u1").unwrap().unwrap();
    assert!(locked.locked_until.is_some());
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    store
        .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
        .unwrap();

    // The last step (ending the sessions) fails: the token is still usable, the password
    // and the lock unchanged, the pending email change and the sessions intact.
    store.fail_at("DELETE ON sessions");
    assert_injected(store.complete_password_reset("r1", "u1", "reset-hash", NOW));
    assert!(usable(&store, "r1", TokenPurpose::PasswordReset));
    assert_eq!(store.user_by_id("u1").unwrap().unwrap(), locked);
    assert!(usable(&store, "c1", TokenPurpose::EmailChange));
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
    store.stop_failing();

    // A token issued for another account does nothing and is not spent.
    assert_eq!(
        store
            .complete_password_reset("r1", "u2", "reset-hash", NOW)
            .unwrap(),
        None
    );
    assert!(usable(&store, "r1", TokenPurpose::PasswordReset));

    assert_eq!(
        store
            .complete_password_reset("r1", "u1", "reset-hash", NOW)
            .unwrap(),
        Some(2)
    );
    let user = store.user_by_id("u1").unwrap().unwrap();
    assert_eq!(user.password_hash.as_deref(), Some("reset-hash"));
    assert_eq!((user.failed_logins, user.locked_until), (0, None));
    assert!(!usable(&store, "c1", TokenPurpose::EmailChange));
    assert!(session_ids(&store, "u1").is_empty());
    assert_eq!(
        store
            .complete_password_reset("r1", "u1", "again", NOW)
            .unwrap(),
        None,
        "the token works once"
    );
}

#[test]
fn a_signup_spends_its_token_only_if_the_account_is_created() {
    let store = accounts();
    // The token's address is taken: 409, and the token is still there.
    let mut taken = token("s1", TokenPurpose::Signup, None);
    taken.email = "u2@example.com".into();
    store.create_token(&taken).unwrap();
    let newcomer = NewUser {
        role: Role::Viewer,
        ..new_user("u3", "u2@example.com")
    };
    let first = session("t3", "p3", "u3", NOW);
    let result = store.complete_signup("s1", NOW, &newcomer, &first);
    assert!(
        matches!(result, Err(StoreError::Conflict("user with this email"))),
        "{result:?}"
    );
    assert!(usable(&store, "s1", TokenPurpose::Signup));
    assert_eq!(store.count_users().unwrap(), 2);

    // The first session cannot open: no account, and the token is still usable.
    store
        .create_token(&token("s2", TokenPurpose::Signup, None))
        .unwrap();
    let newcomer = NewUser {
        role: Role::Viewer,
        ..new_user("u3", "new@example.com")
    };
    let colliding = session("other", "p3", "u3", NOW);
    let result = store.complete_signup("s2", NOW, &newcomer, &colliding);
    assert!(
        matches!(result, Err(StoreError::Conflict("session"))),
        "{result:?}"
    );
    assert!(usable(&store, "s2", TokenPurpose::Signup));
    assert_eq!(store.user_by_id("u3").unwrap(), None);

    // A user for another address than the token's does nothing.
    let other = NewUser {
        email: "else@example.com".into(),
        ..newcomer.clone()
    };
    assert_eq!(
        store.complete_signup("s2", NOW, &other, &first).unwrap(),
        None
    );
    assert!(usable(&store, "s2", TokenPurpose::Signup));

    let created = store
        .complete_signup("s2", NOW, &newcomer, &first)
        .unwrap()
        .unwrap();
    assert_eq!(store.user_by_id("u3").unwrap(), Some(created));
    assert_eq!(session_ids(&store, "u3"), ["t3"]);
    assert_eq!(
        store.complete_signup("s2", NOW, &newcomer, &first).unwrap(),
        None,
        "the token works once"
    );
}

#[test]
fn an_email_change_to_a_taken_address_leaves_the_token_unspent() {
    let store = accounts();
    let mut change = token("c1", TokenPurpose::EmailChange, Some("u1"));
    change.email = "u2@example.com".into();
    store.create_token(&change).unwrap();
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    let result = store.confirm_email_change("c1", NOW);
    assert!(
        matches!(result, Err(StoreError::Conflict("user with this email"))),
        "{result:?}"
    );
    assert!(usable(&store, "c1", TokenPurpose::EmailChange));
    assert_eq!(
        store.user_by_id("u1").unwrap().unwrap().email,
        "u1@example.com"
    );
    assert!(usable(&store, "r1", TokenPurpose::PasswordReset));
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);

    // Once the address is free the same link works, once.
    store.set_email("u2", "u2-new@example.com").unwrap();
    let changed = store.confirm_email_change("c1", NOW).unwrap().unwrap();
    assert_eq!(changed.email, "u2@example.com");
    assert_eq!(store.user_by_id("u1").unwrap(), Some(changed));
    assert!(!usable(&store, "r1", TokenPurpose::PasswordReset));
    assert!(session_ids(&store, "u1").is_empty());
    assert_eq!(session_ids(&store, "u2"), ["other"]);
    assert_eq!(store.confirm_email_change("c1", NOW).unwrap(), None);
}

#[test]
fn an_email_change_spends_its_token_only_with_the_end_of_sessions() {
    let store = accounts();
    store
        .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
        .unwrap();
    store.fail_at("DELETE ON sessions");
    assert_injected(store.confirm_email_change("c1", NOW));
    assert!(usable(&store, "c1", TokenPurpose::EmailChange));
    assert_eq!(
        store.user_by_id("u1").unwrap().unwrap().email,
        "u1@example.com"
    );
    assert_eq!(session_ids(&store, "u1"), ["t1", "t2"]);
}

#[test]
fn a_new_link_voids_older_ones_only_if_it_is_stored() {
    let store = accounts();
    store
        .create_token(&token("r1", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    store
        .create_token(&token("x", TokenPurpose::PasswordReset, Some("u2")))
        .unwrap();
    // The new token cannot be stored (its hash is taken): the older link still works.
    let result = store.replace_user_token(&token("x", TokenPurpose::PasswordReset, Some("u1")));
    assert!(
        matches!(result, Err(StoreError::Conflict("token"))),
        "{result:?}"
    );
    assert!(usable(&store, "r1", TokenPurpose::PasswordReset));

    store
        .create_token(&token("c1", TokenPurpose::EmailChange, Some("u1")))
        .unwrap();
    store
        .replace_user_token(&token("r2", TokenPurpose::PasswordReset, Some("u1")))
        .unwrap();
    assert!(!usable(&store, "r1", TokenPurpose::PasswordReset));
    assert!(usable(&store, "r2", TokenPurpose::PasswordReset));
    assert!(usable(&store, "x", TokenPurpose::PasswordReset), "u2's");
    assert!(
        usable(&store, "c1", TokenPurpose::EmailChange),
        "other purpose"
    );
    // A token without a user is only stored.
    store
        .replace_user_token(&token("s1", TokenPurpose::Signup, None))
        .unwrap();
    assert!(usable(&store, "s1", TokenPurpose::Signup));
}
