//! Sign-in and sessions end to end through a real socket: the session cookie and its
//! attributes, one answer for every failed sign-in, lockout, per-IP throttling, idle and
//! absolute lifetimes, sign-out, and the session changes that follow a password or role
//! change. Time moves with a `ManualClock`; nothing sleeps.

use crate::auth_common;
use crate::common;

use auth_common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sluice::auth::Role;
use sluice::clock::Clock;

/// The `name=value` part and the attributes of the one session `Set-Cookie` of `reply`.
fn session_cookie(reply: &Reply) -> (String, String, String) {
    let cookies = reply.set_cookies();
    assert_eq!(cookies.len(), 1, "one Set-Cookie: {cookies:?}");
    let (pair, attributes) = cookies[0].split_once("; ").expect("attributes");
    let (name, value) = pair.split_once('=').expect("name=value");
    (name.to_string(), value.to_string(), attributes.to_string())
}

/// The session id decodes to 32 random bytes (256 bits, well over the 128 required).
#[track_caller]
fn assert_strong_id(value: &str) {
    let bytes = URL_SAFE_NO_PAD.decode(value).expect("base64url session id");
    assert_eq!(bytes.len(), 32, "session id size");
}

#[tokio::test]
async fn login_sets_an_httponly_lax_cookie_with_a_new_strong_id_each_time() {
    let (gateway, _clock) = gateway(&[]).await;
    user(&gateway, "dana@example.com", Role::Viewer).await;

    let mut first = Browser::new(&gateway);
    let reply = first.login("dana@example.com", PASSWORD).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (name, a, attributes) = session_cookie(&reply);
    assert_eq!(name, "sluice_session");
    // Plain http without an https public URL: no Secure (a browser would drop the cookie).
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax");
    assert_strong_id(&a);
    assert!(
        !reply.text.contains(&a),
        "the body never carries the session id"
    );
    assert_eq!(reply.json()["email"], "dana@example.com");
    assert_eq!(first.me().await, 200);

    // Another sign-in (no cookie sent) gets another id; both sessions live.
    let mut second = Browser::new(&gateway);
    let (_, b, _) = session_cookie(&second.login("dana@example.com", PASSWORD).await);
    assert_strong_id(&b);
    assert_ne!(a, b);

    // Signing in again while carrying a session cookie replaces that session: the old cookie
    // is dead, the new one works, and the unrelated session is untouched.
    let old = first.cookie.clone();
    let (_, c, _) = session_cookie(&first.login("dana@example.com", PASSWORD).await);
    assert_strong_id(&c);
    assert!(c != a && c != b);
    assert_eq!(Browser::with_cookie(&gateway, old).me().await, 401);
    assert_eq!(first.me().await, 200);
    assert_eq!(second.me().await, 200);
}

#[tokio::test]
async fn https_public_url_gives_a_host_prefixed_secure_cookie() {
    let (gateway, _clock) = gateway(&[("SLUICE_PUBLIC_URL", "https://sluice.example.com")]).await;
    user(&gateway, "dana@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    let reply = browser.login("dana@example.com", PASSWORD).await;
    let (name, value, attributes) = session_cookie(&reply);
    assert_eq!(name, "__Host-sluice_session");
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax; Secure");
    assert_strong_id(&value);
    // The gateway reads the prefixed name back (and only that name).
    assert_eq!(browser.me().await, 200);
    let unprefixed = Some(format!("sluice_session={value}"));
    assert_eq!(Browser::with_cookie(&gateway, unprefixed).me().await, 401);
}

#[tokio::test]
async fn samesite_none_forces_secure_even_on_http() {
    let (gateway, _clock) = gateway(&[("SLUICE_COOKIE_SAMESITE", "none")]).await;
    user(&gateway, "dana@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    let (name, _, attributes) = session_cookie(&browser.login("dana@example.com", PASSWORD).await);
    assert_eq!(name, "__Host-sluice_session");
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=None; Secure");

    let (gateway, _clock) = auth_common::gateway(&[("SLUICE_COOKIE_SAMESITE", "strict")]).await;
    user(&gateway, "dana@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    let (name, _, attributes) = session_cookie(&browser.login("dana@example.com", PASSWORD).await);
    assert_eq!(name, "sluice_session");
    assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Strict");
}

/// Status, headers and body of a reply, made comparable across requests.
///
/// Request ids are unique per request by design (they name one request in the log), so the
/// `x-request-id` header is left out and the id inside the body is masked after checking that
/// it is the header's. `date` changes with the second. `content-length` counts the id's
/// characters (ids are a prefix and a hex counter, so their length can grow by one between
/// requests); it is compared with the id's length taken out.
fn comparable(reply: &Reply) -> (u16, Vec<(String, String)>, String) {
    let id = reply.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(reply.json()["error"]["request_id"], id.as_str());
    assert_eq!(reply.text.matches(&id).count(), 1);
    let body = reply.text.replace(&id, "<request-id>");
    let mut headers: Vec<(String, String)> = reply
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap().to_string();
            if name == "content-length" {
                let length: usize = value.parse().unwrap();
                assert_eq!(length, reply.text.len());
                (name.to_string(), format!("{} + id", length - id.len()))
            } else {
                (name.to_string(), value)
            }
        })
        .collect();
    headers.sort();
    (reply.status, headers, body)
}

#[tokio::test]
async fn every_failed_login_answers_the_same_bytes() {
    let (gateway, _clock) = gateway(&[("SLUICE_LOCKOUT_THRESHOLD", "3")]).await;
    user(&gateway, "erin@example.com", Role::Viewer).await;
    user(&gateway, "frank@example.com", Role::Viewer).await;
    let disabled = user(&gateway, "gail@example.com", Role::Developer).await;
    gateway
        .auth
        .set_disabled(&disabled.id, true, "test", &Default::default())
        .await
        .unwrap();
    let mut browser = Browser::new(&gateway);
    for _ in 0..3 {
        browser.login("frank@example.com", OTHER_PASSWORD).await;
    }
    let frank = gateway
        .auth
        .user_by_email("frank@example.com")
        .await
        .unwrap();
    assert!(frank.locked_until.is_some(), "the setup locks frank");

    let wrong_password = browser.login("erin@example.com", OTHER_PASSWORD).await;
    let unknown = browser.login("nobody@example.com", PASSWORD).await;
    let locked_right_password = browser.login("frank@example.com", PASSWORD).await;
    let locked_wrong_password = browser.login("frank@example.com", OTHER_PASSWORD).await;
    let disabled_right_password = browser.login("gail@example.com", PASSWORD).await;
    let not_an_email = browser.login("not an email", PASSWORD).await;

    wrong_password.expect_error(401, "invalid_credentials");
    let expected = comparable(&wrong_password);
    for (case, reply) in [
        ("unknown account", &unknown),
        ("locked account, right password", &locked_right_password),
        ("locked account, wrong password", &locked_wrong_password),
        ("disabled account, right password", &disabled_right_password),
        ("malformed email", &not_an_email),
    ] {
        assert_eq!(comparable(reply), expected, "{case}");
        assert!(reply.set_cookies().is_empty(), "{case}: no cookie");
    }
}

/// Audit events, serialised, with the reasons of the `login_failed` ones.
async fn audit(gateway: &common::TestGateway) -> (String, Vec<serde_json::Value>) {
    let events = gateway.audit.list(100, None).await.unwrap();
    let text = serde_json::to_string(&events).unwrap();
    let values = serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap();
    (text, values)
}

fn count(events: &[serde_json::Value], event: &str, reason: Option<&str>, email: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["event"] == event && e["email"] == email && reason.is_none_or(|r| e["reason"] == r)
        })
        .count()
}

#[tokio::test]
async fn lockout_after_five_failures_lifts_after_lockout_secs_and_resets_on_success() {
    // The defaults: 5 failures, 24 h.
    let (gateway, clock) = gateway(&[]).await;
    let mut browser = Browser::new(&gateway);

    // Four failures do not lock: the right password still works (and resets the count).
    user(&gateway, "hana@example.com", Role::Viewer).await;
    for _ in 0..4 {
        browser
            .login("hana@example.com", OTHER_PASSWORD)
            .await
            .expect_error(401, "invalid_credentials");
    }
    browser.login_ok("hana@example.com").await;
    // Four more after a success: still not locked, so the count was reset.
    for _ in 0..4 {
        browser.login("hana@example.com", OTHER_PASSWORD).await;
    }
    browser.login_ok("hana@example.com").await;

    // The fifth consecutive failure locks; the right password then fails like a wrong one.
    user(&gateway, "ivan@example.com", Role::Viewer).await;
    for _ in 0..5 {
        browser
            .login("ivan@example.com", OTHER_PASSWORD)
            .await
            .expect_error(401, "invalid_credentials");
    }
    browser
        .login("ivan@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    let locked = gateway
        .auth
        .user_by_email("ivan@example.com")
        .await
        .unwrap();
    assert_eq!(locked.locked_until, Some(clock.now() + 86_400));

    // Still locked a second before the 24 h are up; open at 24 h.
    clock.advance_secs(86_399);
    browser
        .login("ivan@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    clock.advance_secs(1);
    browser.login_ok("ivan@example.com").await;

    let (_, events) = audit(&gateway).await;
    assert_eq!(
        count(
            &events,
            "login_failed",
            Some("wrong_password"),
            "ivan@example.com"
        ),
        5
    );
    assert_eq!(
        count(&events, "account_locked", None, "ivan@example.com"),
        1
    );
    assert_eq!(
        count(
            &events,
            "login_failed",
            Some("wrong_password"),
            "hana@example.com"
        ),
        8
    );
    assert_eq!(
        count(&events, "account_locked", None, "hana@example.com"),
        0
    );
}

#[tokio::test]
async fn lockout_threshold_and_duration_are_configurable_and_audited() {
    let (gateway, clock) = gateway(&[
        ("SLUICE_LOCKOUT_THRESHOLD", "3"),
        ("SLUICE_LOCKOUT_SECS", "600"),
    ])
    .await;
    let mut browser = Browser::new(&gateway);

    // One and two failures leave the right password working (a fresh account for each, as a
    // success resets the count).
    for (email, failures) in [("jo@example.com", 1), ("kai@example.com", 2)] {
        user(&gateway, email, Role::Viewer).await;
        for _ in 0..failures {
            browser
                .login(email, OTHER_PASSWORD)
                .await
                .expect_error(401, "invalid_credentials");
        }
        browser.login_ok(email).await;
    }

    user(&gateway, "lee@example.com", Role::Viewer).await;
    for _ in 0..3 {
        browser
            .login("lee@example.com", OTHER_PASSWORD)
            .await
            .expect_error(401, "invalid_credentials");
    }
    browser
        .login("lee@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    // A wrong password during the lock neither extends it nor counts.
    clock.advance_secs(599);
    browser
        .login("lee@example.com", OTHER_PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    // Once the lock has run out the count starts again: one failure does not re-lock.
    clock.advance_secs(1);
    browser
        .login("lee@example.com", OTHER_PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    browser.login_ok("lee@example.com").await;
    browser
        .login("ghost@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");

    let (text, events) = audit(&gateway).await;
    assert_eq!(
        count(
            &events,
            "login_failed",
            Some("wrong_password"),
            "lee@example.com"
        ),
        4
    );
    assert_eq!(count(&events, "account_locked", None, "lee@example.com"), 1);
    // During the lock no password is checked, right or wrong: both attempts are `locked`.
    assert_eq!(
        count(&events, "login_failed", Some("locked"), "lee@example.com"),
        2
    );
    assert_eq!(
        count(
            &events,
            "login_failed",
            Some("locked_right_password"),
            "lee@example.com"
        ),
        0
    );
    assert_eq!(
        count(
            &events,
            "login_failed",
            Some("unknown_account"),
            "ghost@example.com"
        ),
        1
    );
    assert_eq!(
        count(&events, "login_succeeded", None, "lee@example.com"),
        1
    );
    let locked = events
        .iter()
        .find(|e| e["event"] == "account_locked")
        .unwrap();
    assert!(
        locked["details"]
            .as_str()
            .unwrap()
            .contains("\"failed_logins\":3"),
        "{locked}"
    );
    // No password, right or wrong, is ever written to the audit log.
    for password in [PASSWORD, OTHER_PASSWORD] {
        assert!(
            !text.contains(password),
            "audit log holds a password: {text}"
        );
    }
}

#[tokio::test]
async fn too_many_logins_from_one_address_get_429_until_a_minute_passes() {
    let (gateway, clock) = gateway(&[("SLUICE_AUTH_RATE_PER_MINUTE", "3")]).await;
    user(&gateway, "max@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    for _ in 0..3 {
        browser
            .login("nobody@example.com", PASSWORD)
            .await
            .expect_error(401, "invalid_credentials");
    }
    // The fourth in the same minute is refused before the credentials are looked at, so even
    // the right password gets 429 (from another browser on the same address too).
    let refused = Browser::new(&gateway)
        .login("max@example.com", PASSWORD)
        .await;
    refused.expect_error(429, "rate_limited");
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert!(refused.set_cookies().is_empty());
    assert_eq!(refused.headers["content-type"], "application/json");
    let (_, events) = audit(&gateway).await;
    assert_eq!(count(&events, "login_failed", None, "max@example.com"), 0);

    clock.advance_secs(60);
    browser.login_ok("max@example.com").await;
}

#[tokio::test]
async fn idle_sessions_end_and_activity_keeps_them_alive() {
    let (gateway, clock) = gateway(&[
        ("SLUICE_SESSION_IDLE_TIMEOUT_SECS", "600"),
        ("SLUICE_SESSION_ABSOLUTE_TIMEOUT_SECS", "3600"),
    ])
    .await;
    user(&gateway, "nia@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("nia@example.com").await;

    // Activity every 500 s carries the session well past 600 s since sign-in.
    for _ in 0..3 {
        clock.advance_secs(500);
        assert_eq!(browser.me().await, 200);
    }
    let me = browser.get("/v1/auth/me").await.expect_ok();
    assert_eq!(me["session"]["idle_expires_at"], clock.now() + 600);

    // Exactly the idle period is still alive; one second more without a request is not.
    let cookie = browser.cookie.clone();
    clock.advance_secs(600);
    assert_eq!(
        Browser::with_cookie(&gateway, cookie.clone()).me().await,
        200
    );
    clock.advance_secs(601);
    assert_eq!(browser.me().await, 401);
    // Ended for good: the session is gone, not just refused this once.
    assert_eq!(Browser::with_cookie(&gateway, cookie).me().await, 401);
}

#[tokio::test]
async fn sessions_end_at_the_absolute_timeout_whatever_the_activity() {
    let (gateway, clock) = gateway(&[
        ("SLUICE_SESSION_IDLE_TIMEOUT_SECS", "600"),
        ("SLUICE_SESSION_ABSOLUTE_TIMEOUT_SECS", "1800"),
    ])
    .await;
    user(&gateway, "omar@example.com", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("omar@example.com").await;
    for _ in 0..3 {
        clock.advance_secs(500);
        assert_eq!(browser.me().await, 200);
    }
    clock.advance_secs(300);
    assert_eq!(
        browser.me().await,
        200,
        "exactly the absolute timeout is still alive"
    );
    // 1 s later, with the last request 1 s ago: over.
    clock.advance_secs(1);
    assert_eq!(browser.me().await, 401);
    // A workspace query with the dead cookie is anonymous.
    browser
        .run("ws", "q")
        .await
        .expect_error(401, "unauthenticated");
}

#[tokio::test]
async fn logout_and_logout_everywhere_end_sessions_on_the_server() {
    let (gateway, _clock) = gateway(&[]).await;
    user(&gateway, "pia@example.com", Role::Viewer).await;
    user(&gateway, "quinn@example.com", Role::Viewer).await;
    let mut laptop = Browser::new(&gateway);
    let mut phone = Browser::new(&gateway);
    let mut tablet = Browser::new(&gateway);
    let mut other_user = Browser::new(&gateway);
    laptop.login_ok("pia@example.com").await;
    let phone_session = phone.login_ok("pia@example.com").await["session"]["id"].clone();
    let tablet_session = tablet.login_ok("pia@example.com").await["session"]["id"].clone();
    let other_session = other_user.login_ok("quinn@example.com").await["session"]["id"].clone();

    // The list holds this user's three sessions, the current one marked, and nothing else.
    let list = phone.get("/v1/auth/sessions").await.expect_ok();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    assert!(sessions.iter().all(|s| s["id"] != other_session));
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], phone_session);
    assert!(
        !list
            .to_string()
            .contains(phone.cookie.as_ref().unwrap().split('=').nth(1).unwrap())
    );

    // Ending one session by id; another user's session id is not found (and stays alive).
    let tablet_id = tablet_session.as_str().unwrap();
    phone
        .delete(&format!("/v1/auth/sessions/{tablet_id}"))
        .await
        .expect_ok();
    assert_eq!(tablet.me().await, 401);
    phone
        .delete(&format!(
            "/v1/auth/sessions/{}",
            other_session.as_str().unwrap()
        ))
        .await
        .expect_error(404, "not_found");
    assert_eq!(other_user.me().await, 200);

    // Logout kills the session server-side: the old cookie replayed is refused.
    let laptop_cookie = laptop.cookie.clone();
    let reply = laptop.post("/v1/auth/logout", json!({})).await;
    reply.expect_ok();
    assert!(reply.set_cookies()[0].contains("Max-Age=0"));
    assert_eq!(laptop.cookie, None);
    assert_eq!(
        Browser::with_cookie(&gateway, laptop_cookie).me().await,
        401
    );
    assert_eq!(phone.me().await, 200);

    // Logout everywhere ends every session of the account, not another user's.
    let mut desktop = Browser::new(&gateway);
    desktop.login_ok("pia@example.com").await;
    let phone_cookie = phone.cookie.clone();
    let ended = phone
        .post("/v1/auth/logout-everywhere", json!({}))
        .await
        .expect_ok();
    assert_eq!(ended["sessions_ended"], 2);
    assert_eq!(Browser::with_cookie(&gateway, phone_cookie).me().await, 401);
    assert_eq!(desktop.me().await, 401);
    assert_eq!(other_user.me().await, 200);
    assert_eq!(
        other_user.get("/v1/auth/sessions").await.expect_ok()["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn password_change_rotates_this_session_and_ends_the_others() {
    let (gateway, _clock) = gateway(&[]).await;
    user(&gateway, "rosa@example.com", Role::Viewer).await;
    let mut laptop = Browser::new(&gateway);
    let mut phone = Browser::new(&gateway);
    laptop.login_ok("rosa@example.com").await;
    phone.login_ok("rosa@example.com").await;

    laptop
        .post(
            "/v1/auth/password",
            json!({ "new_password": "password123" }),
        )
        .await
        .expect_error(400, "weak_password");
    let before = laptop.cookie.clone();
    let reply = laptop
        .post(
            "/v1/auth/password",
            json!({ "new_password": OTHER_PASSWORD }),
        )
        .await;
    reply.expect_ok();
    assert_eq!(reply.set_cookies().len(), 1);
    assert_ne!(laptop.cookie, before, "the session got a new id");
    assert_eq!(laptop.me().await, 200);
    assert_eq!(Browser::with_cookie(&gateway, before).me().await, 401);
    assert_eq!(phone.me().await, 401);

    let mut browser = Browser::new(&gateway);
    browser
        .login("rosa@example.com", PASSWORD)
        .await
        .expect_error(401, "invalid_credentials");
    browser
        .login("rosa@example.com", OTHER_PASSWORD)
        .await
        .expect_ok();
}

#[tokio::test]
async fn role_change_by_an_admin_ends_the_targets_sessions() {
    let (gateway, _clock) = gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let sam = user(&gateway, "sam@example.com", Role::Viewer).await;
    user(&gateway, "tess@example.com", Role::Viewer).await;
    let mut target = Browser::new(&gateway);
    let mut bystander = Browser::new(&gateway);
    target.login_ok("sam@example.com").await;
    bystander.login_ok("tess@example.com").await;

    let mut automation = Browser::with_key(&gateway, ADMIN_TOKEN);
    let changed = automation
        .put(
            &format!("/v1/admin/users/{}/role", sam.id),
            json!({ "role": "developer" }),
        )
        .await
        .expect_ok();
    assert_eq!(changed["role"], "developer");
    assert_eq!(target.me().await, 401);
    assert_eq!(bystander.me().await, 200);
    let me = target.login_ok("sam@example.com").await;
    assert_eq!(me["role"], "developer");
}
