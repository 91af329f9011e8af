//! The service's answers when the store refuses an operation because of a request racing it
//! (the races themselves are pinned at store level, in the SQLite store's tests).

use std::sync::Arc;

use super::*;
use crate::auth::Role;
use crate::clock::{ManualClock, SharedClock};
use crate::policy::rate_limit::MemoryLimiter;
use crate::store::SqliteStore;
use crate::store::audit::AuditStore;
use crate::store::mfa::MfaStore;
use crate::store::sessions::SessionStore;
use crate::store::users::UserStore;

const PASSWORD: &str = "a long and unusual passphrase 1";

async fn service() -> (AuthService, Arc<SqliteStore>, UserRecord) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock: SharedClock = Arc::new(ManualClock::new());
    let key = crate::vault::Keyring::new(
        crate::vault::InstanceKey::derive("service test password", "service test salt").unwrap(),
    );
    let audit = Arc::new(crate::audit::Audit::new(store.clone(), clock.clone()));
    let service = AuthService::new(
        store.clone(),
        audit,
        Arc::new(key),
        clock.clone(),
        AuthSettings::default(),
        None,
        None,
        Arc::new(MemoryLimiter::new(clock)),
    );
    let user = service
        .create_user(
            "u1@example.com",
            "U1",
            Role::Developer,
            vec![],
            Some(PASSWORD.into()),
            "test",
        )
        .await
        .unwrap();
    (service, store, user)
}

/// A freshly authenticated caller whose session `token_hash` may or may not exist.
fn caller(service: &AuthService, user: &UserRecord, token_hash: &str) -> Caller {
    Caller {
        user: identity(user),
        via: CallerVia::Session {
            token_hash: token_hash.into(),
            public_id: "p1".into(),
            created_at: service.now(),
            authenticated_at: service.now(),
        },
    }
}

#[tokio::test]
async fn a_reauthentication_of_a_session_ended_meanwhile_is_unauthenticated() {
    let (service, _store, user) = service().await;
    // The request's session was found, then ended (signed out elsewhere) before the
    // re-authentication completed.
    let caller = caller(&service, &user, "ended");
    let result = service
        .reauthenticate(&caller, PASSWORD.into(), None, None, &ClientInfo::default())
        .await;
    assert!(
        matches!(result, Err(AuthError::Unauthenticated)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_rotation_of_a_session_ended_meanwhile_is_unauthenticated() {
    let (service, store, user) = service().await;
    let caller = caller(&service, &user, "ended");
    let result = service
        .change_password(
            &caller,
            "another long unusual passphrase 2".into(),
            &ClientInfo::default(),
        )
        .await;
    assert!(
        matches!(result, Err(AuthError::Unauthenticated)),
        "{result:?}"
    );
    let after = store.user_by_id(&user.id).unwrap().unwrap();
    assert_eq!(after.password_hash, user.password_hash, "nothing changed");
    assert!(store.list_user_sessions(&user.id).unwrap().is_empty());
}

#[tokio::test]
async fn an_enrolment_racing_a_confirmation_is_a_conflict() {
    let (service, store, user) = service().await;
    // The caller was read with MFA off; a confirmation committed since.
    store.set_totp_secret(&user.id, "sealed").unwrap();
    store.enable_mfa(&user.id, &["a".into()], None).unwrap();
    let caller = caller(&service, &user, "t1");
    let result = service.enrol_mfa(&caller).await;
    assert!(matches!(result, Err(AuthError::Conflict(_))), "{result:?}");
    let after = store.user_by_id(&user.id).unwrap().unwrap();
    assert!(after.mfa_enabled);
    assert_eq!(after.totp_secret_sealed.as_deref(), Some("sealed"));
}

#[test]
fn refused_account_errors_read_as_their_refusals() {
    assert_eq!(
        AuthError::MfaEnrolmentRequired.to_string(),
        "admins must enrol in two-factor authentication before anything else: \
         POST /v1/auth/mfa/enroll, then /v1/auth/mfa/confirm"
    );
    assert_eq!(
        AuthError::RateLimited {
            retry_after_secs: 7
        }
        .to_string(),
        "too many attempts from this address; retry in 7 s"
    );
}

/// Fifteen wrong guesses raced at once against a threshold of five: five are checked and
/// counted, the lock they cause refuses the other ten unchecked (`locked`, never a sixth
/// `wrong_password`), and a right password sent in the same burst is not admitted once the
/// account is locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guesses_raced_past_the_threshold_are_refused_unchecked() {
    use crate::store::audit::AuditStore;
    let (service, store, user) = service().await;
    let service = Arc::new(service);
    // Each from its own address, so the per-IP sign-in throttle stays out of the way.
    let attempt = |n: usize, password: &'static str| {
        let service = service.clone();
        let client = ClientInfo {
            ip: format!("192.0.2.{n}"),
            ..ClientInfo::default()
        };
        tokio::spawn(async move {
            let credentials = Credentials {
                email: "u1@example.com".into(),
                password: password.into(),
                ..Credentials::default()
            };
            service.login(credentials, &client, None).await.map(|_| ())
        })
    };
    let mut attempts: Vec<_> = (0..15)
        .map(|n| attempt(n, "not the password at all 1"))
        .collect();
    attempts.push(attempt(15, PASSWORD));
    let mut admitted = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(()) => admitted += 1,
            Err(AuthError::InvalidCredentials) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    let events = store.list_audit(100, None).unwrap();
    let reasons = |reason: &str| {
        events
            .iter()
            .filter(|e| e.event == "login_failed" && e.reason.as_deref() == Some(reason))
            .count()
    };
    let threshold = AuthSettings::default().lockout_threshold as usize;
    // The right password either came before the fifth failure (admitted, and the count
    // restarted) or after it (refused unchecked); either way no guess is checked after
    // the lock.
    let wrong = reasons("wrong_password");
    let locked = reasons("locked");
    assert_eq!(wrong + locked + admitted, 16, "{events:?}");
    if admitted == 0 {
        assert_eq!(wrong, threshold, "{events:?}");
        assert!(
            store
                .user_by_id(&user.id)
                .unwrap()
                .unwrap()
                .locked_until
                .is_some(),
            "the account is locked"
        );
    } else {
        assert!(wrong < 2 * threshold, "{events:?}");
    }
    let account_locked = events
        .iter()
        .filter(|e| e.event == "account_locked")
        .count();
    assert_eq!(account_locked, wrong / threshold, "{events:?}");
}

fn credentials(email: &str, password: &str) -> Credentials {
    Credentials {
        email: email.into(),
        password: password.into(),
        ..Credentials::default()
    }
}

#[tokio::test]
async fn an_administrators_new_password_signs_in_and_ends_the_old_sessions() {
    let (service, store, user) = service().await;
    let client = ClientInfo::default();
    let (_, old_session) = service
        .login(credentials("u1@example.com", PASSWORD), &client, None)
        .await
        .unwrap();
    // A weak password is refused and changes nothing.
    let weak = service
        .set_password(&user.id, "password1234".into(), "cli", &client)
        .await;
    assert!(matches!(weak, Err(AuthError::WeakPassword(_))), "{weak:?}");
    assert!(
        store
            .session_by_hash(&old_session.record.token_hash)
            .unwrap()
            .is_some()
    );

    let new_password = "an entirely different passphrase 7";
    service
        .set_password(&user.id, new_password.into(), "cli", &client)
        .await
        .unwrap();
    assert!(
        store
            .session_by_hash(&old_session.record.token_hash)
            .unwrap()
            .is_none(),
        "the sessions opened under the old password ended"
    );
    let old = service
        .login(credentials("u1@example.com", PASSWORD), &client, None)
        .await;
    assert!(matches!(old, Err(AuthError::InvalidCredentials)), "{old:?}");
    service
        .login(credentials("u1@example.com", new_password), &client, None)
        .await
        .unwrap();
    let events: Vec<_> = store
        .list_audit(10, None)
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.actor))
        .collect();
    assert!(
        events.contains(&("password_set".into(), Some("cli".into()))),
        "{events:?}"
    );
}

#[tokio::test]
async fn deleting_a_user_keeps_the_last_enabled_admin() {
    let (service, store, user) = service().await;
    let client = ClientInfo::default();
    let admin = service
        .create_user("a1@example.com", "", Role::Admin, vec![], None, "test")
        .await
        .unwrap();
    let refused = service.delete_user(&admin.id, "cli", &client).await;
    assert!(
        matches!(refused, Err(AuthError::Conflict(_))),
        "{refused:?}"
    );
    assert!(store.user_by_id(&admin.id).unwrap().is_some());

    let second = service
        .create_user("a2@example.com", "", Role::Admin, vec![], None, "test")
        .await
        .unwrap();
    service
        .set_disabled(&second.id, true, "cli", &client)
        .await
        .unwrap();
    // A disabled admin does not count.
    assert!(
        service
            .delete_user(&admin.id, "cli", &client)
            .await
            .is_err()
    );
    service
        .set_disabled(&second.id, false, "cli", &client)
        .await
        .unwrap();
    service
        .delete_user(&admin.id, "cli", &client)
        .await
        .unwrap();
    assert!(store.user_by_id(&admin.id).unwrap().is_none());
    // Anyone else goes; a second delete finds nothing.
    service.delete_user(&user.id, "cli", &client).await.unwrap();
    let again = service.delete_user(&user.id, "cli", &client).await;
    assert!(
        matches!(again, Err(AuthError::NotFound("user"))),
        "{again:?}"
    );
    let deleted = store
        .list_audit(20, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "user_deleted")
        .map(|e| e.email)
        .collect::<Vec<_>>();
    assert_eq!(
        deleted,
        [Some("u1@example.com".into()), Some("a1@example.com".into())]
    );
}
