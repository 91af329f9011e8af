//! The MySQL/MariaDB test: DNS, egress and TCP as for every networked datasource, then one
//! mysql_async connection to the checked addresses (through the egress relay when a source
//! address is configured, as the pool does). The driver negotiates TLS inside the MySQL
//! handshake, so TLS and authentication are one exchange here: its failure is put on the
//! step it belongs to (a TLS error, or the server's refusal of the account), and both are
//! timed together.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use super::network::{self, Target};
use super::{Failure, Passed, Recorder};
use crate::datasource::mysql::{MySqlSource, mysql_meaning, start_relay};
use crate::datasource::tls::{find_rustls_error, tls_hint};
use crate::spec::{NetworkDatabaseSpec, TlsMode};

const STEPS: &[&str] = &["dns", "egress", "tcp", "tls", "authentication", "select_1"];

pub(super) async fn probe(
    source: &MySqlSource,
    name: &str,
    spec: &NetworkDatabaseSpec,
) -> super::ProbeReport {
    let mut recorder = Recorder::new(name, "mysql", STEPS);
    let target = Target {
        host: &source.host,
        port: source.port,
        policy: &source.policy,
        egress_allow: &spec.egress_allow,
        bind: &source.bind,
        connect_timeout: source.connect_timeout,
    };
    let Some((checked, stream)) = network::reach(&mut recorder, &target).await else {
        return recorder.finish();
    };
    // The driver opens its own connection; this one only showed the port answers.
    drop(stream);
    let opts = source.opts.clone().ip_or_hostname(source.host.clone());
    let mut relay = None;
    let opts = if source.bind.is_empty() {
        opts.tcp_port(source.port)
            .resolved_ips(Some(checked.iter().map(SocketAddr::ip).collect::<Vec<_>>()))
    } else {
        match start_relay(checked, source.bind.clone(), source.connect_timeout).await {
            Ok((port, task)) => {
                relay = Some(task);
                opts.tcp_port(port)
                    .resolved_ips(Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
            }
            Err(_) => {
                recorder.record::<()>(
                    "authentication",
                    Duration::ZERO,
                    Err(Failure::new(
                        "cannot start the loopback relay that binds the source address",
                        "check that this machine allows listening on 127.0.0.1",
                    )),
                );
                return recorder.finish();
            }
        }
    };
    let timeout = source.connect_timeout;
    let started = Instant::now();
    let connected = tokio::time::timeout(timeout, Conn::new(Opts::from(opts))).await;
    let mode = source.tls_mode;
    let tls_on = mode != TlsMode::Disable;
    let tls_passed = || {
        let (detail, hint) = network::tls_detail(None, mode, spec.tls_ca_file.is_some());
        let passed = Passed::new((), format!("{detail} (negotiated in the MySQL handshake)"));
        match hint {
            Some(hint) => passed.with_hint(hint),
            None => passed,
        }
    };
    let mut conn = match connected {
        Err(_) => {
            if !tls_on {
                recorder.skip("tls", network::tls_off(spec));
            }
            recorder.record::<()>(
                "authentication",
                started.elapsed(),
                Err(Failure::new(
                    format!("no answer within {} ms", timeout.as_millis()),
                    "the server did not finish the MySQL handshake: check its load and logs",
                )),
            );
            None
        }
        Ok(Err(error)) => {
            match tls_failure(&error, &source.host) {
                Some(failure) => {
                    recorder.record::<()>("tls", started.elapsed(), Err(failure));
                }
                None => {
                    if tls_on {
                        recorder.record("tls", started.elapsed(), Ok(tls_passed()));
                    } else {
                        recorder.skip("tls", network::tls_off(spec));
                    }
                    recorder.record::<()>(
                        "authentication",
                        started.elapsed(),
                        Err(failure(&error, spec)),
                    );
                }
            }
            None
        }
        Ok(Ok(conn)) => {
            if tls_on {
                recorder.record("tls", started.elapsed(), Ok(tls_passed()));
            } else {
                recorder.skip("tls", network::tls_off(spec));
            }
            recorder.record(
                "authentication",
                started.elapsed(),
                Ok(Passed::new(
                    (),
                    format!(
                        "signed in as `{}` to database `{}`",
                        spec.user, spec.database
                    ),
                )),
            );
            Some(conn)
        }
    };
    if let Some(conn) = conn.as_mut() {
        recorder
            .step("select_1", async {
                match tokio::time::timeout(timeout, conn.query_first::<i64, _>("SELECT 1")).await {
                    Err(_) => Err(Failure::new(
                        format!("no answer within {} ms", timeout.as_millis()),
                        "the server accepted the connection but does not answer: check its load",
                    )),
                    Ok(Err(error)) => Err(failure(&error, spec)),
                    Ok(Ok(_)) => Ok(Passed::new((), "SELECT 1 answered")),
                }
            })
            .await;
    }
    if let Some(conn) = conn {
        let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
    }
    if let Some(relay) = relay {
        relay.abort();
    }
    recorder.finish()
}

/// The TLS failure in `error`, if that is what it is.
fn tls_failure(error: &mysql_async::Error, host: &str) -> Option<Failure> {
    if let mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) = error {
        return Some(Failure::new(
            "the server does not offer TLS",
            "the server has TLS off: give it a certificate (`ssl_cert`, `ssl_key`), or set \
             `tls: disable` if the network to it is trusted",
        ));
    }
    let tls_error = find_rustls_error(error)?;
    Some(Failure::new(
        format!("TLS: {tls_error}"),
        tls_hint(tls_error, host, false),
    ))
}

fn failure(error: &mysql_async::Error, spec: &NetworkDatabaseSpec) -> Failure {
    match error {
        mysql_async::Error::Server(server) => Failure::new(
            format!("MySQL error {} (SQLSTATE {})", server.code, server.state),
            mysql_hint(server.code, spec),
        ),
        mysql_async::Error::Io(_) => Failure::new(
            "the connection closed",
            "the server ended the session: check its logs (and `tls`)",
        ),
        _ => Failure::new(
            "the MySQL handshake failed",
            "check that this port is a MySQL or MariaDB server, and the server's logs",
        ),
    }
}

/// What to change for a MySQL/MariaDB error number met while signing in or running
/// `SELECT 1`.
pub(crate) fn mysql_hint(code: u16, spec: &NetworkDatabaseSpec) -> String {
    match code {
        1045 => format!(
            "the user or password is wrong: check `user` (`{}`) and the sealed `password` (or \
             the user may not sign in from the gateway's address)",
            spec.user
        ),
        1044 => format!(
            "permission denied: `{}` may not use the database `{}` (GRANT it access)",
            spec.user, spec.database
        ),
        1049 => format!(
            "the database `{}` does not exist: check `database`",
            spec.database
        ),
        1130 => "the server does not let this user in from the gateway's address: create the \
                 user for this host"
            .into(),
        1040 => "the server has no connection slots left (max_connections)".into(),
        1142 | 1143 | 1227 => format!(
            "permission denied: `{}` lacks a privilege (GRANT it what the queries need)",
            spec.user
        ),
        3159 => {
            "the server requires TLS for this user (REQUIRE SSL): set `tls: verify-full`".into()
        }
        _ => {
            let meaning = mysql_meaning(code);
            if meaning.is_empty() {
                format!("the server refused with error {code}")
            } else {
                format!("the server refused with error {code}: {meaning}")
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
            (1045, "user or password is wrong"),
            (1044, "may not use the database `shop`"),
            (1049, "database `shop` does not exist"),
            (1146, "does not exist"),
        ] {
            let hint = mysql_hint(code, &spec);
            assert!(hint.contains(words), "{code}: {hint}");
        }
    }
}
