//! The steps every networked datasource starts with: DNS (through the egress guard's
//! resolver), the egress decision (with the exact `egress_allow` line that would open a
//! refused address), and a TCP connection from the configured source address; and the hints
//! for database codes and TLS failures the drivers share.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{Failure, Passed, Recorder};
use crate::egress::{self, Blocked, EgressError, EgressPolicy};

/// Where to connect and how, as the datasource was built.
pub(crate) struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub policy: &'a EgressPolicy,
    /// The datasource's own `egress_allow`, as written (for the line to add).
    pub egress_allow: &'a [String],
    pub bind: &'a [IpAddr],
    pub connect_timeout: Duration,
}

/// DNS, egress and TCP: the checked addresses and an open connection to one of them.
pub(crate) async fn reach(
    recorder: &mut Recorder,
    target: &Target<'_>,
) -> Option<(Vec<SocketAddr>, TcpStream)> {
    let resolved = recorder.step("dns", resolve(target)).await?;
    let checked = recorder.step("egress", judge(target, resolved)).await?;
    let stream = recorder.step("tcp", connect(target, &checked)).await?;
    Some((checked, stream))
}

async fn resolve(target: &Target<'_>) -> Result<Passed<Vec<SocketAddr>>, Failure> {
    let lookup = egress::resolve_unjudged(target.host, target.port);
    let resolved = match tokio::time::timeout(target.connect_timeout, lookup).await {
        Err(_) => {
            return Err(Failure::new(
                format!(
                    "no answer for `{}` within {} ms",
                    target.host,
                    target.connect_timeout.as_millis()
                ),
                "the DNS server does not answer: check this machine's resolver",
            ));
        }
        Ok(Err(error)) => return Err(resolve_failure(target.host, &error)),
        Ok(Ok(resolved)) => resolved,
    };
    if resolved.addresses.is_empty() {
        return Err(Failure::new(
            format!("`{}` resolves to no address", target.host),
            "check the host name (`host`, or the base URL)",
        ));
    }
    let detail = if resolved.looked_up {
        format!("resolved to {}", list(&resolved.addresses))
    } else {
        "an IP address: nothing to look up".to_string()
    };
    Ok(Passed::new(resolved.addresses, detail))
}

fn resolve_failure(host: &str, error: &EgressError) -> Failure {
    match error {
        EgressError::Resolve { .. } => Failure::new(
            format!("`{host}` does not resolve"),
            "check the host name; from a container, the name must resolve inside it",
        ),
        EgressError::MetadataHost { .. } => Failure::new(
            format!("`{host}` is a cloud metadata host name"),
            "outbound connections to cloud metadata services are always refused",
        ),
        // The guard's own message names the host and why it is not one; it holds no secret.
        other => Failure::new(other.to_string(), "fix the host name"),
    }
}

async fn judge(
    target: &Target<'_>,
    resolved: Vec<SocketAddr>,
) -> Result<Passed<Vec<SocketAddr>>, Failure> {
    let mut blocked: Vec<(IpAddr, Blocked)> = Vec::new();
    let mut checked: Vec<SocketAddr> = Vec::new();
    for mut address in resolved {
        address.set_ip(address.ip().to_canonical());
        match target.policy.check(address.ip()) {
            Ok(()) if !checked.contains(&address) => checked.push(address),
            Ok(()) => {}
            Err(EgressError::Blocked { reason, .. }) => blocked.push((address.ip(), reason)),
            Err(other) => return Err(Failure::new(other.to_string(), "fix the host")),
        }
    }
    if blocked.is_empty() {
        let public = checked.iter().all(|a| egress::classify(a.ip()).is_none());
        let detail = if public {
            "allowed: public addresses".to_string()
        } else {
            "allowed by the egress allow list".to_string()
        };
        return Ok(Passed::new(checked, detail));
    }
    let detail = blocked
        .iter()
        .map(|(ip, reason)| format!("{ip} is {}", reason.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    let mut hint = format!(
        "the egress policy refuses non-public addresses unless allowed; if this database \
         really is on that network, add to the datasource: `{}` (or list the network in \
         SLUICE_EGRESS_ALLOW for every datasource)",
        egress::allow_line(target.egress_allow, blocked.iter().map(|(ip, _)| *ip))
    );
    if blocked
        .iter()
        .any(|(_, reason)| *reason == Blocked::Metadata)
    {
        hint.push_str(
            "; a cloud metadata address opens only for an entry naming exactly it, which is \
             almost never what you want",
        );
    }
    Err(Failure::new(detail, hint))
}

async fn connect(
    target: &Target<'_>,
    checked: &[SocketAddr],
) -> Result<Passed<TcpStream>, Failure> {
    match egress::connect_checked(checked, target.bind, target.connect_timeout).await {
        Ok(stream) => {
            let detail = match (stream.peer_addr(), stream.local_addr()) {
                (Ok(peer), Ok(local)) => format!("connected to {peer} from {}", local.ip()),
                _ => "connected".to_string(),
            };
            Ok(Passed::new(stream, detail))
        }
        Err(error) => Err(connect_failure(target, &error)),
    }
}

fn connect_failure(target: &Target<'_>, error: &EgressError) -> Failure {
    let place = format!("{}:{}", target.host, target.port);
    match error {
        EgressError::Connect { addr, source }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Failure::new(
                format!("{addr} refused the connection"),
                format!(
                    "nothing listens on {place}: check `host` and `port`, and that the \
                     server listens on this address (PostgreSQL `listen_addresses`, MySQL \
                     `bind-address`)"
                ),
            )
        }
        EgressError::Connect { addr, source } => {
            use std::io::ErrorKind as Kind;
            let hint = match source.kind() {
                Kind::ConnectionReset | Kind::ConnectionAborted => format!(
                    "{place} cut the connection at once: a firewall on the way, or the server \
                     itself, refuses connections from the gateway's address"
                ),
                Kind::HostUnreachable | Kind::NetworkUnreachable => format!(
                    "no route to {place}: check the address and the network between the \
                     gateway and the database"
                ),
                _ => format!(
                    "cannot reach {place}: check the address, the network and the firewalls"
                ),
            };
            Failure::new(
                format!("cannot connect to {addr} ({:?})", source.kind()),
                hint,
            )
        }
        EgressError::Timeout { addr, after } => Failure::new(
            format!("no answer from {addr} within {} ms", after.as_millis()),
            "a firewall drops the connection: the database's network must let the gateway's \
             source addresses in (list them with `sluice egress`), or the host is wrong",
        ),
        EgressError::NoSourceAddress { .. } | EgressError::Bind { .. } => Failure::new(
            error.to_string(),
            "check SLUICE_EGRESS_BIND: each address must belong to this machine, one per \
             address family the database has",
        ),
        other => Failure::new(other.to_string(), "check the host and port"),
    }
}

/// `a, b, c` for addresses.
fn list(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the TLS step is skipped when TLS is off.
pub(crate) fn tls_off(spec: &crate::spec::NetworkDatabaseSpec) -> Option<String> {
    Some(match spec.tls {
        Some(_) => "TLS off (`tls: disable`)".to_string(),
        None => "TLS off: the default for a loopback host (set `tls` to turn it on)".to_string(),
    })
}

/// The TLS step's detail on success: the version and what was checked.
pub(crate) fn tls_detail(
    version: Option<rustls::ProtocolVersion>,
    mode: crate::spec::TlsMode,
    ca_file: bool,
) -> (String, Option<String>) {
    use crate::spec::TlsMode;
    let version = match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    };
    let roots = if ca_file {
        "tls_ca_file"
    } else {
        "the bundled web PKI roots"
    };
    match mode {
        TlsMode::VerifyFull => (
            format!("{version}; certificate checked against {roots} and the host name"),
            None,
        ),
        TlsMode::VerifyCa => (
            format!("{version}; certificate checked against {roots}, host name not checked"),
            None,
        ),
        TlsMode::Require | TlsMode::Disable => (
            format!("{version}; certificate NOT verified (tls: require)"),
            Some(
                "the connection is encrypted, but anyone who can intercept it can pose as the \
                 database: use `tls: verify-full` with `tls_ca_file`"
                    .to_string(),
            ),
        ),
    }
}
