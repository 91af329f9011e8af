//! The service's answers when the store refuses an operation because of a request racing it
//! (the races themselves are pinned at store level, in the SQLite store's tests).

use std::sync::Arc;

use super::*;
use crate::auth::Role;
use crate::clock::{ManualClock, SharedClock};
use crate::policy::rate_limit::MemoryLimiter;
use crate::store::SqliteStore;
use crate::store::mfa::MfaStore;
use crate::store::sessions::SessionStore;
use crate::store::users::UserStore;

const PASSWORD: &str = "a long and unusual passphrase 1";

async fn service() -> (AuthService, Arc<SqliteStore>, UserRecord) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock: SharedClock = Arc::new(ManualClock::new());
    let key = InstanceKey::derive("service test password", "service test salt").unwrap();
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
