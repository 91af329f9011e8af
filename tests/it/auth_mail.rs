//! The mailed account flows (password reset, self-signup, email change) end to end, through
//! a gateway on a real socket and a real SMTP server (aiosmtpd, `tests/it/common/smtp.rs`).
//!
//! Time is a `ManualClock`: links expire and fresh auth goes stale by moving it, never by
//! sleeping. Waiting happens only for mail to arrive (polled, bounded) and for background
//! mail jobs to finish (observed through the audit log they write, not guessed with a sleep).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestGateway;
use common::smtp::{ReceivedMail, SmtpSink, link_in};
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};
use sluice::auth::ClientInfo;
use sluice::auth::Role;
use sluice::clock::ManualClock;

const PUBLIC_URL: &str = "https://sluice.example.com";
const MAIL_FROM: &str = "Sluice <sluice@example.com>";
const MAIL_FROM_ADDRESS: &str = "sluice@example.com";
/// With an https public URL the cookie takes the `__Host-` prefix (and `Secure`).
const COOKIE: &str = "__Host-sluice_session";
/// The default link lifetime (`SLUICE_RESET_TOKEN_TTL_SECS`), set explicitly here.
const TTL_SECS: i64 = 3600;
/// The default fresh-auth window (`SLUICE_FRESH_AUTH_SECS`), set explicitly here.
const FRESH_SECS: i64 = 300;
/// How long mail may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

const PASSWORD: &str = "tangerine-kettle-orbit-7";
const NEW_PASSWORD: &str = "lantern-meadow-quartz-42";

// ----- Harness -------------------------------------------------------------------------

/// One HTTP answer.
struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The error code of a JSON error answer.
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {} {}", self.status, self.text))
            .to_owned()
    }

    /// Asserts a JSON error answer with `status` and `code`.
    fn refused(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        assert_eq!(self.code(), code, "{what}: {}", self.text);
        let content_type = self.header(header::CONTENT_TYPE.as_str());
        assert!(
            content_type.starts_with("application/json"),
            "{what}: content-type {content_type}"
        );
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// `name=value` of the session cookie this answer sets (non-empty value).
    fn session_cookie(&self) -> String {
        let set = self
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|v| {
                v.starts_with(&format!("{COOKIE}=")) && !v.starts_with(&format!("{COOKIE}=;"))
            })
            .unwrap_or_else(|| panic!("no session cookie set: {:?}", self.headers));
        assert!(
            set.contains("; Secure"),
            "an https public URL means Secure: {set}"
        );
        assert!(set.contains("HttpOnly"), "{set}");
        set.split(';').next().unwrap().to_owned()
    }

    /// Status, headers (without the per-request ones) and body, for byte comparisons.
    fn fingerprint(&self) -> (u16, Vec<(String, Vec<u8>)>, String) {
        let headers = self
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        (self.status, headers, self.text.clone())
    }
}

/// A gateway with mail on, its SMTP sink and its clock.
struct Mailed {
    sink: SmtpSink,
    clock: ManualClock,
    gateway: TestGateway,
}

impl Mailed {
    async fn start(extra: &[(&str, &str)]) -> Mailed {
        let sink = SmtpSink::start().await;
        let url = sink.url();
        let mut env: Vec<(&str, &str)> = vec![("SLUICE_SMTP_URL", url.as_str())];
        env.extend(mail_env());
        env.extend_from_slice(extra);
        let clock = ManualClock::new();
        let gateway = start_gateway(&env, &clock).await;
        Mailed {
            sink,
            clock,
            gateway,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        cookie: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Reply {
        send(&self.gateway, method, path, body, cookie, extra).await
    }

    async fn post(&self, path: &str, body: Value, cookie: Option<&str>) -> Reply {
        self.send(reqwest::Method::POST, path, Some(&body), cookie, &[])
            .await
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, None, cookie, &[])
            .await
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            json!({ "email": email, "password": password }),
            None,
        )
        .await
    }

    /// Signs in (which must work) and returns the session cookie.
    async fn sign_in(&self, email: &str, password: &str) -> String {
        let reply = self.login(email, password).await;
        assert_eq!(reply.status, 200, "sign-in of {email}: {}", reply.text);
        reply.session_cookie()
    }

    /// `/v1/auth/me` status for a cookie.
    async fn me(&self, cookie: &str) -> u16 {
        self.get("/v1/auth/me", Some(cookie)).await.status
    }

    async fn user(&self, email: &str, password: &str) -> String {
        self.gateway
            .auth
            .create_user(
                email,
                "Test",
                Role::Viewer,
                vec![],
                Some(password.into()),
                "test",
            )
            .await
            .unwrap_or_else(|e| panic!("create {email}: {e}"))
            .id
    }

    async fn request_reset(&self, email: &str) -> Reply {
        let reply = self
            .post("/v1/auth/password-reset", json!({ "email": email }), None)
            .await;
        assert_eq!(reply.status, 202, "reset request: {}", reply.text);
        reply
    }

    /// The next mail to `to`, with the token of its link to `page`.
    async fn mailed_token(&self, to: &str, page: &str) -> (ReceivedMail, String) {
        let mail = self.sink.wait_for(to, WAIT).await;
        let token = token_in(&mail, page);
        (mail, token)
    }

    async fn complete_reset(&self, token: &str, new_password: &str) -> Reply {
        self.post(
            "/v1/auth/password-reset/complete",
            json!({ "token": token, "new_password": new_password }),
            None,
        )
        .await
    }

    /// Waits until the audit log holds `count` events named `event` (background jobs write
    /// them when they finish deciding what to mail).
    async fn wait_audit(&self, event: &str, count: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = self
                .gateway
                .audit
                .list(1000, None)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event == event)
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {count} `{event}` audit events after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn audit_events(&self) -> Vec<String> {
        self.gateway
            .audit
            .list(1000, None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }
}

/// The mail settings every gateway here runs with, besides `SLUICE_SMTP_URL`.
fn mail_env() -> [(&'static str, &'static str); 5] {
    [
        ("SLUICE_MAIL_FROM", MAIL_FROM),
        ("SLUICE_PUBLIC_URL", PUBLIC_URL),
        ("SLUICE_AUTH_RATE_PER_MINUTE", "100000"),
        ("SLUICE_RESET_TOKEN_TTL_SECS", "3600"),
        ("SLUICE_FRESH_AUTH_SECS", "300"),
    ]
}

async fn start_gateway(env: &[(&str, &str)], clock: &ManualClock) -> TestGateway {
    let spec = sluice::spec::yaml::parse("").expect("empty catalog");
    TestGateway::start_clocked(spec, env, Arc::new(clock.clone())).await
}

async fn send(
    gateway: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    cookie: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut request = gateway.client.request(method, gateway.url(path));
    if let Some(body) = body {
        request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    if let Some(cookie) = cookie {
        // As a browser on one of the instance's pages would: cookie-authenticated writes
        // must name their origin (the CSRF check).
        request = request
            .header(header::COOKIE, cookie)
            .header(header::ORIGIN, PUBLIC_URL);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.expect("body"),
    }
}

/// The token of the `{PUBLIC_URL}/auth/{page}#token=` link in `mail`; checks the sender.
fn token_in(mail: &ReceivedMail, page: &str) -> String {
    assert_eq!(mail.from, MAIL_FROM, "From header");
    assert_eq!(mail.envelope_from, MAIL_FROM_ADDRESS, "envelope sender");
    let prefix = format!("{PUBLIC_URL}/auth/{page}#token=");
    let link = link_in(&mail.text, &prefix)
        .unwrap_or_else(|| panic!("no link starting with {prefix} in:\n{}", mail.text));
    let token = link[prefix.len()..].to_owned();
    assert!(
        token.len() >= 32
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "the token should be long base64url: {token:?}"
    );
    token
}

// ----- Password reset ------------------------------------------------------------------

/// A locked-out user with a session elsewhere resets the password by mail: the link works
/// once, the lock is lifted, the old session and the old password are dead.
#[tokio::test]
async fn reset_unlocks_the_account_ends_its_sessions_and_works_once() {
    let m = Mailed::start(&[]).await;
    let email = "alice@example.com";
    m.user(email, PASSWORD).await;

    // Signed in elsewhere before the trouble starts.
    let old_session = m.sign_in(email, PASSWORD).await;
    assert_eq!(m.me(&old_session).await, 200);

    // Five wrong passwords lock the account: the right one no longer works.
    for attempt in 1..=5 {
        m.login(email, &format!("wrong-guess-number-{attempt}"))
            .await
            .refused(401, "invalid_credentials", "wrong password");
    }
    m.login(email, PASSWORD).await.refused(
        401,
        "invalid_credentials",
        "right password on a locked account",
    );
    assert!(
        m.audit_events()
            .await
            .contains(&"account_locked".to_owned())
    );
    // The lock alone does not end sessions (so the reset below is what must).
    assert_eq!(m.me(&old_session).await, 200);

    m.request_reset(email).await;
    let (mail, token) = m.mailed_token(email, "reset").await;
    assert_eq!(mail.to, vec![email.to_owned()]);
    assert_eq!(mail.subject, "Reset your Sluice password");

    let done = m.complete_reset(&token, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json()["status"], "password_changed");

    // The same link a second time.
    m.complete_reset(&token, "another-fine-passphrase-9")
        .await
        .refused(400, "invalid_token", "second use of a reset link");

    // Unlocked at once: no clock movement needed.
    let fresh = m.sign_in(email, NEW_PASSWORD).await;
    assert_eq!(m.me(&fresh).await, 200);
    // The session from before the reset is dead; the old password too.
    let stale = m.get("/v1/auth/me", Some(&old_session)).await;
    stale.refused(401, "unauthenticated", "session from before the reset");
    m.login(email, PASSWORD).await.refused(
        401,
        "invalid_credentials",
        "old password after a reset",
    );
    // The second-use attempt did not change the password either.
    m.login(email, "another-fine-passphrase-9").await.refused(
        401,
        "invalid_credentials",
        "password of the refused second use",
    );

    let events = m.audit_events().await;
    for event in [
        "password_reset_requested",
        "password_reset_completed",
        "account_unlocked",
    ] {
        assert!(events.contains(&event.to_owned()), "{event} in {events:?}");
    }
}

/// A link stops working once its lifetime has passed, and a newer link voids older ones.
#[tokio::test]
async fn expired_and_superseded_reset_links_fail() {
    let m = Mailed::start(&[]).await;
    let email = "bob@example.com";
    m.user(email, PASSWORD).await;

    m.request_reset(email).await;
    let (_, expired) = m.mailed_token(email, "reset").await;
    m.clock.advance_secs(TTL_SECS + 1);
    m.complete_reset(&expired, NEW_PASSWORD)
        .await
        .refused(400, "invalid_token", "expired link");
    // Nothing changed.
    m.sign_in(email, PASSWORD).await;

    // Just inside the lifetime a link still works, but only the newest one.
    m.request_reset(email).await;
    let (_, first) = m.mailed_token(email, "reset").await;
    m.request_reset(email).await;
    let (_, second) = m.mailed_token(email, "reset").await;
    assert_ne!(first, second);
    m.clock.advance_secs(TTL_SECS - 5);
    m.complete_reset(&first, NEW_PASSWORD).await.refused(
        400,
        "invalid_token",
        "link voided by a newer one",
    );
    m.sign_in(email, PASSWORD).await;
    let done = m.complete_reset(&second, NEW_PASSWORD).await;
    assert_eq!(
        done.status, 200,
        "newest link within its lifetime: {}",
        done.text
    );
    m.sign_in(email, NEW_PASSWORD).await;
}

/// The reset request answers the same bytes for an active, an unknown and a disabled
/// account, and only the active account gets mail.
#[tokio::test]
async fn reset_answers_the_same_bytes_whoever_asks() {
    let m = Mailed::start(&[]).await;
    let active = "active@example.com";
    let unknown = "nobody@example.com";
    let disabled = "disabled@example.com";
    m.user(active, PASSWORD).await;
    let id = m.user(disabled, PASSWORD).await;
    m.gateway
        .auth
        .set_disabled(&id, true, "test", &ClientInfo::default())
        .await
        .unwrap();

    let mut answers = Vec::new();
    for email in [active, unknown, disabled] {
        let reply = m.request_reset(email).await;
        answers.push((email, reply.fingerprint()));
    }
    for (email, answer) in &answers[1..] {
        assert_eq!(
            answer, &answers[0].1,
            "the answer for {email} differs from the one for {active}"
        );
    }
    let (_, _, body) = &answers[0].1;
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], "accepted");

    // All three background jobs have decided (each writes its audit event), and the active
    // account's mail has arrived: nothing else is on its way.
    m.wait_audit("password_reset_requested", 3).await;
    m.mailed_token(active, "reset").await;
    assert_eq!(m.sink.count_for(active).await, 1);
    assert_eq!(m.sink.count_for(unknown).await, 0);
    assert_eq!(m.sink.count_for(disabled).await, 0);
}

/// A relay that accepts connections and never answers: the reset request must not wait for
/// it, for an existing account any more than for an unknown one.
#[tokio::test]
async fn reset_does_not_wait_for_smtp() {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://127.0.0.1:{}", relay.local_addr().unwrap().port());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let stalling = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = relay.accept().await {
            held.push(socket);
            let _ = accepted_tx.send(());
        }
    });
    let mut env: Vec<(&str, &str)> = vec![("SLUICE_SMTP_URL", url.as_str())];
    env.extend(mail_env());
    let clock = ManualClock::new();
    let gateway = start_gateway(&env, &clock).await;
    let existing = "existing@example.com";
    gateway
        .auth
        .create_user(
            existing,
            "E",
            Role::Viewer,
            vec![],
            Some(PASSWORD.into()),
            "test",
        )
        .await
        .unwrap();

    // lettre waits at least 10 s (its connect timeout) for a relay that does not greet; an
    // answer that waited for the relay could not come back within this bound.
    let bound = Duration::from_secs(3);
    let mut timings: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..5 {
        for (i, email) in [existing, "unknown@example.com"].into_iter().enumerate() {
            let started = Instant::now();
            let reply = tokio::time::timeout(
                bound,
                send(
                    &gateway,
                    reqwest::Method::POST,
                    "/v1/auth/password-reset",
                    Some(&json!({ "email": email })),
                    None,
                    &[],
                ),
            )
            .await
            .unwrap_or_else(|_| panic!("round {round}: the reset for {email} waited for SMTP"));
            timings[i].push(started.elapsed());
            assert_eq!(reply.status, 202, "{}", reply.text);
        }
    }
    // The mail jobs did run (and are stuck on the relay): one connection per existing-account
    // request, so the answers above came back while mail was in flight.
    for n in 1..=5 {
        tokio::time::timeout(Duration::from_secs(10), accepted.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of 5 mail jobs reached the relay", n - 1))
            .unwrap();
    }

    let median = |list: &mut Vec<Duration>| {
        list.sort();
        list[list.len() / 2]
    };
    let (known, unknown) = (median(&mut timings[0]), median(&mut timings[1]));
    let (fast, slow) = (known.min(unknown), known.max(unknown));
    assert!(
        slow - fast <= Duration::from_millis(50) || slow <= fast * 5,
        "median answer times differ: existing {known:?}, unknown {unknown:?}"
    );
    gateway.stop().await;
    stalling.abort();
}

/// Links are built from SLUICE_PUBLIC_URL only, whatever host the request names.
#[tokio::test]
async fn reset_links_ignore_the_request_host() {
    let m = Mailed::start(&[]).await;
    let email = "carol@example.com";
    m.user(email, PASSWORD).await;
    let reply = m
        .send(
            reqwest::Method::POST,
            "/v1/auth/password-reset",
            Some(&json!({ "email": email })),
            None,
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-port", "8443"),
                ("forwarded", "host=evil.example;proto=http"),
                // Consistent with `Host` (as a client that forges both would send it), so the
                // login-CSRF check, which refuses writes from other pages, lets it through.
                ("origin", "http://evil.example"),
                ("referer", "https://evil.example/auth/reset"),
            ],
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let (mail, token) = m.mailed_token(email, "reset").await;
    assert!(
        !mail.text.to_lowercase().contains("evil"),
        "the mail names the request's host:\n{}",
        mail.text
    );
    assert!(
        mail.text
            .contains(&format!("{PUBLIC_URL}/auth/reset#token={token}")),
        "{}",
        mail.text
    );
}

/// A weak new password is refused and does not spend the link.
#[tokio::test]
async fn weak_password_at_reset_keeps_the_link() {
    let m = Mailed::start(&[]).await;
    let email = "dorothy@example.com";
    m.user(email, PASSWORD).await;
    m.request_reset(email).await;
    let (_, token) = m.mailed_token(email, "reset").await;

    for weak in ["short", "password1234", "dorothy-at-home-2024"] {
        m.complete_reset(&token, weak)
            .await
            .refused(400, "weak_password", weak);
    }
    m.sign_in(email, PASSWORD).await;
    let done = m.complete_reset(&token, NEW_PASSWORD).await;
    assert_eq!(
        done.status, 200,
        "the link after weak attempts: {}",
        done.text
    );
    m.sign_in(email, NEW_PASSWORD).await;
}

// ----- Signup ----------------------------------------------------------------------------

/// Signup is off unless switched on: a JSON refusal and no mail.
#[tokio::test]
async fn signup_is_off_by_default() {
    let m = Mailed::start(&[]).await;
    let email = "newcomer@example.com";
    let reply = m
        .post("/v1/auth/signup", json!({ "email": email }), None)
        .await;
    assert!(
        [403, 404].contains(&reply.status),
        "signup should be refused: {} {}",
        reply.status,
        reply.text
    );
    assert!(reply.json()["error"]["code"].is_string(), "{}", reply.text);
    // Refused before any background job is spawned, so there is nothing to wait for.
    assert_eq!(m.sink.count_for(email).await, 0);
    assert!(
        !m.audit_events()
            .await
            .contains(&"signup_requested".to_owned()),
        "no signup job may run"
    );
}

/// Signup by mail for allowed domains: the link creates a signed-in viewer once; another
/// domain is refused; an existing account gets a notice instead of a link, behind the same
/// answer.
#[tokio::test]
async fn signup_by_mail_for_allowed_domains() {
    let m = Mailed::start(&[
        ("SLUICE_SIGNUP_ENABLED", "true"),
        ("SLUICE_SIGNUP_ALLOWED_DOMAINS", "example.com"),
    ])
    .await;

    for outsider in [
        "eve@example.org",
        "eve@evil-example.com",
        "eve@example.com.evil.org",
        "eve@sub.example.com",
    ] {
        m.post("/v1/auth/signup", json!({ "email": outsider }), None)
            .await
            .refused(403, "forbidden", outsider);
    }

    let newcomer = "newcomer@example.com";
    let existing = "frank@example.com";
    m.user(existing, PASSWORD).await;
    let new_reply = m
        .post("/v1/auth/signup", json!({ "email": newcomer }), None)
        .await;
    assert_eq!(new_reply.status, 202, "{}", new_reply.text);
    let existing_reply = m
        .post("/v1/auth/signup", json!({ "email": existing }), None)
        .await;
    assert_eq!(
        existing_reply.fingerprint(),
        new_reply.fingerprint(),
        "signup for an existing account must answer the same bytes"
    );

    // The existing account gets a notice, not a link.
    let notice = m.sink.wait_for(existing, WAIT).await;
    assert_eq!(notice.from, MAIL_FROM);
    assert!(
        notice.subject.to_lowercase().contains("already have"),
        "{}",
        notice.subject
    );
    assert!(
        !notice.text.contains("#token=") && !notice.text.contains("/auth/signup"),
        "the notice must not carry a signup link:\n{}",
        notice.text
    );

    let (mail, token) = m.mailed_token(newcomer, "signup").await;
    assert_eq!(mail.to, vec![newcomer.to_owned()]);

    let created = m
        .post(
            "/v1/auth/signup/complete",
            json!({ "token": token, "password": NEW_PASSWORD, "display_name": "New Comer" }),
            None,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let account = created.json();
    assert_eq!(account["email"], newcomer);
    assert_eq!(account["role"], "viewer");
    assert_eq!(account["display_name"], "New Comer");
    let cookie = created.session_cookie();
    let me = m.get("/v1/auth/me", Some(&cookie)).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.json()["email"], newcomer);
    assert_eq!(me.json()["role"], "viewer");

    // The link works once.
    m.post(
        "/v1/auth/signup/complete",
        json!({ "token": token, "password": "yet-another-passphrase-3" }),
        None,
    )
    .await
    .refused(400, "invalid_token", "second use of a signup link");
    m.sign_in(newcomer, NEW_PASSWORD).await;

    // None of the refused outsiders got anything.
    for outsider in [
        "eve@example.org",
        "eve@evil-example.com",
        "eve@example.com.evil.org",
    ] {
        assert_eq!(m.sink.count_for(outsider).await, 0, "{outsider}");
    }
    assert_eq!(m.sink.count_for("eve@sub.example.com").await, 0);
}

// ----- Email change ------------------------------------------------------------------------

/// An email change needs a fresh sign-in, is confirmed by a link mailed to the new address,
/// and ends the account's sessions.
#[tokio::test]
async fn email_change_is_confirmed_from_the_new_address() {
    let m = Mailed::start(&[]).await;
    let old = "grace@example.com";
    let new = "grace.hopper@example.org";
    m.user(old, PASSWORD).await;

    m.post("/v1/auth/email", json!({ "new_email": new }), None)
        .await
        .refused(401, "unauthenticated", "email change without a session");

    let here = m.sign_in(old, PASSWORD).await;
    let elsewhere = m.sign_in(old, PASSWORD).await;

    // The sign-in is no longer fresh.
    m.clock.advance_secs(FRESH_SECS + 1);
    m.post("/v1/auth/email", json!({ "new_email": new }), Some(&here))
        .await
        .refused(403, "fresh_auth_required", "stale sign-in");
    let reauth = m
        .post(
            "/v1/auth/reauth",
            json!({ "password": PASSWORD }),
            Some(&here),
        )
        .await;
    assert_eq!(reauth.status, 200, "{}", reauth.text);
    let asked = m
        .post("/v1/auth/email", json!({ "new_email": new }), Some(&here))
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);

    let (mail, token) = m.mailed_token(new, "email").await;
    assert_eq!(mail.to, vec![new.to_owned()]);
    // Nothing has changed yet.
    m.login(new, PASSWORD).await.refused(
        401,
        "invalid_credentials",
        "new address before confirming",
    );
    assert_eq!(m.me(&here).await, 200);

    let confirmed = m
        .post("/v1/auth/email/confirm", json!({ "token": token }), None)
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);
    assert_eq!(confirmed.json()["email"], new);
    m.post("/v1/auth/email/confirm", json!({ "token": token }), None)
        .await
        .refused(400, "invalid_token", "second use of an email link");

    // Every session of the account ended.
    assert_eq!(m.me(&here).await, 401);
    assert_eq!(m.me(&elsewhere).await, 401);
    let cookie = m.sign_in(new, PASSWORD).await;
    let me = m.get("/v1/auth/me", Some(&cookie)).await;
    assert_eq!(me.json()["email"], new);
    m.login(old, PASSWORD).await.refused(
        401,
        "invalid_credentials",
        "old address after the change",
    );
    // The old address never saw the link.
    for _ in 0..m.sink.count_for(old).await {
        let other = m.sink.wait_for(old, WAIT).await;
        assert!(!other.text.contains(&token), "{}", other.text);
    }
}

/// A reset link mailed to the old address stops working once the email has changed: the
/// old mailbox no longer speaks for the account (a user may change address because they
/// lost it).
#[tokio::test]
async fn email_change_voids_reset_links_sent_to_the_old_address() {
    let m = Mailed::start(&[]).await;
    let old = "heidi@example.com";
    let new = "heidi.new@example.org";
    m.user(old, PASSWORD).await;
    m.request_reset(old).await;
    let (_, reset) = m.mailed_token(old, "reset").await;

    let session = m.sign_in(old, PASSWORD).await;
    let asked = m
        .post(
            "/v1/auth/email",
            json!({ "new_email": new }),
            Some(&session),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    let (_, change) = m.mailed_token(new, "email").await;
    let confirmed = m
        .post("/v1/auth/email/confirm", json!({ "token": change }), None)
        .await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);

    m.complete_reset(&reset, NEW_PASSWORD).await.refused(
        400,
        "invalid_token",
        "reset link mailed to the previous address",
    );
    m.sign_in(new, PASSWORD).await;
}

/// A pending email change dies with a password reset: someone who had the password (and so
/// could ask to move the account to their own address) must not be able to finish the move
/// after the owner has reset the password and ended every session.
#[tokio::test]
async fn password_reset_voids_a_pending_email_change() {
    let m = Mailed::start(&[]).await;
    let owner = "ivan@example.com";
    let intruder = "intruder@example.net";
    m.user(owner, PASSWORD).await;

    // The intruder signs in with the stolen password and asks to move the account.
    let intruder_session = m.sign_in(owner, PASSWORD).await;
    let asked = m
        .post(
            "/v1/auth/email",
            json!({ "new_email": intruder }),
            Some(&intruder_session),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    let (_, change) = m.mailed_token(intruder, "email").await;

    // The owner resets the password by mail.
    m.request_reset(owner).await;
    let (_, reset) = m.mailed_token(owner, "reset").await;
    let done = m.complete_reset(&reset, NEW_PASSWORD).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(m.me(&intruder_session).await, 401);

    m.post("/v1/auth/email/confirm", json!({ "token": change }), None)
        .await
        .refused(400, "invalid_token", "email change asked before the reset");
    m.sign_in(owner, NEW_PASSWORD).await;
    m.login(intruder, NEW_PASSWORD).await.refused(
        401,
        "invalid_credentials",
        "the intruder's address",
    );
}

/// The same for a password change from a signed-in session: the owner who changes the
/// password (ending every other session) must also end a move to an address they never
/// asked for.
#[tokio::test]
async fn password_change_voids_a_pending_email_change() {
    let m = Mailed::start(&[]).await;
    let owner = "judy@example.com";
    let intruder = "intruder@example.net";
    m.user(owner, PASSWORD).await;

    let intruder_session = m.sign_in(owner, PASSWORD).await;
    let asked = m
        .post(
            "/v1/auth/email",
            json!({ "new_email": intruder }),
            Some(&intruder_session),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    let (_, change) = m.mailed_token(intruder, "email").await;

    let owner_session = m.sign_in(owner, PASSWORD).await;
    let changed = m
        .post(
            "/v1/auth/password",
            json!({ "new_password": NEW_PASSWORD }),
            Some(&owner_session),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(m.me(&intruder_session).await, 401);

    m.post("/v1/auth/email/confirm", json!({ "token": change }), None)
        .await
        .refused(
            400,
            "invalid_token",
            "email change asked before the password change",
        );
    m.sign_in(owner, NEW_PASSWORD).await;
}

// ----- Pages -----------------------------------------------------------------------------

/// The pages links open: HTML under a strict CSP, no inline script, one same-origin script
/// served as JavaScript, and a form whose fields the endpoint it posts to accepts.
#[tokio::test]
async fn link_pages_are_static_html_under_a_strict_csp() {
    let m = Mailed::start(&[
        ("SLUICE_SIGNUP_ENABLED", "true"),
        ("SLUICE_SIGNUP_ALLOWED_DOMAINS", "example.com"),
    ])
    .await;
    for page in ["/auth/reset", "/auth/signup", "/auth/email"] {
        let reply = m.get(page, None).await;
        assert_eq!(reply.status, 200, "{page}");
        assert!(
            reply.header("content-type").starts_with("text/html"),
            "{page}: {}",
            reply.header("content-type")
        );
        let csp = reply.header("content-security-policy");
        let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
        for needed in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "script-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(
                directives.contains(&needed),
                "{page}: `{needed}` not in {csp}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(reply.header("referrer-policy"), "no-referrer", "{page}");

        let html = reply.text.to_lowercase();
        let scripts = script_sources(&html, page);
        assert!(!scripts.is_empty(), "{page} loads no script");
        for src in scripts {
            assert!(src.starts_with('/'), "{page}: script from elsewhere: {src}");
            let script = m.get(&src, None).await;
            assert_eq!(script.status, 200, "{src}");
            let content_type = script.header("content-type");
            assert!(
                content_type.starts_with("text/javascript")
                    || content_type.starts_with("application/javascript"),
                "{src}: {content_type}"
            );
            assert_eq!(script.header("x-content-type-options"), "nosniff", "{src}");
        }
        for inline in [
            " onload=",
            " onclick=",
            " onsubmit=",
            " onerror=",
            "javascript:",
        ] {
            assert!(
                !html.contains(inline),
                "{page} has inline script `{inline}`"
            );
        }

        // The form posts JSON (through the script) to an endpoint that accepts its fields:
        // with a made-up token it must be refused for the token, not for its shape.
        let endpoint = attribute(&html, "data-endpoint").unwrap_or_else(|| panic!("{page}"));
        let password_field = attribute(&html, "data-password-field");
        let mut body = json!({ "token": "not-a-real-token" });
        for name in input_names(&html) {
            let field = if name == "password" {
                password_field.clone().unwrap_or(name)
            } else {
                name
            };
            body[field] = json!("a-plausible-value-123");
        }
        m.post(&endpoint, body.clone(), None).await.refused(
            400,
            "invalid_token",
            &format!("{page} -> {endpoint} {body}"),
        );
    }
}

/// The `src` of every `<script>` in `html`; panics on one without `src` or with content.
fn script_sources(html: &str, page: &str) -> Vec<String> {
    let mut sources = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let tag_end = rest[start..].find('>').expect("closed tag") + start;
        let tag = &rest[start..=tag_end];
        let src =
            attribute(tag, "src").unwrap_or_else(|| panic!("{page} has an inline script: {tag}"));
        let close = rest[tag_end..].find("</script>").expect("closed script") + tag_end;
        assert!(
            rest[tag_end + 1..close].trim().is_empty(),
            "{page}: a script with src also has content"
        );
        sources.push(src);
        rest = &rest[close..];
    }
    sources
}

/// The value of the first `name="..."` attribute in `html`.
fn attribute(html: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// The `name` of every `<input>` in `html`.
fn input_names(html: &str) -> Vec<String> {
    html.split("<input")
        .skip(1)
        .filter_map(|rest| attribute(&rest[..rest.find('>').unwrap_or(rest.len())], "name"))
        .collect()
}
