//! The PostgreSQL test: after DNS, egress and TCP, the TLS request and handshake are done
//! here over that same socket (so TLS and authentication are reported apart), then
//! tokio-postgres authenticates over the stream and runs `SELECT 1`.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;

use super::network::{self, Target};
use super::{Failure, Passed, Recorder};
use crate::datasource::postgres::PostgresSource;
use crate::datasource::tls::{DbTls, find_rustls_error, tls_hint};
use crate::spec::NetworkDatabaseSpec;

const STEPS: &[&str] = &["dns", "egress", "tcp", "tls", "authentication", "select_1"];

/// The `SSLRequest` message: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

pub(super) async fn probe(
    source: &PostgresSource,
    name: &str,
    spec: &NetworkDatabaseSpec,
) -> super::ProbeReport {
    let manager = source.manager();
    let mut recorder = Recorder::new(name, "postgres", STEPS);
    let target = Target {
        host: &manager.host,
        port: manager.port,
        policy: &manager.policy,
        egress_allow: &spec.egress_allow,
        bind: &manager.bind,
        connect_timeout: manager.connect_timeout,
    };
    let Some((_, stream)) = network::reach(&mut recorder, &target).await else {
        return recorder.finish();
    };
    let mut config = manager.config.clone();
    // TLS, when on, is done here: tokio-postgres speaks plain PostgreSQL over the stream.
    config.ssl_mode(SslMode::Disable);
    let timeout = manager.connect_timeout;
    let tls = &manager.db_tls;
    let client = match &tls.config {
        None => {
            recorder.skip("tls", network::tls_off(spec));
            recorder
                .step(
                    "authentication",
                    authenticate(&config, stream, spec, timeout),
                )
                .await
        }
        Some(client_config) => {
            let Some(secured) = recorder
                .step(
                    "tls",
                    start_tls(stream, client_config.clone(), &manager.host, tls, timeout),
                )
                .await
            else {
                return recorder.finish();
            };
            recorder
                .step(
                    "authentication",
                    authenticate(&config, secured, spec, timeout),
                )
                .await
        }
    };
    let Some((client, connection)) = client else {
        return recorder.finish();
    };
    recorder
        .step("select_1", async {
            match tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await {
                Err(_) => Err(Failure::new(
                    format!("no answer within {} ms", timeout.as_millis()),
                    "the server accepted the connection but does not answer: check its load",
                )),
                Ok(Err(error)) => Err(query_failure(&error, spec)),
                Ok(Ok(_)) => Ok(Passed::new((), "SELECT 1 answered")),
            }
        })
        .await;
    drop(client);
    connection.abort();
    recorder.finish()
}

/// Asks for TLS and does the handshake.
async fn start_tls(
    mut stream: TcpStream,
    config: Arc<ClientConfig>,
    host: &str,
    tls: &DbTls,
    timeout: Duration,
) -> Result<Passed<tokio_rustls::client::TlsStream<TcpStream>>, Failure> {
    let Some(server_name) = DbTls::server_name(host) else {
        return Err(Failure::new(
            format!("`{host}` is not a name a certificate can hold"),
            "fix `host`",
        ));
    };
    let exchange = async {
        stream.write_all(&SSL_REQUEST).await?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await?;
        Ok::<u8, std::io::Error>(answer[0])
    };
    let answer = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Err(Failure::new(
                format!(
                    "no answer to the TLS request within {} ms",
                    timeout.as_millis()
                ),
                "something listens on this port but does not answer as PostgreSQL does",
            ));
        }
        Ok(Err(_)) => {
            return Err(Failure::new(
                "the connection closed at the TLS request",
                "something listens on this port but does not answer as PostgreSQL does",
            ));
        }
        Ok(Ok(answer)) => answer,
    };
    match answer {
        b'S' => {}
        b'N' => {
            return Err(Failure::new(
                "the server declined TLS",
                "the server has TLS off: turn on `ssl` in postgresql.conf, or set `tls: \
                 disable` if the network to it is trusted",
            ));
        }
        _ => {
            return Err(Failure::new(
                "the answer to the TLS request is not PostgreSQL's",
                "check the port: this does not look like a PostgreSQL server",
            ));
        }
    }
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(timeout, connector.connect(server_name, stream)).await {
        Err(_) => Err(Failure::new(
            format!(
                "the TLS handshake took longer than {} ms",
                timeout.as_millis()
            ),
            "the server does not finish the TLS handshake: check its TLS settings",
        )),
        Ok(Err(error)) => Err(match find_rustls_error(&error) {
            Some(tls_error) => {
                Failure::new(format!("TLS: {tls_error}"), tls_hint(tls_error, host, true))
            }
            None => Failure::new(
                "the connection closed during the TLS handshake",
                "the server ended the handshake: check its TLS settings and logs",
            ),
        }),
        Ok(Ok(secured)) => {
            let (detail, hint) = network::tls_detail(
                secured.get_ref().1.protocol_version(),
                tls.mode,
                tls.ca_pem.is_some(),
            );
            let passed = Passed::new(secured, detail);
            Ok(match hint {
                Some(hint) => passed.with_hint(hint),
                None => passed,
            })
        }
    }
}

type Connected = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// The PostgreSQL start-up and authentication over `stream`.
async fn authenticate<S>(
    config: &tokio_postgres::Config,
    stream: S,
    spec: &NetworkDatabaseSpec,
    timeout: Duration,
) -> Result<Passed<Connected>, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connect = config.connect_raw(stream, tokio_postgres::NoTls);
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => Err(Failure::new(
            format!("no answer within {} ms", timeout.as_millis()),
            "the server did not finish start-up: check its load and logs",
        )),
        Ok(Err(error)) => Err(connect_failure(&error, spec)),
        Ok(Ok((client, connection))) => {
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(Passed::new(
                (client, task),
                format!(
                    "signed in as `{}` to database `{}`",
                    spec.user, spec.database
                ),
            ))
        }
    }
}

fn connect_failure(error: &tokio_postgres::Error, spec: &NetworkDatabaseSpec) -> Failure {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return Failure::new(format!("SQLSTATE {code}"), sqlstate_hint(code, spec));
    }
    if let Some(tls_error) = find_rustls_error(error) {
        return Failure::new(
            format!("TLS: {tls_error}"),
            tls_hint(tls_error, &spec.host, true),
        );
    }
    if spec.password.is_none() && error.to_string().contains("password missing") {
        return Failure::new(
            "the server asks for a password",
            "the datasource has no `password`: seal one with `sluice secret seal` and set it",
        );
    }
    Failure::new(
        "the server closed the connection during start-up",
        "check the server's logs: it ended the session before signing in",
    )
}

fn query_failure(error: &tokio_postgres::Error, spec: &NetworkDatabaseSpec) -> Failure {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            Failure::new(format!("SQLSTATE {code}"), sqlstate_hint(code, spec))
        }
        None => Failure::new(
            "the connection closed",
            "the server ended the session: check its logs",
        ),
    }
}

/// What to change for a SQLSTATE met while signing in or running `SELECT 1`.
pub(crate) fn sqlstate_hint(code: &str, spec: &NetworkDatabaseSpec) -> String {
    match code {
        "28P01" => format!(
            "the role or password is wrong: check `user` (`{}`) and the sealed `password`",
            spec.user
        ),
        "28000" => format!(
            "the role or password is wrong, or pg_hba.conf has no line that lets `{}` in from \
             this address to this database with this TLS setting (a `clientcert` line needs \
             `tls_client_cert_file` and `tls_client_key`)",
            spec.user
        ),
        "3D000" => format!(
            "the database `{}` does not exist: check `database`",
            spec.database
        ),
        "42501" => format!(
            "permission denied: `{}` may not connect to `{}` (GRANT CONNECT ON DATABASE) or \
             lacks a privilege",
            spec.user, spec.database
        ),
        "53300" => "the server has no connection slots left (max_connections)".into(),
        "57P03" => "the server is starting up or shutting down; try again".into(),
        "08P01" => "the server saw a protocol error: is this a PostgreSQL server?".into(),
        _ => {
            let meaning = crate::datasource::postgres::sqlstate_meaning(code);
            if meaning.is_empty() {
                format!("the server refused with SQLSTATE {code}")
            } else {
                format!("the server refused with SQLSTATE {code}: {meaning}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_codes_get_a_hint_that_names_the_setting() {
        let spec: NetworkDatabaseSpec =
            serde_norway::from_str("{host: db, database: shop, user: reader}").unwrap();
        for (code, words) in [
            ("28P01", "role or password is wrong"),
            ("28000", "role or password is wrong"),
            ("3D000", "database `shop` does not exist"),
            ("42501", "permission denied"),
            ("42P01", "does not exist"),
        ] {
            let hint = sqlstate_hint(code, &spec);
            assert!(hint.contains(words), "{code}: {hint}");
        }
    }
}
