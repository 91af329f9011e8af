//! Outgoing mail through a real SMTP server (aiosmtpd, see `tests/it/common/smtp.rs`): messages
//! arrive with subject, addresses and body intact whatever transfer encoding lettre picks,
//! and an unreachable relay is an error, not a panic or a hang.

use crate::common;

use std::time::{Duration, Instant};

use common::smtp::{SmtpSink, link_in};
use sluice::auth::mail::{Mail, MailError, Mailer};
use sluice::vault::SecretString;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn mail_arrives_intact() {
    let sink = SmtpSink::start().await;
    let mailer = Mailer::new(
        &SecretString::new(sink.url()),
        "Sluice <noreply@sluice.example>",
    )
    .unwrap();

    // Mostly non-Latin text: lettre sends it as base64.
    let welcome = Mail {
        to: "alice@example.com".to_owned(),
        subject: "Confirm your email".to_owned(),
        text: "Здравствуйте! Подтвердите адрес: https://app.example/confirm#token=Zx9_-q\n\
               ありがとうございます。"
            .to_owned(),
    };
    // A non-ASCII subject, and a line far longer than SMTP's 998-octet limit with a link in
    // it: lettre sends it as quoted-printable with soft line breaks inside the URL.
    let link = format!(
        "https://app.example/reset?u={}#token=abc_-123",
        "ü".repeat(3) + &"a".repeat(300)
    );
    let reset = Mail {
        to: "bob@example.com".to_owned(),
        subject: "Passwort zurücksetzen — Sluice ✓".to_owned(),
        text: format!(
            "Hallo Bob,\n\n{} Öffnen Sie {link}. {}\n\nGrüße",
            "Jemand hat ein neues Passwort angefordert.".repeat(10),
            "x".repeat(900)
        ),
    };

    let (a, b) = tokio::join!(mailer.send(&welcome), mailer.send(&reset));
    a.unwrap();
    b.unwrap();

    for (sent, expect_link) in [
        (
            &welcome,
            "https://app.example/confirm#token=Zx9_-q".to_owned(),
        ),
        (&reset, link.clone()),
    ] {
        let got = sink.wait_for(&sent.to, WAIT).await;
        assert_eq!(got.to, vec![sent.to.clone()]);
        assert_eq!(got.envelope_from, "noreply@sluice.example");
        assert_eq!(got.from, "Sluice <noreply@sluice.example>");
        assert_eq!(got.subject, sent.subject);
        assert_eq!(got.text, sent.text);
        assert_eq!(
            link_in(&got.text, "https://app.example/").as_deref(),
            Some(expect_link.as_str())
        );
        assert!(
            ["quoted-printable", "base64"].contains(&got.transfer_encoding.as_str()),
            "{} was sent as {}, so decoding was not exercised",
            sent.to,
            got.transfer_encoding
        );
    }
    assert_eq!(sink.count_for("alice@example.com").await, 1);
    assert_eq!(sink.count_for("BOB@example.com").await, 1);
    assert_eq!(sink.count_for("carol@example.com").await, 0);
}

#[tokio::test]
async fn unreachable_relay_is_an_error() {
    // A port that was free a moment ago and has no listener now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = Mailer::new(
        &SecretString::new(format!("smtp://mailuser:hunter2@127.0.0.1:{port}")),
        "noreply@sluice.example",
    )
    .unwrap();
    let mail = Mail {
        to: "alice@example.com".to_owned(),
        subject: "Reset".to_owned(),
        text: "https://app.example/reset#token=secret_token_value\n".to_owned(),
    };

    let started = Instant::now();
    let error = mailer.send(&mail).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(error, MailError::Connect { .. }), "{error:?}");

    let shown = format!("{} {error:?}", common::error_chain(&error));
    for secret in ["hunter2", "secret_token_value"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn link_in_finds_the_first_matching_url() {
    let text = "See https://other.example/x, then <https://app.example/a#token=t1>.\n\
                Or https://app.example/b#token=t2.";
    assert_eq!(
        link_in(text, "https://app.example/").as_deref(),
        Some("https://app.example/a#token=t1")
    );
    assert_eq!(
        link_in(
            "Open https://app.example/r#token=abc_-123.",
            "https://app.example/"
        )
        .as_deref(),
        Some("https://app.example/r#token=abc_-123")
    );
    assert_eq!(link_in("no link here", "https://app.example/"), None);
}

/// The relay connection is opened by the egress guard: a cloud metadata address is refused
/// before any packet is sent, whatever the URL says.
#[tokio::test]
async fn a_relay_on_a_metadata_address_is_refused_by_the_egress_guard() {
    for url in ["smtp://169.254.169.254:25", "smtp://[fd00:ec2::254]:25"] {
        let mailer =
            Mailer::new(&SecretString::new(url.to_owned()), "noreply@example.com").unwrap();
        let mail = Mail {
            to: "alice@example.com".to_owned(),
            subject: "Hi".to_owned(),
            text: "Body".to_owned(),
        };
        let started = Instant::now();
        let error = mailer.send(&mail).await.expect_err(url);
        assert!(
            matches!(error, MailError::Connect { .. }),
            "{url}: {error:?}"
        );
        let cause = std::error::Error::source(&error)
            .map(|c| c.to_string())
            .unwrap_or_default();
        assert!(cause.contains("metadata"), "{url}: {cause}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused without waiting"
        );
    }
}
