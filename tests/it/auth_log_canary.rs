//! Security invariant 2 (docs/SECURITY.md) for the mailed account flows: no one-time token, link,
//! session id, password or address from a request appears in any log line at any level.
//!
//! `sluice serve` runs as a subprocess at `SLUICE_LOG_LEVEL=trace` (text, then JSON), its
//! stdout and stderr captured to files, with mail going to a real SMTP server (aiosmtpd). A
//! password reset, a signup and an email change run through, including refused second uses
//! of each link. The tokens are read from the mail the sink received, so they did pass
//! through the process; after `SIGTERM` the captured log must hold the request and mail
//! lines (logging was on) and none of the tokens, cookies, passwords or addresses.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::served::{Served, sluice_with_test_key};
use common::smtp::{SmtpSink, link_in};
use common::test_secrets;
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://sluice.example.com";
const COOKIE: &str = "__Host-sluice_session";
const WAIT: Duration = Duration::from_secs(10);

/// A value unique to this run, alphanumeric so any log format shows it verbatim.
fn canary(label: &str) -> String {
    format!("{label}{:016x}", rand::random::<u64>())
}

/// POSTs JSON with an optional cookie; returns status, the session cookie set (if any, as
/// `name=value`) and the body.
async fn post(
    server: &Served,
    path: &str,
    body: Value,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut request = server
        .client
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(cookie) = cookie {
        // Cookie-authenticated writes must name their origin (the CSRF check).
        request = request
            .header("cookie", cookie)
            .header("origin", PUBLIC_URL);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")) && !v.starts_with(&format!("{COOKIE}=;")))
        .map(|v| v.split(';').next().unwrap().to_owned());
    (status, cookie, response.text().await.expect("body"))
}

async fn get_status(server: &Served, path: &str, cookie: &str) -> u16 {
    server
        .client
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The `sluice` binary for the test instance, with mail to `sink` and signup on for
/// example.com.
fn sluice(dir: &Path, sink: &SmtpSink, args: &[&str]) -> Command {
    let mut command = sluice_with_test_key(dir, args);
    command
        .env("SLUICE_SMTP_URL", sink.url())
        .env("SLUICE_MAIL_FROM", "Sluice <sluice@example.com>")
        .env("SLUICE_PUBLIC_URL", PUBLIC_URL)
        .env("SLUICE_SIGNUP_ENABLED", "true")
        .env("SLUICE_SIGNUP_ALLOWED_DOMAINS", "example.com")
        .env("SLUICE_AUTH_RATE_PER_MINUTE", "10000");
    command
}

/// The token of the `{PUBLIC_URL}/auth/{page}#token=` link in the next mail to `to`.
async fn mailed_token(sink: &SmtpSink, to: &str, page: &str) -> (String, String) {
    let mail = sink.wait_for(to, WAIT).await;
    let prefix = format!("{PUBLIC_URL}/auth/{page}#token=");
    let link = link_in(&mail.text, &prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in:\n{}", mail.text));
    let token = link[prefix.len()..].to_owned();
    assert!(token.len() >= 32, "{link}");
    (link, token)
}

async fn mailed_flows_stay_out_of_the_log(format: &str) {
    let sink = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();

    let user = format!("{}@example.com", canary("user"));
    let unknown = format!("{}@example.com", canary("unknown"));
    let newcomer = format!("{}@example.com", canary("signup"));
    let new_address = format!("{}@example.com", canary("newaddr"));
    let password = canary("Password-");
    let wrong_password = canary("Wrong-");
    let reset_password = canary("Reset-");
    // Too short for the policy (12), still unique to this run.
    let weak_password = canary("w")[..10].to_owned();
    let signup_password = canary("Signup-");
    let display_name = canary("Name");
    // Values the log must never show, by label.
    let mut forbidden: Vec<(String, String)> = vec![
        ("user email".into(), user.clone()),
        ("unknown email".into(), unknown.clone()),
        ("signup email".into(), newcomer.clone()),
        ("new email".into(), new_address.clone()),
        ("password".into(), password.clone()),
        ("wrong password".into(), wrong_password.clone()),
        ("reset password".into(), reset_password.clone()),
        ("weak password".into(), weak_password.clone()),
        ("signup password".into(), signup_password.clone()),
        ("display name".into(), display_name.clone()),
    ];

    common::served::init_store(dir.path());
    let mut add = sluice(
        dir.path(),
        &sink,
        &["user", "add", &user, "--role", "viewer"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run sluice user add");
    writeln!(add.stdin.take().unwrap(), "{password}").unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(
        added.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&added.stderr)
    );

    let mut server = Served::start(
        sluice(dir.path(), &sink, &["serve"])
            .env("SLUICE_LOG_LEVEL", "trace")
            .env("SLUICE_LOG_FORMAT", format),
    )
    .await;

    // Sign in (once wrongly) and keep the session.
    let (status, _, body) = post(
        &server,
        "/v1/auth/login",
        json!({"email": user, "password": wrong_password}),
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, cookie, body) = post(
        &server,
        "/v1/auth/login",
        json!({"email": user, "password": password}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = cookie.expect("session cookie");
    forbidden.push(("first session".into(), session.clone()));

    // Password reset: an unknown address, then the user; a weak password, the reset, a
    // second use.
    for email in [&unknown, &user] {
        let (status, _, body) = post(
            &server,
            "/v1/auth/password-reset",
            json!({"email": email}),
            None,
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    let (link, token) = mailed_token(&sink, &user, "reset").await;
    forbidden.push(("reset link".into(), link));
    forbidden.push(("reset token".into(), token.clone()));
    let complete = |new_password: &str| json!({"token": token, "new_password": new_password});
    let (status, _, body) = post(
        &server,
        "/v1/auth/password-reset/complete",
        complete(&weak_password),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = post(
        &server,
        "/v1/auth/password-reset/complete",
        complete(&reset_password),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = post(
        &server,
        "/v1/auth/password-reset/complete",
        complete(&reset_password),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(get_status(&server, "/v1/auth/me", &session).await, 401);

    // Signup, and a second use of its link.
    let (status, _, body) =
        post(&server, "/v1/auth/signup", json!({"email": newcomer}), None).await;
    assert_eq!(status, 202, "{body}");
    let (link, token) = mailed_token(&sink, &newcomer, "signup").await;
    forbidden.push(("signup link".into(), link));
    forbidden.push(("signup token".into(), token.clone()));
    let signup = json!({"token": token, "password": signup_password, "display_name": display_name});
    let (status, cookie, body) =
        post(&server, "/v1/auth/signup/complete", signup.clone(), None).await;
    assert_eq!(status, 201, "{body}");
    forbidden.push(("signup session".into(), cookie.expect("signup session")));
    let (status, _, body) = post(&server, "/v1/auth/signup/complete", signup, None).await;
    assert_eq!(status, 400, "{body}");

    // Email change from a fresh sign-in, and a second use of its link.
    let (status, cookie, body) = post(
        &server,
        "/v1/auth/login",
        json!({"email": user, "password": reset_password}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let session = cookie.expect("session cookie");
    forbidden.push(("third session".into(), session.clone()));
    let (status, _, body) = post(
        &server,
        "/v1/auth/email",
        json!({"new_email": new_address}),
        Some(&session),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (link, token) = mailed_token(&sink, &new_address, "email").await;
    forbidden.push(("email link".into(), link));
    forbidden.push(("email token".into(), token.clone()));
    for expected in [200, 400] {
        let (status, _, body) = post(
            &server,
            "/v1/auth/email/confirm",
            json!({"token": token}),
            None,
        )
        .await;
        assert_eq!(status, expected, "{body}");
    }

    // The mail jobs log after the relay accepted; wait for all three before stopping.
    server.wait_log("Mail sent", 3, WAIT).await;
    let status = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.output());
    let output = server.output();

    // Logging was on and verbose.
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    if format == "json" {
        for line in &lines {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
            assert!(event.is_object(), "{line}");
        }
    }
    for needle in [
        "Request answered",
        "Request refused",
        "invalid_token",
        "Mail sent",
        "DEBUG",
    ] {
        assert!(
            output.contains(needle),
            "no `{needle}` in the {format} log:\n{output}"
        );
    }

    // And none of the values.
    let (instance_password, salt) = test_secrets();
    forbidden.push(("instance password".into(), instance_password.clone()));
    forbidden.push(("instance salt".into(), salt.clone()));
    for (label, value) in &forbidden {
        // A cookie is `name=value`: look for the value alone.
        let value = value.strip_prefix(&format!("{COOKIE}=")).unwrap_or(value);
        assert!(
            !output.contains(value),
            "the {format} log contains the {label}:\n{output}"
        );
    }
    // Tokens are base64url: also look for them with `-`/`_` escaped or cut at a `#`.
    for (label, value) in forbidden.iter().filter(|(l, _)| l.ends_with("token")) {
        let head = &value[..24];
        assert!(
            !output.contains(head),
            "the {format} log contains part of the {label}"
        );
    }
}

#[tokio::test]
async fn mailed_flows_stay_out_of_the_text_log() {
    mailed_flows_stay_out_of_the_log("text").await;
}

#[tokio::test]
async fn mailed_flows_stay_out_of_the_json_log() {
    mailed_flows_stay_out_of_the_log("json").await;
}
