//! A real SMTP server for tests: `scripts/smtp-sink.py` (aiosmtpd) started per test on
//! 127.0.0.1, writing each message it receives, decoded, as JSON into a temporary directory
//! that the test reads back.
//!
//! aiosmtpd is required (`scripts/test` installs it): a test that cannot start the sink
//! fails with a message saying how to install it. Nothing is skipped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const HINT: &str =
    "aiosmtpd is required: python3 -m pip install aiosmtpd (scripts/test installs it)";

/// How long the sink may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How often [`SmtpSink::wait_for`] looks for new mail.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// One message as the sink received and decoded it.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedMail {
    /// The envelope recipients (`RCPT TO`), bare addresses.
    pub to: Vec<String>,
    /// The envelope sender (`MAIL FROM`), a bare address.
    #[serde(rename = "mail_from")]
    pub envelope_from: String,
    /// The `From` header, decoded (`Name <addr>` or `addr`).
    pub from: String,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The `text/plain` body, transfer decoding undone, line ends back to LF and trailing
    /// line ends dropped (SMTP framing adds one or two whatever the text ended with).
    pub text: String,
    /// How the body travelled: `7bit`, `8bit`, `quoted-printable` or `base64`.
    pub transfer_encoding: String,
}

/// A running sink. The Python process is killed when this is dropped, and the directory of
/// received messages removed.
pub struct SmtpSink {
    pub port: u16,
    dir: TempDir,
    /// Holds the process; its stdin stays open for as long as this lives (the sink exits on
    /// EOF, so it also goes away if the test process dies without dropping this).
    _child: Child,
    /// Messages already handed out by [`SmtpSink::wait_for`], by file name.
    returned: Mutex<HashSet<String>>,
}

impl SmtpSink {
    /// Starts a sink on a free port of 127.0.0.1 (chosen by the operating system and reported
    /// by the script, so there is no window in which another test can take it) and waits
    /// until it accepts connections.
    pub async fn start() -> SmtpSink {
        let dir = tempfile::tempdir().expect("create a directory for received mail");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/smtp-sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}. {HINT}", script.display()));

        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("the SMTP sink did not start within {START_TIMEOUT:?}"))
            .expect("read the SMTP sink's port");
        if read == 0 {
            let status = child.wait().await.expect("wait for the SMTP sink");
            panic!("the SMTP sink exited at start ({status}). {HINT}");
        }
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the SMTP sink: {line:?}"));

        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the SMTP sink does not accept connections on 127.0.0.1:{port}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        SmtpSink {
            port,
            dir,
            _child: child,
            returned: Mutex::new(HashSet::new()),
        }
    }

    /// The URL to give `Mailer::new`: plain SMTP, no TLS, no credentials.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits for the next message to `to` that this has not returned yet (so two calls
    /// return two messages, in the order received). Panics after `timeout` with the
    /// recipients of everything received so far.
    pub async fn wait_for(&self, to: &str, timeout: Duration) -> ReceivedMail {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received().await;
            {
                let mut returned = self.returned.lock().unwrap();
                for (name, mail) in &received {
                    if addressed_to(mail, to) && !returned.contains(name) {
                        returned.insert(name.clone());
                        return mail.clone();
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<&Vec<String>> = received.iter().map(|(_, m)| &m.to).collect();
                panic!("no new mail to {to} within {timeout:?}; received so far, for: {seen:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// How many messages to `to` have arrived so far (returned by `wait_for` or not).
    pub async fn count_for(&self, to: &str) -> usize {
        self.received()
            .await
            .iter()
            .filter(|(_, mail)| addressed_to(mail, to))
            .count()
    }

    /// Every message received so far, in the order received, with its file name.
    async fn received(&self) -> Vec<(String, ReceivedMail)> {
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(self.dir.path())
            .await
            .expect("read the SMTP sink's directory");
        while let Some(entry) = entries.next_entry().await.expect("list received mail") {
            let name = entry.file_name().to_string_lossy().into_owned();
            // The sink writes `.<name>.tmp` and renames it: only whole files end in `.json`.
            if name.ends_with(".json") && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        let mut mails = Vec::with_capacity(names.len());
        for name in names {
            let bytes = tokio::fs::read(self.dir.path().join(&name))
                .await
                .expect("read a received mail");
            let mail: ReceivedMail =
                serde_json::from_slice(&bytes).expect("the SMTP sink writes valid JSON");
            mails.push((name, mail));
        }
        mails
    }
}

fn addressed_to(mail: &ReceivedMail, to: &str) -> bool {
    mail.to.iter().any(|r| r.eq_ignore_ascii_case(to))
}

/// The first URL in `text` that starts with `prefix`, up to the next whitespace or angle
/// bracket or quote, without sentence punctuation that follows it.
pub fn link_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\''))
        .unwrap_or(rest.len());
    let link = rest[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
    Some(link.to_owned())
}
