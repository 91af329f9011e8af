//! Outgoing mail over SMTP: password reset, signup and email-change messages, sent to the
//! relay named by an SMTP URL.
//!
//! The connection to the relay is opened by the egress guard, like every outbound
//! connection: the relay's name is resolved once, the addresses are checked (cloud metadata
//! addresses are refused; loopback and private relays are allowed, because the URL is set
//! by the instance admin, not by an app builder), and the socket leaves from
//! `SLUICE_EGRESS_BIND` when it is set. lettre then speaks SMTP over that socket:
//! `STARTTLS` (`?tls=required`, or `?tls=opportunistic` when offered), or TLS from the first
//! byte for `smtps://` (rustls, web PKI roots), then authentication and the message.
//!
//! Invariants:
//! - Mail is sent off the request path: the caller (the auth service) spawns [`Mailer::send`]
//!   so that a slow or unreachable relay never delays or fails an HTTP response, and never
//!   reveals through timing whether an address has an account.
//! - Nothing here logs. A body or a link must never be logged by the caller either: links
//!   carry one-time tokens.
//! - [`MailError`] messages name the failing step only: never the SMTP password, the body,
//!   the subject or a mail address. `Debug` of [`Mailer`] shows only the sender address.
//! - A send is bounded in time ([`SEND_TIMEOUT`]) on top of the connect timeout, so a relay
//!   that accepts the connection and then stalls cannot hold a task forever.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ipnet::IpNet;
use lettre::Message;
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::egress::{self, EgressError, EgressPolicy};
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
        "invalid SMTP URL: {reason} (expected smtp://[user:pass@]host[:port], with \
         ?tls=required for STARTTLS, or smtps:// for implicit TLS)"
    )]
    Url { reason: &'static str },
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
    /// The egress guard refused the relay's address, or the connection failed.
    #[error("connecting to the SMTP relay failed")]
    Connect {
        #[source]
        source: EgressError,
    },
    /// TLS to the relay could not be set up.
    #[error("TLS to the SMTP relay failed")]
    Tls {
        #[source]
        source: io::Error,
    },
    /// The relay refused the credentials or the message, or the exchange broke.
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

/// When the relay connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelayTls {
    /// Plain SMTP (a relay on this host or a trusted network).
    Off,
    /// `STARTTLS` when the relay offers it.
    Opportunistic,
    /// `STARTTLS`, or no mail.
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// Where and how to reach the relay. Holds the SMTP password: never printed.
#[derive(Clone)]
struct Relay {
    host: String,
    port: u16,
    tls: RelayTls,
    credentials: Option<Credentials>,
}

/// Sends [`Mail`] through one SMTP relay. Cheap to clone. Opens one connection per message
/// (mail is rare: resets, signups) and keeps none open.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    relay: Relay,
    /// Source addresses for the connection (`SLUICE_EGRESS_BIND`).
    bind: Vec<IpAddr>,
}

impl Mailer {
    /// Configures a mailer for the relay at `smtp_url` (`smtp://host:port` in the clear for
    /// a local relay, `smtp://host?tls=required` for STARTTLS, `?tls=opportunistic`,
    /// `smtps://host` for implicit TLS, with optional `user:pass@` credentials, percent-
    /// encoded) sending as `from` (`addr@example.com` or `Name <addr@example.com>`). Opens
    /// no connection.
    pub fn new(smtp_url: &SecretString, from: &str) -> Result<Mailer, MailError> {
        let from = Mailbox::from_str(from).map_err(|source| MailError::Address {
            field: "from",
            source,
        })?;
        Ok(Mailer {
            from,
            relay: parse_relay(smtp_url.expose())?,
            bind: Vec::new(),
        })
    }

    /// Connections leave from these addresses (one per family), as datasources' do.
    pub fn with_source_addresses(mut self, bind: Vec<IpAddr>) -> Mailer {
        self.bind = bind;
        self
    }

    /// Sends `mail` and waits for the relay to accept it. Returns an error, never panics,
    /// when the relay is refused, unreachable, refuses or stalls (at most [`SEND_TIMEOUT`]).
    pub async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = self.message(mail)?;
        match tokio::time::timeout(SEND_TIMEOUT, self.deliver(&message)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(MailError::Timeout {
                after: SEND_TIMEOUT,
            }),
        }
    }

    async fn deliver(&self, message: &Message) -> Result<(), MailError> {
        let send_error = |source| MailError::Send { source };
        let relay = &self.relay;
        let stream = self.connect().await?;
        let hello = ClientId::default();
        let mut connection = AsyncSmtpConnection::connect_with_transport(stream, &hello)
            .await
            .map_err(send_error)?;
        let starttls = match relay.tls {
            RelayTls::Required => true,
            RelayTls::Opportunistic => connection.can_starttls(),
            RelayTls::Off | RelayTls::Implicit => false,
        };
        if starttls {
            let parameters = TlsParameters::new(relay.host.clone()).map_err(send_error)?;
            connection
                .starttls(parameters, &hello)
                .await
                .map_err(send_error)?;
        }
        if let Some(credentials) = &relay.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(send_error)?;
        }
        connection
            .send(message.envelope(), &message.formatted())
            .await
            .map_err(send_error)?;
        // The message is accepted; a relay that drops the line at QUIT changes nothing.
        let _ = connection.quit().await;
        Ok(())
    }

    /// Opens the connection through the egress guard, with TLS for `smtps://`.
    async fn connect(&self) -> Result<Box<dyn AsyncTokioStream>, MailError> {
        let relay = &self.relay;
        let connect_error = |source| MailError::Connect { source };
        let addresses = egress::resolve_checked(&relay.host, relay.port, &relay_policy())
            .await
            .map_err(connect_error)?;
        let tcp = egress::connect_checked(&addresses, &self.bind, CONNECT_TIMEOUT)
            .await
            .map_err(connect_error)?;
        if relay.tls != RelayTls::Implicit {
            return Ok(Box::new(tcp));
        }
        let tls_error = |source| MailError::Tls { source };
        let name = rustls_pki_types::ServerName::try_from(relay.host.clone())
            .map_err(|e| tls_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector.connect(name, tcp).await.map_err(tls_error)?;
        Ok(Box::new(ImplicitTls(stream)))
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

/// The relay is the instance admin's choice, so any network may be reached (a relay on
/// this host or the office network is common); cloud metadata addresses stay refused, as
/// the egress guard refuses them to every catch-all.
fn relay_policy() -> EgressPolicy {
    let everywhere = [
        IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("a /0 is valid"),
        IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("a /0 is valid"),
    ];
    EgressPolicy::new(&everywhere, &[])
}

/// Reads an SMTP URL. Errors never quote the URL (it may hold the password).
fn parse_relay(text: &str) -> Result<Relay, MailError> {
    let refuse = |reason| MailError::Url { reason };
    let url = url::Url::parse(text).map_err(|_| refuse("not a URL"))?;
    let (default_port, mut tls) = match url.scheme() {
        "smtp" => (25, RelayTls::Off),
        "smtps" => (465, RelayTls::Implicit),
        _ => return Err(refuse("the scheme must be smtp or smtps")),
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(refuse("no relay host")),
    };
    for (name, value) in url.query_pairs() {
        match (name.as_ref(), value.as_ref(), url.scheme()) {
            ("tls", "required", "smtp") => tls = RelayTls::Required,
            ("tls", "opportunistic", "smtp") => tls = RelayTls::Opportunistic,
            ("tls", "none", "smtp") => tls = RelayTls::Off,
            ("tls", _, _) => return Err(refuse("tls must be required, opportunistic or none")),
            _ => return Err(refuse("unknown query parameter")),
        }
    }
    let decode = |part: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| refuse("the user or password is not UTF-8 once decoded"))
    };
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (user, password) => Some(Credentials::new(
            decode(user)?,
            decode(password.unwrap_or(""))?,
        )),
    };
    Ok(Relay {
        host,
        port: url.port().unwrap_or(default_port),
        tls,
        credentials,
    })
}

/// A TLS stream to the relay in the shape lettre takes for an existing connection.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The relay holds the URL's credentials: show the sender only.
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
