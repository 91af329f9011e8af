//! Throw-away database servers with TLS on, for the database TLS and datasource test
//! suites: certificates made here with rcgen ([`Pki`]: a CA, a server certificate for
//! 127.0.0.1, client certificates), and a PostgreSQL cluster ([`TlsCluster`]) or a MariaDB
//! server ([`TlsMariaDb`]) made in a temporary directory, on a free port of its own, started
//! here and stopped when the value is dropped (also when a test fails).
//!
//! The server binaries are required (PostgreSQL 15 in `/usr/lib/postgresql/15/bin`,
//! `mariadb-install-db` and `mariadbd`): without them these fail, they do not skip. Run as
//! root, the PostgreSQL cluster belongs to the `postgres` user (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PW_PASSWORD: &str = "tls-cluster-pw-5d2a";

/// The test certificates, written to files in a directory.
pub struct Pki {
    /// The CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the servers trust.
    pub other_ca_file: PathBuf,
    /// The server's certificate, for 127.0.0.1 only (`localhost` is a wrong name for it).
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    /// A client certificate (common name `mtls_user`) and its key (PEM).
    pub client_cert_file: PathBuf,
    pub client_key_pem: String,
    /// A client certificate for `mtls_user` signed by the other CA, and its key.
    pub rogue_cert_file: PathBuf,
    pub rogue_key_pem: String,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (params, key, pem)
}

fn leaf(
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, &KeyPair>,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Makes the certificates and writes them into `dir`.
    pub fn make(dir: &Path) -> Pki {
        let (ca_params, ca_key, ca_pem) = ca("Sluice test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let (server_pem, server_key) = leaf(
            &["127.0.0.1"],
            "sluice test server",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client_pem, client_key) = leaf(
            &[],
            "mtls_user",
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );
        let (other_params, other_key, other_pem) = ca("Some other CA");
        let other_issuer = Issuer::from_params(&other_params, &other_key);
        let (rogue_pem, rogue_key) = leaf(
            &[],
            "mtls_user",
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_issuer,
        );
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write a test file");
            path
        };
        let server_key_file = write("server.key", &server_key);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&server_key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the server key");
        Pki {
            ca_file: write("root.crt", &ca_pem),
            other_ca_file: write("other-ca.crt", &other_pem),
            server_cert_file: write("server.crt", &server_pem),
            server_key_file,
            client_cert_file: write("client.crt", &client_pem),
            client_key_pem: client_key,
            rogue_cert_file: write("rogue.crt", &rogue_pem),
            rogue_key_pem: rogue_key,
        }
    }
}

/// A PostgreSQL cluster with TLS on. Who may sign in (`pg_hba.conf`, TLS only: there is no
/// `host` line, so plain TCP is refused with SQLSTATE 28000):
///
/// | user | how |
/// | --- | --- |
/// | `mtls_user` | trust, with a client certificate the CA signed (`clientcert=verify-full`) |
/// | `pw_user` | password [`PW_PASSWORD`] (scram-sha-256) |
/// | everyone else (`postgres`) | trust |
///
/// Database `tls_test` exists.
pub struct TlsCluster {
    pub port: u16,
    pub pki: Pki,
    data: PathBuf,
    owner: Option<String>,
    // Last: removed after the cluster has stopped.
    dir: tempfile::TempDir,
}

impl TlsCluster {
    /// Makes the certificates and the cluster, and starts it. Blocks for a few seconds.
    pub fn start() -> TlsCluster {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "the PostgreSQL 15 server binaries must be installed in {PG_BIN} (Debian package \
             postgresql-15): the TLS tests run a throw-away cluster"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let pki = Pki::make(&root);
        // initdb refuses to run as root: the cluster then belongs to `postgres`.
        let owner = is_root().then(|| "postgres".to_string());
        if let Some(owner) = &owner {
            let status = Command::new("chown")
                .args(["-R", &format!("{owner}:"), &root.display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster directory to {owner}");
        }
        let data = root.join("data");
        let port = super::served::free_port();
        let cluster = TlsCluster {
            port,
            pki,
            data: data.clone(),
            owner,
            dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n\
             ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\nssl_ca_file = '{ca}'\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 30\n",
            root = root.display(),
            cert = cluster.pki.server_cert_file.display(),
            key = cluster.pki.server_key_file.display(),
            ca = cluster.pki.ca_file.display(),
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all mtls_user 127.0.0.1/32 trust clientcert=verify-full\n\
             hostssl all pw_user 127.0.0.1/32 scram-sha-256\n\
             hostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &root.join("server.log").display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster.run(
            "psql",
            &[
                "-h",
                &root.display().to_string(),
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!(
                    "CREATE ROLE mtls_user LOGIN; CREATE ROLE pw_user LOGIN PASSWORD \
                     '{PW_PASSWORD}'"
                ),
                "-c",
                "CREATE DATABASE tls_test",
            ],
        );
        cluster
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs a PostgreSQL binary as the cluster's owner; panics with its output on failure.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str) -> Command {
        let binary = Path::new(PG_BIN).join(program);
        match &self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        }
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// A MariaDB server with TLS on (its own data directory, socket and port). Users:
///
/// | user | how |
/// | --- | --- |
/// | `root` | no password, any transport (the server does not require TLS) |
/// | `tls_user` | password [`PW_PASSWORD`], over TLS only (`REQUIRE SSL`) |
/// | `x509_user` | no password, with a client certificate the CA signed (`REQUIRE X509`) |
///
/// Database `tls_test` exists.
pub struct TlsMariaDb {
    pub port: u16,
    pub pki: Pki,
    server: Child,
    // Last: removed after the server has stopped.
    dir: tempfile::TempDir,
}

impl TlsMariaDb {
    /// Makes the certificates, the data directory and the server, and starts it. Blocks for
    /// a few seconds.
    pub fn start() -> TlsMariaDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let pki = Pki::make(&root);
        let data = root.join("data");
        let socket = root.join("mysqld.sock");
        let output = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                &format!("--datadir={}", data.display()),
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!("mariadb-install-db must be installed (Debian package mariadb-server): {e}")
            });
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let port = super::served::free_port();
        let server = Command::new("mariadbd")
            .args([
                "--no-defaults".to_string(),
                format!("--datadir={}", data.display()),
                "--user=root".to_string(),
                format!("--port={port}"),
                "--bind-address=127.0.0.1".to_string(),
                format!("--socket={}", socket.display()),
                format!("--pid-file={}", root.join("mysqld.pid").display()),
                format!("--log-error={}", root.join("error.log").display()),
                format!("--ssl-ca={}", pki.ca_file.display()),
                format!("--ssl-cert={}", pki.server_cert_file.display()),
                format!("--ssl-key={}", pki.server_key_file.display()),
                "--innodb-buffer-pool-size=16M".to_string(),
                "--skip-log-bin".to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("mariadbd must be installed: {e}"));
        let mut mariadb = TlsMariaDb {
            port,
            pki,
            server,
            dir,
        };
        let started = Instant::now();
        loop {
            let ready = Command::new("mariadb-admin")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", socket.display()))
                .arg("ping")
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = mariadb.server.try_wait() {
                panic!("mariadbd exited ({status}):\n{}", mariadb.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mariadbd did not start within 60 s:\n{}",
                mariadb.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let setup = format!(
            "CREATE DATABASE tls_test; \
             CREATE USER 'tls_user'@'%' IDENTIFIED BY '{PW_PASSWORD}' REQUIRE SSL; \
             CREATE USER 'x509_user'@'%' REQUIRE X509; \
             GRANT ALL ON tls_test.* TO 'tls_user'@'%'; \
             GRANT ALL ON tls_test.* TO 'x509_user'@'%';"
        );
        let output = Command::new("mariadb")
            .args(["--no-defaults", "-uroot"])
            .arg(format!("--socket={}", socket.display()))
            .args(["-e", &setup])
            .output()
            .expect("run mariadb");
        assert!(
            output.status.success(),
            "setting up the MariaDB users failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        mariadb
    }

    /// The server's error log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for TlsMariaDb {
    fn drop(&mut self) {
        // Only the server this value started.
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}
