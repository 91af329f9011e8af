//! HTTPS certificates from ACME against a real ACME server: Debian's `pebble`, started here
//! on free ports with certificates that live 30 s. A gateway with `SLUICE_ACME_DOMAINS=localhost`
//! gets a certificate through TLS-ALPN-01 answered by its own listener (pebble's validation
//! port is the gateway's port) and serves it, chained to pebble's root; a gateway restarted
//! on the same data directory serves the kept certificate at once, without an order, and
//! renews it while serving when a third of its life is left; a renewal whose challenge cannot
//! be reached (the gateway on another port) fails, is logged at error with the CA's reason,
//! is counted, and the current certificate keeps being served.
//!
//! `pebble` is required (`apt-get install pebble`; scripts/test installs it): without it this
//! fails, it does not skip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::common;
use common::served::free_port;
use common::tls_servers::Pki;
use common::*;

const PEBBLE: &str = "/usr/bin/pebble";
const VALIDITY_SECS: u64 = 30;
const METRICS_TOKEN: &str = "acme-test-metrics-token-0123456789abcdef";

const CATALOG: &str = r#"
datasources:
  local:
    kind: sqlite
    path: ":memory:"
apps:
  open:
    visibility: public
    grants: { anonymous: true }
    queries:
      one:
        datasource: local
        sql: SELECT 1 AS one
"#;

/// A pebble process, killed when dropped.
struct Pebble {
    child: Child,
    log: std::path::PathBuf,
    directory: String,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what pebble saw (orders, validations and their errors).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- pebble's log ---\n{log}");
        }
    }
}

impl Pebble {
    /// Starts pebble with its HTTPS certificate from `pki`, validating TLS-ALPN-01 on
    /// `validation_port`, and waits until its directory answers.
    async fn start(dir: &Path, pki: &Pki, validation_port: u16) -> Pebble {
        assert!(
            Path::new(PEBBLE).exists(),
            "{PEBBLE} is missing: install Debian's pebble (apt-get install pebble); the ACME \
             tests run against it"
        );
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": pki.server_cert_file,
                "privateKey": pki.server_key_file,
                "httpPort": free_port(),
                "tlsPort": validation_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": VALIDITY_SECS,
            }
        });
        let config_file = dir.join("pebble.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_file)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start pebble");
        let pebble = Pebble {
            child,
            log: dir.join("pebble.log"),
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
        };
        let client = ca_client(pki);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(answer) = client.get(&pebble.directory).send().await
                && answer.status().is_success()
            {
                return pebble;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not start: see {}",
                dir.join("pebble.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// pebble's root (a new one each run): what the issued chains lead to.
    async fn root(&self, pki: &Pki) -> CertificateDer<'static> {
        let pem = ca_client(pki)
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("pebble root")
    }
}

/// The gateways' log lines, kept for assertions and printed (shown with a failure).
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        print!("{}", String::from_utf8_lossy(bytes));
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client trusting only the test CA, which signed pebble's own HTTPS certificate.
fn ca_client(pki: &Pki) -> reqwest::Client {
    let pem = std::fs::read(&pki.ca_file).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

/// The leaf certificate `port` serves for `localhost`, verified against `root` only; `None`
/// when the handshake fails (no certificate yet, or one that does not chain to `root`).
async fn served_leaf(port: u16, root: &CertificateDer<'static>) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

/// Waits up to `secs` for `check` to give a value.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `sluice_acme_orders_total{result=...}` as the gateway on `port` reports it over HTTPS.
async fn orders(port: u16, root: &CertificateDer<'static>, result: &str) -> u64 {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_der(root).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let text = client
        .get(format!("https://localhost:{port}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("sluice_acme_orders_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse::<f64>().unwrap() as u64)
}

async fn gateway(port: u16, data: &Path, pki: &Pki, pebble: &Pebble) -> TestGateway {
    let listen = format!("127.0.0.1:{port}");
    let data = data.display().to_string();
    let ca = pki.ca_file.display().to_string();
    TestGateway::start_with(
        CATALOG,
        &[
            ("SLUICE_LISTEN", &listen),
            ("SLUICE_DATA_DIR", &data),
            ("SLUICE_ACME_DOMAINS", "localhost"),
            ("SLUICE_ACME_CONTACT", "mailto:ops@example.com"),
            ("SLUICE_ACME_DIRECTORY", &pebble.directory),
            ("SLUICE_ACME_CA_FILE", &ca),
            // pebble runs on loopback, which the egress guard refuses unless allowed.
            ("SLUICE_EGRESS_ALLOW", "127.0.0.1/32"),
            ("SLUICE_METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await
}

#[tokio::test]
async fn certificates_are_issued_kept_renewed_and_a_failed_renewal_keeps_the_current_one() {
    // The gateways' log is kept (and shown with a failure). The runtime has this one
    // thread, so the gateways' tasks log through this test's subscriber only.
    let log = Log::default();
    let writer = log.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::make(dir.path());
    let port = free_port();
    let pebble = Pebble::start(dir.path(), &pki, port).await;
    let root = pebble.root(&pki).await;
    let data = dir.path().join("data");

    // Issuance: the listener answers the challenge, then serves the certificate, which
    // chains to pebble's root (the handshake verifies it against that root only).
    let first = gateway(port, &data, &pki, &pebble).await;
    let issued = wait_for(60, "the first certificate", || served_leaf(port, &root)).await;
    assert_eq!(orders(port, &root, "issued").await, 1);
    let files = data.join("acme");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files), 0o700);
    assert_eq!(mode(&files.join("certificate.pem")), 0o600);
    assert_eq!(mode(&files.join("account.json")), 0o600);
    first.stop().await;

    // A restart serves the kept certificate at once, without an order...
    let second = gateway(port, &data, &pki, &pebble).await;
    assert_eq!(served_leaf(port, &root).await.as_deref(), Some(&issued[..]));
    assert_eq!(orders(port, &root, "issued").await, 0);
    // ...and renews it while serving, when a third of its 30 s is left.
    let renewed = wait_for(60, "the renewed certificate", || async {
        served_leaf(port, &root)
            .await
            .filter(|leaf| *leaf != issued)
    })
    .await;
    assert_eq!(orders(port, &root, "issued").await, 1);
    second.stop().await;

    // On another port the CA's challenge reaches nothing: the renewal fails, is counted, and
    // the current certificate is still served.
    // Never the validation port itself: the kernel may hand out the port the second
    // gateway just closed, and the challenge would then reach this one.
    let elsewhere = std::iter::repeat_with(free_port)
        .find(|p| *p != port)
        .unwrap();
    let third = gateway(elsewhere, &data, &pki, &pebble).await;
    assert_eq!(
        served_leaf(elsewhere, &root).await.as_deref(),
        Some(&renewed[..])
    );
    wait_for(60, "a failed renewal", || async {
        (orders(elsewhere, &root, "failed").await > 0).then_some(())
    })
    .await;
    assert_eq!(orders(elsewhere, &root, "issued").await, 0);
    let text = log.text();
    let failed = text
        .lines()
        .find(|line| line.contains("ACME renewal failed; still serving the current certificate"))
        .unwrap_or_else(|| panic!("no failed renewal in the log:\n{text}"));
    // The CA's own reason is in it: its validation found nothing on the challenge port.
    assert!(
        failed.contains("ERROR") && failed.contains("retry_secs"),
        "{failed}"
    );
    assert!(
        failed.contains("Failed to connect") && failed.contains("tls-alpn-01"),
        "{failed}"
    );
    assert_eq!(
        served_leaf(elsewhere, &root).await.as_deref(),
        Some(&renewed[..])
    );
    third.stop().await;
}
