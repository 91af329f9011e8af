//! Two-factor authentication and fresh auth end to end: TOTP enrolment and sign-in, replay
//! and recovery codes, admins held to enrolment until they have MFA, and the sensitive
//! actions that need a recent password check. Time moves with a `ManualClock`.

use crate::auth_common;

use auth_common::*;
use serde_json::json;
use sluice::auth::Role;

#[tokio::test]
async fn totp_enrolment_sign_in_replay_and_recovery_codes() {
    let (gateway, clock) = gateway(&[("SLUICE_LOCKOUT_THRESHOLD", "3")]).await;
    user(&gateway, "uma@example.com", Role::Developer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("uma@example.com").await;

    let enrolment = browser
        .post("/v1/auth/mfa/enroll", json!({}))
        .await
        .expect_ok();
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(uri.contains("issuer=Sluice"), "{uri}");
    // The QR code comes with it (its content is checked by decoding it, in auth::totp).
    let qr = enrolment["qr_svg"].as_str().unwrap();
    assert!(
        qr.contains("<svg") && qr.ends_with("</svg>") && !qr.contains(&secret),
        "a picture of the URI, not its text"
    );
    // A wrong first code does not turn MFA on.
    browser
        .post(
            "/v1/auth/mfa/confirm",
            json!({ "code": wrong_totp(&secret, &clock) }),
        )
        .await
        .expect_error(401, "invalid_mfa_code");
    assert_eq!(
        browser.get("/v1/auth/me").await.json()["mfa_enabled"],
        false
    );
    let confirmed = browser
        .post(
            "/v1/auth/mfa/confirm",
            json!({ "code": totp(&secret, &clock) }),
        )
        .await
        .expect_ok();
    let recovery: Vec<String> =
        serde_json::from_value(confirmed["recovery_codes"].clone()).unwrap();
    assert_eq!(recovery.len(), 10);
    assert_eq!(browser.get("/v1/auth/me").await.json()["mfa_enabled"], true);

    let mut other = Browser::new(&gateway);
    // Password alone is no longer enough; a wrong password still says only that.
    other
        .login("uma@example.com", PASSWORD)
        .await
        .expect_error(401, "mfa_required");
    assert!(other.cookie.is_none());
    other
        .login("uma@example.com", OTHER_PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    // The code that confirmed enrolment was spent: it does not sign in within its step.
    other
        .login_totp("uma@example.com", &totp(&secret, &clock))
        .await
        .expect_error(401, "invalid_mfa_code");

    clock.advance_secs(30);
    let code = totp(&secret, &clock);
    other.login_totp("uma@example.com", &code).await.expect_ok();
    assert_eq!(other.me().await, 200);
    // The same code again in the same step is a replay.
    Browser::new(&gateway)
        .login_totp("uma@example.com", &code)
        .await
        .expect_error(401, "invalid_mfa_code");

    // Recovery codes work once each.
    let with_recovery = |code: &str| json!({ "email": "uma@example.com", "password": PASSWORD, "recovery_code": code });
    let mut third = Browser::new(&gateway);
    third
        .post("/v1/auth/login", with_recovery(&recovery[0]))
        .await
        .expect_ok();
    third
        .post("/v1/auth/login", with_recovery(&recovery[0]))
        .await
        .expect_error(401, "invalid_mfa_code");
    // Recovery codes are accepted with any case and spacing people type them with.
    let typed = recovery[1].to_uppercase().replace('-', " ");
    third
        .post("/v1/auth/login", with_recovery(&typed))
        .await
        .expect_ok();

    // Wrong codes count towards the lockout (3 here): then even a good code fails.
    for _ in 0..3 {
        Browser::new(&gateway)
            .login_totp("uma@example.com", &wrong_totp(&secret, &clock))
            .await
            .expect_error(401, "invalid_mfa_code");
    }
    clock.advance_secs(30);
    Browser::new(&gateway)
        .login_totp("uma@example.com", &totp(&secret, &clock))
        .await
        .expect_error(401, "invalid_credentials");
    let events = gateway.audit.list(100, None).await.unwrap();
    assert!(events.iter().any(|e| e.event == "account_locked"));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&secret) && !text.contains(&recovery[2]) && !text.contains(&code));
}

#[tokio::test]
async fn an_admin_without_mfa_may_only_enrol_until_it_is_done() {
    let (gateway, clock) = gateway(&[]).await;
    user(&gateway, "vera@example.com", Role::Admin).await;
    let mut browser = Browser::new(&gateway);
    let me = browser.login_ok("vera@example.com").await;
    assert_eq!(me["mfa_enrolment_required"], true);
    assert_eq!(browser.me().await, 200);

    browser
        .get("/v1/admin/users")
        .await
        .expect_error(403, "mfa_enrolment_required");
    browser
        .run("ws", "q")
        .await
        .expect_error(403, "mfa_enrolment_required");
    browser.run("pub", "q").await.expect_ok();
    browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "ci", "scope": { "apps": ["ws"] } }),
        )
        .await
        .expect_error(403, "mfa_enrolment_required");
    browser
        .post(
            "/v1/auth/password",
            json!({ "new_password": OTHER_PASSWORD }),
        )
        .await
        .expect_error(403, "mfa_enrolment_required");

    let before = browser.cookie.clone();
    let (_, codes) = enrol_totp(&mut browser, &clock).await;
    assert_eq!(codes.len(), 10);
    assert_ne!(
        browser.cookie, before,
        "enrolment gives the session a new id"
    );
    assert_eq!(
        Browser::with_cookie(&gateway, before.clone()).me().await,
        401
    );
    Browser::with_cookie(&gateway, before)
        .get("/v1/admin/users")
        .await
        .expect_error(401, "unauthenticated");

    let users = browser.get("/v1/admin/users").await.expect_ok();
    assert_eq!(users["users"][0]["mfa_enabled"], true);
    assert!(
        !users.to_string().contains("argon2"),
        "no password hash: {users}"
    );
    browser.run("ws", "q").await.expect_ok();
    assert_eq!(
        browser.get("/v1/auth/me").await.json()["mfa_enrolment_required"],
        false
    );

    // Signing in again needs the code, and lands on a session with full rights.
    clock.advance_secs(30);
    Browser::new(&gateway)
        .login("vera@example.com", PASSWORD)
        .await
        .expect_error(401, "mfa_required");
}

#[tokio::test]
async fn sensitive_actions_need_a_recent_password_check() {
    let (gateway, clock) = gateway(&[("SLUICE_FRESH_AUTH_SECS", "300")]).await;
    user(&gateway, "wes@example.com", Role::Developer).await;
    let target = user(&gateway, "xia@example.com", Role::Viewer).await;
    let mut dev = Browser::new(&gateway);
    dev.login_ok("wes@example.com").await;
    let (secret, _) = enrol_totp(&mut dev, &clock).await;
    let new_key = json!({ "name": "ci", "scope": { "apps": ["ws"] } });
    // Within the window it works.
    assert_eq!(
        dev.post("/v1/auth/api-keys", new_key.clone()).await.status,
        201
    );

    clock.advance_secs(301);
    dev.post("/v1/auth/api-keys", new_key.clone())
        .await
        .expect_error(403, "fresh_auth_required");
    dev.post(
        "/v1/auth/password",
        json!({ "new_password": OTHER_PASSWORD }),
    )
    .await
    .expect_error(403, "fresh_auth_required");
    dev.post("/v1/auth/mfa/disable", json!({}))
        .await
        .expect_error(403, "fresh_auth_required");
    // The session itself is fine; only the sensitive actions wait for a reauth.
    assert_eq!(dev.me().await, 200);

    // Re-authentication needs the second factor too when MFA is on.
    dev.reauth(json!({}))
        .await
        .expect_error(401, "mfa_required");
    dev.reauth(json!({ "totp_code": totp(&secret, &clock) }))
        .await
        .expect_ok();
    assert_eq!(
        dev.post("/v1/auth/api-keys", new_key.clone()).await.status,
        201
    );
    let before = dev.cookie.clone();
    dev.post("/v1/auth/mfa/disable", json!({}))
        .await
        .expect_ok();
    assert_ne!(
        dev.cookie, before,
        "removing MFA gives the session a new id"
    );
    assert_eq!(Browser::with_cookie(&gateway, before).me().await, 401);
    assert_eq!(dev.get("/v1/auth/me").await.json()["mfa_enabled"], false);
    dev.post(
        "/v1/auth/password",
        json!({ "new_password": OTHER_PASSWORD }),
    )
    .await
    .expect_ok();

    // Role changes from an admin session.
    let (_, mut admin, admin_secret) = enrolled_admin(&gateway, &clock, "yuri@example.com").await;
    let role_path = format!("/v1/admin/users/{}/role", target.id);
    admin
        .put(&role_path, json!({ "role": "developer" }))
        .await
        .expect_ok();
    clock.advance_secs(301);
    admin
        .put(&role_path, json!({ "role": "viewer" }))
        .await
        .expect_error(403, "fresh_auth_required");
    assert_eq!(
        gateway.auth.user_by_id(&target.id).await.unwrap().role,
        Role::Developer,
        "a refused change changes nothing"
    );
    admin
        .reauth(json!({ "totp_code": totp(&admin_secret, &clock) }))
        .await
        .expect_ok();
    admin
        .put(&role_path, json!({ "role": "viewer" }))
        .await
        .expect_ok();
    // A wrong password at reauth does not refresh anything.
    clock.advance_secs(301);
    admin
        .post("/v1/auth/reauth", json!({ "password": OTHER_PASSWORD }))
        .await
        .expect_error(401, "invalid_credentials");
    admin
        .put(&role_path, json!({ "role": "developer" }))
        .await
        .expect_error(403, "fresh_auth_required");
}

/// Sessions opened with the password alone (say, by someone who stole it) must not turn into
/// MFA sessions when the owner enrols elsewhere: enrolment ends every other session.
#[tokio::test]
async fn enrolment_ends_the_sessions_opened_before_it() {
    let (gateway, clock) = gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    user(&gateway, "ada@example.com", Role::Admin).await;
    let mut intruder = Browser::new(&gateway);
    intruder.login_ok("ada@example.com").await;
    intruder
        .get("/v1/admin/users")
        .await
        .expect_error(403, "mfa_enrolment_required");
    let mut owner = Browser::new(&gateway);
    owner.login_ok("ada@example.com").await;
    enrol_totp(&mut owner, &clock).await;
    owner.get("/v1/admin/users").await.expect_ok();
    assert_eq!(intruder.me().await, 401);
    intruder
        .get("/v1/admin/users")
        .await
        .expect_error(401, "unauthenticated");
}

/// Planting an admin (or granting a private app) from a session needs a recent password and
/// code check, like changing a role; the automation token is not a session and is exempt.
#[tokio::test]
async fn creating_users_and_granting_membership_need_fresh_auth() {
    let (gateway, clock) = gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let (_admin, mut browser, secret) = enrolled_admin(&gateway, &clock, "ada@example.com").await;
    let viewer = user(&gateway, "vic@example.com", Role::Viewer).await;
    clock.advance_secs(301);
    let plant =
        json!({ "email": "mallory@example.com", "role": "admin", "password": OTHER_PASSWORD });
    browser
        .post("/v1/admin/users", plant.clone())
        .await
        .expect_error(403, "fresh_auth_required");
    let member_path = format!("/v1/admin/apps/priv/members/{}", viewer.id);
    browser
        .put(&member_path, json!({}))
        .await
        .expect_error(403, "fresh_auth_required");
    browser
        .reauth(json!({ "totp_code": totp(&secret, &clock) }))
        .await
        .expect_ok();
    let created = browser.post("/v1/admin/users", plant).await;
    assert_eq!(created.status, 201, "{}", created.text);
    browser.put(&member_path, json!({})).await.expect_ok();
}
