//! Database TLS against a real PostgreSQL and a real MariaDB with TLS on (throw-away
//! servers, [`common::tls_servers`]): each mode, the CA file, the host name check, mutual
//! TLS, and accounts that refuse plain connections. Each case builds the pools exactly as a
//! served catalog does (`Pools::build`) and runs `SELECT 1` through them; a failure is told
//! by its class (`tls` for the handshake, `auth` for the server's refusal of the account).
//! Also: a CA file that cannot be read or holds no certificate is refused with its location
//! when the catalog is checked and when pools are built.

use std::sync::Arc;
use std::time::Duration;

use sluice::datasource::{ExecOptions, Pools};
use sluice::spec::yaml;
use sluice::statement::RenderedSql;

use crate::common::tls_servers::{PW_PASSWORD, TlsCluster, TlsMariaDb};
use crate::common::*;

/// One PostgreSQL datasource on the cluster, with `extra` YAML lines (already indented).
fn datasource(name: &str, host: &str, port: u16, user: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    host: {host}\n    port: {port}\n    database: tls_test\n    user: {user}\n    pool_size: 1\n    connect_timeout_ms: 5000\n    egress_allow: [127.0.0.1/32]\n{extra}"
    )
}

fn pools(datasources: &str) -> Pools {
    let spec = yaml::parse(&format!("datasources:\n{datasources}apps: {{}}\n"))
        .unwrap_or_else(|e| panic!("test catalog: {e}"));
    Pools::build(&spec, test_keyring(), &Default::default())
        .unwrap_or_else(|e| panic!("pools: {e}"))
}

/// `SELECT 1` on `name`: Ok, or the failure's class.
async fn select_one(pools: &Pools, name: &str) -> Result<(), &'static str> {
    let statement = RenderedSql {
        sql: Arc::from("SELECT 1"),
        args: Vec::new(),
        types: Arc::from(Vec::new()),
    };
    let options = ExecOptions {
        timeout: Duration::from_secs(10),
        max_rows: 10,
        row_security: None,
        frame_bytes: sluice::datasource::FRAME_BYTES,
    };
    let mut execution = pools
        .get(name)
        .expect("a pool")
        .execute(statement, options)
        .await
        .map_err(|e| e.class())?;
    while execution.next_frame().await.is_some() {}
    Ok(())
}

#[tokio::test]
async fn tls_modes_ca_files_and_client_certificates_against_a_tls_server() {
    let cluster = tokio::task::spawn_blocking(TlsCluster::start)
        .await
        .expect("start the cluster");
    let port = cluster.port;
    let ca = format!("    tls_ca_file: {}\n", cluster.pki.ca_file.display());
    let client = |cert: &std::path::Path, key: &str, name: &str| {
        format!(
            "    tls_client_cert_file: {}\n    tls_client_key: {}\n",
            cert.display(),
            seal(name, "tls_client_key", key)
        )
    };
    let catalog = [
        datasource(
            "full_ca",
            "127.0.0.1",
            port,
            "postgres",
            &format!("    tls: verify-full\n{ca}"),
        ),
        datasource(
            "full_bundled",
            "127.0.0.1",
            port,
            "postgres",
            "    tls: verify-full\n",
        ),
        datasource(
            "full_wrong_name",
            "localhost",
            port,
            "postgres",
            &format!("    tls: verify-full\n{ca}"),
        ),
        datasource(
            "ca_wrong_name",
            "localhost",
            port,
            "postgres",
            &format!("    tls: verify-ca\n{ca}"),
        ),
        datasource(
            "ca_other_ca",
            "127.0.0.1",
            port,
            "postgres",
            &format!(
                "    tls: verify-ca\n    tls_ca_file: {}\n",
                cluster.pki.other_ca_file.display()
            ),
        ),
        datasource(
            "require",
            "127.0.0.1",
            port,
            "postgres",
            "    tls: require\n",
        ),
        datasource(
            "mtls",
            "127.0.0.1",
            port,
            "mtls_user",
            &format!(
                "    tls: verify-full\n{ca}{}",
                client(
                    &cluster.pki.client_cert_file,
                    &cluster.pki.client_key_pem,
                    "mtls"
                )
            ),
        ),
        datasource(
            "mtls_no_cert",
            "127.0.0.1",
            port,
            "mtls_user",
            &format!("    tls: verify-full\n{ca}"),
        ),
        datasource(
            "mtls_rogue_cert",
            "127.0.0.1",
            port,
            "mtls_user",
            &format!(
                "    tls: verify-full\n{ca}{}",
                client(
                    &cluster.pki.rogue_cert_file,
                    &cluster.pki.rogue_key_pem,
                    "mtls_rogue_cert"
                )
            ),
        ),
        datasource("plain", "127.0.0.1", port, "postgres", "    tls: disable\n"),
    ]
    .concat();
    let pools = pools(&catalog);
    let expected: &[(&str, Result<(), &str>)] = &[
        // The CA file makes the server's certificate trusted.
        ("full_ca", Ok(())),
        // The bundled web PKI roots do not know the test CA.
        ("full_bundled", Err("tls")),
        // The certificate names 127.0.0.1, not localhost.
        ("full_wrong_name", Err("tls")),
        // verify-ca checks the CA but not the name...
        ("ca_wrong_name", Ok(())),
        // ...and still refuses a server its CA did not sign.
        ("ca_other_ca", Err("tls")),
        // require encrypts without checking the (self-made) certificate.
        ("require", Ok(())),
        // clientcert=verify-full: the client certificate signed by the server's CA passes...
        ("mtls", Ok(())),
        // ...no certificate is refused by pg_hba.conf (SQLSTATE 28000)...
        ("mtls_no_cert", Err("auth")),
        // ...and a certificate from another CA fails the handshake (or start-up).
        ("mtls_rogue_cert", Err("refused")),
        // The server has only hostssl lines: plain TCP is refused (SQLSTATE 28000).
        ("plain", Err("auth")),
    ];
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let got = select_one(&pools, name).await;
        let fits = match (want, got) {
            (Err("refused"), Err(_)) => true,
            (want, got) => *want == got,
        };
        if !fits {
            wrong.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{wrong:#?}\nserver log:\n{}",
        cluster.log()
    );
    pools.close_all();
}

/// One MySQL datasource on the TLS server, with `extra` YAML lines (already indented).
fn mysql(name: &str, host: &str, port: u16, user: &str, password: bool, extra: &str) -> String {
    let password = if password {
        format!("    password: {}\n", seal(name, "password", PW_PASSWORD))
    } else {
        String::new()
    };
    format!(
        "  {name}:\n    kind: mysql\n    host: {host}\n    port: {port}\n    database: tls_test\n    user: {user}\n{password}    pool_size: 1\n    connect_timeout_ms: 5000\n    egress_allow: [127.0.0.1/32]\n{extra}"
    )
}

#[tokio::test]
async fn mysql_tls_modes_ca_files_and_client_certificates_against_a_tls_server() {
    let server = tokio::task::spawn_blocking(TlsMariaDb::start)
        .await
        .expect("start MariaDB");
    let port = server.port;
    let ca = format!("    tls_ca_file: {}\n", server.pki.ca_file.display());
    let client = format!(
        "    tls_client_cert_file: {}\n    tls_client_key: {}\n",
        server.pki.client_cert_file.display(),
        seal("x509", "tls_client_key", &server.pki.client_key_pem)
    );
    let catalog = [
        mysql(
            "full_ca",
            "127.0.0.1",
            port,
            "root",
            false,
            &format!("    tls: verify-full\n{ca}"),
        ),
        mysql(
            "full_bundled",
            "127.0.0.1",
            port,
            "root",
            false,
            "    tls: verify-full\n",
        ),
        mysql(
            "full_wrong_name",
            "localhost",
            port,
            "root",
            false,
            &format!("    tls: verify-full\n{ca}"),
        ),
        mysql(
            "require",
            "127.0.0.1",
            port,
            "root",
            false,
            "    tls: require\n",
        ),
        mysql(
            "plain",
            "127.0.0.1",
            port,
            "root",
            false,
            "    tls: disable\n",
        ),
        mysql(
            "ssl_user_tls",
            "127.0.0.1",
            port,
            "tls_user",
            true,
            &format!("    tls: verify-full\n{ca}"),
        ),
        mysql(
            "ssl_user_plain",
            "127.0.0.1",
            port,
            "tls_user",
            true,
            "    tls: disable\n",
        ),
        mysql(
            "x509",
            "127.0.0.1",
            port,
            "x509_user",
            false,
            &format!("    tls: verify-full\n{ca}{client}"),
        ),
        mysql(
            "x509_no_cert",
            "127.0.0.1",
            port,
            "x509_user",
            false,
            &format!("    tls: verify-full\n{ca}"),
        ),
    ]
    .concat();
    let pools = pools(&catalog);
    let expected: &[(&str, Result<(), &str>)] = &[
        ("full_ca", Ok(())),
        ("full_bundled", Err("tls")),
        // The certificate names 127.0.0.1, not localhost.
        ("full_wrong_name", Err("tls")),
        ("require", Ok(())),
        // This server does not require TLS of root.
        ("plain", Ok(())),
        // `REQUIRE SSL`: over TLS the password signs in; in plain text it is refused (1045).
        ("ssl_user_tls", Ok(())),
        ("ssl_user_plain", Err("auth")),
        // `REQUIRE X509`: the client certificate signs in; without one, refused (1045).
        ("x509", Ok(())),
        ("x509_no_cert", Err("auth")),
    ];
    let mut wrong = Vec::new();
    for (name, want) in expected {
        let got = select_one(&pools, name).await;
        if *want != got {
            wrong.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    pools.close_all();
    assert!(
        wrong.is_empty(),
        "{wrong:#?}\nserver log:\n{}",
        server.log()
    );

    // Why `verify-ca` is refused for MySQL: the driver's own "skip the name check" option
    // still fails on a wrong name with the rustls in use (it looks for `NotValidForName` in
    // the error's text, which rustls no longer writes). When this connects, the driver is
    // fixed and `verify-ca` can be offered for MySQL too.
    let ssl = mysql_async::SslOpts::default()
        .with_root_certs(vec![server.pki.ca_file.clone().into()])
        .with_disable_built_in_roots(true)
        .with_danger_skip_domain_validation(true);
    let opts = |host: &str| {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(host)
            .tcp_port(port)
            .user(Some("root"))
            .prefer_socket(false)
            .ssl_opts(Some(ssl.clone()))
    };
    // The same options connect under the name the certificate lists...
    let conn = mysql_async::Conn::new(opts("127.0.0.1"))
        .await
        .expect("the control connection");
    conn.disconnect().await.unwrap();
    // ...and fail under another.
    assert!(
        mysql_async::Conn::new(opts("localhost")).await.is_err(),
        "mysql_async now skips only the name check: offer verify-ca for MySQL"
    );
}

#[tokio::test]
async fn unusable_tls_files_are_refused_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let catalog = format!(
        "datasources:\n{}{}apps: {{}}\n",
        datasource(
            "gone",
            "db.example.com",
            5432,
            "u",
            &format!("    tls_ca_file: {}\n", missing.display())
        ),
        datasource(
            "junk",
            "db.example.com",
            5432,
            "u",
            &format!("    tls_ca_file: {}\n", not_pem.display())
        ),
    );
    let spec = yaml::parse(&catalog).unwrap();
    // What `catalog check` and `catalog apply` report.
    let problems = sluice::snapshot::verify_tls(&spec, Some((test_keyring(), &Default::default())))
        .expect_err("unusable files")
        .to_string();
    assert!(
        problems.contains("datasources.gone.tls_ca_file") && problems.contains("missing-ca.pem"),
        "{problems}"
    );
    assert!(
        problems.contains("datasources.junk.tls_ca_file")
            && problems.contains("holds no PEM certificate"),
        "{problems}"
    );
    // What `serve` (and a reload) refuses with.
    let error = match Pools::build(&spec, test_keyring(), &Default::default()) {
        Ok(_) => panic!("pools built with a missing CA file"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("tls_ca_file"), "{error}");

    // A client certificate without its key, and TLS files with TLS off, are refused when the
    // catalog compiles.
    let no_key = format!(
        "datasources:\n{}{}apps: {{}}\n",
        datasource(
            "half",
            "db.example.com",
            5432,
            "u",
            &format!("    tls_client_cert_file: {}\n", not_pem.display())
        ),
        datasource(
            "off",
            "db.example.com",
            5432,
            "u",
            &format!("    tls: disable\n    tls_ca_file: {}\n", not_pem.display())
        ),
    );
    let spec = yaml::parse(&no_key).unwrap();
    let problems = sluice::catalog::compile::compile(&spec, Default::default())
        .expect_err("inconsistent TLS settings")
        .to_string();
    assert!(
        problems.contains("datasources.half.tls_client_key"),
        "{problems}"
    );
    assert!(
        problems.contains("datasources.off.tls_ca_file"),
        "{problems}"
    );
}
