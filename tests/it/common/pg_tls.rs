//! A throw-away PostgreSQL cluster with TLS on, for the database TLS and datasource test
//! suites: a CA, a server certificate and client certificates made here with rcgen, a
//! cluster made with `initdb` in a temporary directory, on a free port of its own, started
//! with `pg_ctl` and stopped when the [`TlsCluster`] is dropped (also when a test fails).
//!
//! The PostgreSQL 15 binaries (`/usr/lib/postgresql/15/bin`) are required: without them
//! this fails, it does not skip. Run as root, the cluster belongs to the `postgres` user
//! (initdb refuses root).
//!
//! Who may sign in (`pg_hba.conf`, TLS only: there is no `host` line, so plain TCP is
//! refused with SQLSTATE 28000):
//!
//! | user | how |
//! | --- | --- |
//! | `mtls_user` | trust, with a client certificate the CA signed (`clientcert=verify-full`) |
//! | `pw_user` | password [`PW_PASSWORD`] (scram-sha-256) |
//! | everyone else (`postgres`) | trust |

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
pub const PW_PASSWORD: &str = "tls-cluster-pw-5d2a";

/// The cluster, its certificates and where they are.
pub struct TlsCluster {
    pub port: u16,
    /// The CA that signed the server and client certificates.
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the server trusts.
    pub other_ca_file: PathBuf,
    /// A client certificate for `mtls_user` and its key (PEM).
    pub client_cert_file: PathBuf,
    pub client_key_pem: String,
    /// A client certificate for `mtls_user` signed by the other CA, and its key.
    pub rogue_cert_file: PathBuf,
    pub rogue_key_pem: String,
    data: PathBuf,
    owner: Option<String>,
    // Last: removed after the cluster has stopped.
    dir: tempfile::TempDir,
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
        let root = root.as_path();
        let (ca_params, ca_key, ca_pem) = ca("Sluice test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        // The server certificate names 127.0.0.1 only: `localhost` is a wrong name for it.
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
            let path = root.join(name);
            std::fs::write(&path, text).expect("write a test file");
            path
        };
        let ca_file = write("root.crt", &ca_pem);
        let other_ca_file = write("other-ca.crt", &other_pem);
        let server_cert = write("server.crt", &server_pem);
        let server_key_file = write("server.key", &server_key);
        let client_cert_file = write("client.crt", &client_pem);
        let rogue_cert_file = write("rogue.crt", &rogue_pem);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&server_key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the server key");

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
        let port = free_port();
        let cluster = TlsCluster {
            port,
            ca_file,
            other_ca_file,
            client_cert_file,
            client_key_pem: client_key,
            rogue_cert_file,
            rogue_key_pem: rogue_key,
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
            cert = server_cert.display(),
            key = server_key_file.display(),
            ca = cluster.ca_file.display(),
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
        let binary = Path::new(PG_BIN).join(program);
        let mut command = match &self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let output = command
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
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let binary = Path::new(PG_BIN).join("pg_ctl");
        let data = self.data.display().to_string();
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let mut command = match &self.owner {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let _ = command.args(args).output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    file.write_all(text.as_bytes()).expect("append");
}
