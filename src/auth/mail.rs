//! Outgoing mail over SMTP: password reset, signup and email-change messages, sent with
//! lettre's async Tokio transport to the relay named by an SMTP URL.
//!
//! Invariants:
//! - Mail is sent off the request path: the caller (the auth service) spawns [`Mailer::send`]
//!   so that a slow or unreachable relay never delays or fails an HTTP response, and never
//!   reveals through timing whether an address has an account.
//! - Nothing here logs. A body or a link must never be logged by the caller either: links
//!   carry one-time tokens.
//! - [`MailError`] messages name the failing step only: never the SMTP password, the body,
//!   the subject or an address. `Debug` of [`Mailer`] shows only the sender address.
//! - A send is bounded in time ([`SEND_TIMEOUT`]) on top of lettre's connect timeout, so a
//!   relay that accepts the connection and then stalls cannot hold a task forever.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::vault::SecretString;

/// How long opening the TCP connection to the relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one whole send (connect, TLS, authentication, the message, `QUIT`) may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure to configure the mailer, build a message or hand it to the relay.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP URL does not parse or names an unsupported scheme or `tls` parameter.
    #[error(
        "invalid SMTP URL (expected smtp://[user:pass@]host[:port], with ?tls=required for \
         STARTTLS, or smtps:// for implicit TLS)"
    )]
    Url {
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The sender (`from`) or recipient (`to`) is not a valid mailbox.
    #[error("invalid {field} address")]
    Address {
        field: &'static str,
        #[source]
        source: lettre::address::AddressError,
    },
    /// The message could not be assembled.
    #[error("cannot build the mail message")]
    Build {
        #[source]
        source: lettre::error::Error,
    },
    /// The relay could not be reached, refused the credentials or refused the message.
    #[error("sending mail over SMTP failed")]
    Send {
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The relay did not finish the exchange in time.
    #[error("sending mail over SMTP timed out after {after:?}")]
    Timeout { after: Duration },
}

/// One plain-text UTF-8 message to one recipient.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Sends [`Mail`] through one SMTP relay. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    /// The configured transport, TLS parameters and credentials included. A transport is
    /// built from it for each send rather than once here: lettre's pooled transport spawns a
    /// task when it is built and another when it is dropped, which would make creating or
    /// dropping a `Mailer` outside a Tokio runtime panic. Mail is rare (resets, signups), so
    /// one connection per message costs nothing that matters and leaves no idle connection
    /// open to the relay.
    transport: AsyncSmtpTransportBuilder,
}

impl Mailer {
    /// Configures a mailer for the relay at `smtp_url` (the forms of lettre's
    /// `AsyncSmtpTransport::from_url`: `smtp://host:port` in the clear for a local relay,
    /// `smtp://host?tls=required` for STARTTLS, `smtps://host` for implicit TLS, with
    /// optional `user:pass@` credentials) sending as `from` (`addr@example.com` or
    /// `Name <addr@example.com>`). Opens no connection.
    pub fn new(smtp_url: &SecretString, from: &str) -> Result<Mailer, MailError> {
        let from = Mailbox::from_str(from).map_err(|source| MailError::Address {
            field: "from",
            source,
        })?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url.expose())
            .map_err(|source| MailError::Url { source })?
            .timeout(Some(CONNECT_TIMEOUT));
        Ok(Mailer { from, transport })
    }

    /// Sends `mail` and waits for the relay to accept it. Returns an error, never panics,
    /// when the relay is unreachable, refuses or stalls (at most [`SEND_TIMEOUT`]).
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.message(mail)?;
        let transport: AsyncSmtpTransport<Tokio1Executor> = self.transport.clone().build();
        match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(source)) => Err(MailError::Send { source }),
            Err(_elapsed) => Err(MailError::Timeout {
                after: SEND_TIMEOUT,
            }),
        }
    }

    /// Assembles the message: `From`, `To`, `Subject` (RFC 2047-encoded when not ASCII),
    /// `Date`, and a `text/plain; charset=utf-8` body whose transfer encoding lettre picks
    /// (7bit, quoted-printable or base64) so long lines and non-ASCII text survive.
    fn message(&self, mail: &Mail) -> Result<Message, MailError> {
        let to = Mailbox::from_str(&mail.to).map_err(|source| MailError::Address {
            field: "to",
            source,
        })?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .singlepart(SinglePart::plain(mail.text.clone()))
            .map_err(|source| MailError::Build { source })
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the URL's credentials: show the sender only.
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(value: &str) -> SecretString {
        SecretString::new(value.to_owned())
    }

    fn mail(to: &str, subject: &str, text: &str) -> Mail {
        Mail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
        }
    }

    /// The full text of an error and its causes, as a log line would show it.
    fn chain(error: &MailError) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn accepted_url_forms() {
        for value in [
            "smtp://127.0.0.1:2525",
            "smtp://relay.example.com",
            "smtp://relay.example.com:587?tls=required",
            "smtp://relay.example.com?tls=opportunistic",
            "smtps://relay.example.com",
            "smtps://user%40example.com:p%40ss@relay.example.com:465",
            "smtp://user:pass@relay.example.com:587?tls=required",
        ] {
            let result = Mailer::new(&url(value), "Sluice <noreply@example.com>");
            assert!(result.is_ok(), "{value}: {result:?}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for value in [
            "",
            "relay.example.com:25",
            "http://relay.example.com",
            "smtp://user:hunter2@relay.example.com?tls=bogus",
            "smtps://user:hunter2@",
            "smtp://user:hunter2@relay.example.com:99999",
            "smtp://user:%FF%FEhunter2@relay.example.com",
        ] {
            let error = Mailer::new(&url(value), "noreply@example.com")
                .expect_err(&format!("{value:?} should be refused"));
            assert!(matches!(error, MailError::Url { .. }), "{value}: {error:?}");
            for shown in [chain(&error), format!("{error:?}")] {
                assert!(!shown.contains("hunter2"), "{value}: {shown}");
            }
        }
    }

    #[test]
    fn bad_addresses_are_refused() {
        let relay = url("smtp://127.0.0.1:2525");
        for from in ["", "noreply", "noreply@", "@example.com", "Sluice <noreply"] {
            let error = Mailer::new(&relay, from).expect_err(from);
            assert!(
                matches!(error, MailError::Address { field: "from", .. }),
                "{from:?}: {error:?}"
            );
        }

        let mailer = Mailer::new(&relay, "noreply@example.com").unwrap();
        for to in [
            "",
            "alice",
            "alice@",
            "a b@example.com",
            "alice@example.com\r\nBcc: x@y.z",
        ] {
            let error = mailer.message(&mail(to, "Hi", "Body")).expect_err(to);
            assert!(
                matches!(error, MailError::Address { field: "to", .. }),
                "{to:?}: {error:?}"
            );
            assert!(!chain(&error).contains("alice"), "{to:?}");
        }
    }

    #[test]
    fn debug_shows_only_the_sender() {
        let mailer = Mailer::new(
            &url("smtp://mailuser:hunter2@relay.example.com:587?tls=required"),
            "Sluice <noreply@example.com>",
        )
        .unwrap();
        let shown = format!("{mailer:?}");
        assert!(shown.contains("noreply@example.com"), "{shown}");
        for secret in ["hunter2", "mailuser", "relay.example.com"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn subject_cannot_inject_headers() {
        let mailer = Mailer::new(&url("smtp://127.0.0.1:2525"), "noreply@example.com").unwrap();
        let message = mailer
            .message(&mail(
                "alice@example.com",
                "Reset\r\nBcc: mallory@example.com",
                "Body",
            ))
            .unwrap();
        let formatted = String::from_utf8(message.formatted()).unwrap();
        assert!(!formatted.contains("\r\nBcc:"), "{formatted}");
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 1);
        assert_eq!(envelope.to()[0].to_string(), "alice@example.com");
    }

    #[test]
    fn non_ascii_and_long_lines_are_encoded() {
        let mailer = Mailer::new(&url("smtp://127.0.0.1:2525"), "noreply@example.com").unwrap();
        let long = format!(
            "Grüße: https://app.example.com/reset#token={}",
            "x".repeat(200)
        );
        let message = mailer
            .message(&mail("alice@example.com", "Passwort zurücksetzen", &long))
            .unwrap();
        let formatted = String::from_utf8(message.formatted()).unwrap();
        assert!(formatted.is_ascii(), "{formatted}");
        assert!(
            formatted.lines().all(|line| line.len() <= 78),
            "{formatted}"
        );
        assert!(formatted.contains("Content-Type: text/plain; charset=utf-8"));
    }
}
