//! Egress: the only place where an outbound address is judged, and where an outbound TCP
//! connection to a database or HTTP upstream is opened from the configured source address.
//!
//! The flow is always the same (docs/EGRESS.md; security invariant 8 in docs/SECURITY.md):
//!
//! 1. [`parse_host`] turns whatever an admin typed into either an IP address or a validated DNS
//!    name. Alternative IPv4 spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) follow the
//!    `inet_aton` rules that the C library would apply, so they are judged as the address they
//!    really are, never as a name.
//! 2. [`resolve_checked`] resolves a name once and judges every address it yields with
//!    [`EgressPolicy::check`]; one blocked address refuses the whole host.
//! 3. [`connect_checked`] connects to exactly those addresses (there is no second resolution, so
//!    DNS rebinding cannot swap the target), bound to the `SLUICE_EGRESS_BIND` address of the
//!    same family so that the connection leaves from an address a DBA has allowlisted.
//!
//! [`classify`] and [`EgressPolicy`] are pure; only the two `async` functions do IO.
//! This module never logs: it returns [`EgressError`]s, whose messages are meant for admins and
//! the server log (they name the host and address, never a credential), and the caller decides
//! what to log and what to show. It must never be bypassed: every outbound socket to a
//! datasource is opened here or through addresses that came from [`resolve_checked`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpSocket, TcpStream};

mod host;
mod ranges;
mod resolver;
#[cfg(test)]
mod tests;

pub use host::{is_loopback_host, is_metadata_name, parse_host};
pub use ranges::classify;
pub use resolver::CheckedResolver;

/// Host names that always mean a cloud metadata service. They are refused before resolution,
/// whatever the allow list says (an admin who really means it can allow the address itself).
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Addresses of cloud metadata and credential services. Several lie inside ranges an admin may
/// well allow for a private database (169.254/16, 100.64/10 for a VPN, fd00::/8), so they are
/// judged separately and are opened only by an allow entry naming the exact address.
const METADATA_V4: &[Ipv4Addr] = &[
    // AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack instance metadata.
    Ipv4Addr::new(169, 254, 169, 254),
    // AWS ECS task credentials and EKS pod identity agent.
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    // Alibaba Cloud metadata (inside CGNAT space).
    Ipv4Addr::new(100, 100, 100, 200),
    // Azure WireServer: a public address that only means something from inside Azure.
    Ipv4Addr::new(168, 63, 129, 16),
];

const METADATA_V6: &[Ipv6Addr] = &[
    // AWS instance metadata over IPv6.
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    // AWS EKS pod identity agent over IPv6.
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];

/// Where the admin can open a blocked address; quoted in error messages.
const ALLOW_HINT: &str =
    "an admin must allow it (datasource `egress_allow` or SLUICE_EGRESS_ALLOW)";

/// A host as given by an admin, after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSpec {
    /// An IP literal in any accepted spelling.
    Ip(IpAddr),
    /// A DNS name: lower-case ASCII, without a trailing dot.
    Name(String),
}

/// Why an address is not a public destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blocked {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 0.0.0.0/8, :: (connecting there reaches this host).
    Unspecified,
    /// RFC 1918, IPv6 site-local and local-use NAT64.
    Private,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedCgnat,
    /// fc00::/7.
    UniqueLocal,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and reserved ranges, and IPv6 outside
    /// global unicast.
    Reserved,
    /// A cloud metadata or credential service.
    Metadata,
}

impl Blocked {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::Loopback => "loopback",
            Blocked::Unspecified => "unspecified",
            Blocked::Private => "private",
            Blocked::LinkLocal => "link_local",
            Blocked::SharedCgnat => "cgnat",
            Blocked::UniqueLocal => "unique_local",
            Blocked::Multicast => "multicast",
            Blocked::Broadcast => "broadcast",
            Blocked::Reserved => "reserved",
            Blocked::Metadata => "metadata",
        }
    }

    /// The phrase used in messages, e.g. "a private address".
    pub fn describe(self) -> &'static str {
        match self {
            Blocked::Loopback => "a loopback address",
            Blocked::Unspecified => "an unspecified (this-host) address",
            Blocked::Private => "a private address",
            Blocked::LinkLocal => "a link-local address",
            Blocked::SharedCgnat => "a shared (CGNAT) address",
            Blocked::UniqueLocal => "a unique-local address",
            Blocked::Multicast => "a multicast address",
            Blocked::Broadcast => "a broadcast address",
            Blocked::Reserved => "a reserved address",
            Blocked::Metadata => "a cloud metadata address",
        }
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an outbound connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("`{host}` is not a valid host: {reason}")]
    InvalidHost { host: String, reason: &'static str },
    #[error("`{host}` is a cloud metadata host name; outbound connections there are refused")]
    MetadataHost { host: String },
    #[error("{}", blocked_message(.host, *.ip, *.reason))]
    Blocked {
        host: String,
        ip: IpAddr,
        reason: Blocked,
    },
    #[error("cannot resolve `{host}`")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("`{host}` resolves to no address")]
    NoAddress { host: String },
    #[error("there is no checked address to connect to")]
    NothingToConnect,
    #[error(
        "no SLUICE_EGRESS_BIND address has the family of {target}; refusing to connect from an unconfigured source address"
    )]
    NoSourceAddress { target: SocketAddr },
    #[error("cannot bind an outbound socket to {local} (is it an address of this host?)")]
    Bind {
        local: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
}

impl EgressError {
    /// A stable label for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            EgressError::InvalidHost { .. } => "invalid_host",
            EgressError::MetadataHost { .. } => "metadata_host",
            EgressError::Blocked { .. } => "egress_blocked",
            EgressError::Resolve { .. } => "resolve",
            EgressError::NoAddress { .. } | EgressError::NothingToConnect => "no_address",
            EgressError::NoSourceAddress { .. } => "no_source_address",
            EgressError::Bind { .. } => "bind",
            EgressError::Connect { .. } => "connect",
            EgressError::Timeout { .. } => "connect_timeout",
        }
    }
}

fn blocked_message(host: &str, ip: IpAddr, reason: Blocked) -> String {
    let remedy = match reason {
        Blocked::Metadata => "outbound connections there are refused",
        _ => ALLOW_HINT,
    };
    let described = reason.describe();
    match parse_host(host) {
        Ok(HostSpec::Ip(_))
            if host.trim_start_matches('[').trim_end_matches(']') == ip.to_string() =>
        {
            format!("`{host}` is {described}; {remedy}")
        }
        Ok(HostSpec::Ip(_)) => format!("`{host}` is {ip}, {described}; {remedy}"),
        _ => format!("`{host}` resolves to {ip}, {described}; {remedy}"),
    }
}

/// A host string fit to quote in an error. Anything that could be a pasted URL authority with a
/// password, or is not printable, is not echoed.
fn shown(host: &str) -> String {
    if host.len() > 255 || host.contains('@') || host.chars().any(|c| c.is_control()) {
        "<unprintable host>".to_string()
    } else {
        host.to_string()
    }
}

fn invalid(host: &str, reason: &'static str) -> EgressError {
    EgressError::InvalidHost {
        host: shown(host),
        reason,
    }
}

/// Which non-public addresses an outbound connection may reach: the instance-wide allow list
/// (`SLUICE_EGRESS_ALLOW`) plus the datasource's own (`egress_allow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub allow: Vec<IpNet>,
}

impl EgressPolicy {
    pub fn new(instance_allow: &[IpNet], datasource_allow: &[IpNet]) -> EgressPolicy {
        EgressPolicy {
            allow: instance_allow
                .iter()
                .chain(datasource_allow)
                .copied()
                .collect(),
        }
    }

    /// Judges one address. A public address passes; a blocked one passes only inside an allowed
    /// CIDR; a metadata address passes only through an entry naming exactly that address (a /32
    /// or /128), so neither a catch-all nor a broad private range opens it by accident.
    pub fn check(&self, ip: IpAddr) -> Result<(), EgressError> {
        self.check_host(&ip.to_string(), ip)
    }

    /// [`EgressPolicy::check`], naming `host` (as the admin wrote it) in the error.
    fn check_host(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        match self.verdict(ip) {
            None => Ok(()),
            Some(reason) => Err(EgressError::Blocked {
                host: shown(host),
                ip,
                reason,
            }),
        }
    }

    fn verdict(&self, ip: IpAddr) -> Option<Blocked> {
        let reason = classify(ip)?;
        // `::ffff:10.0.0.5` is the same endpoint as 10.0.0.5, so either spelling matches.
        let canonical = ip.to_canonical();
        let covers = |net: &IpNet| net.contains(&ip) || net.contains(&canonical);
        let allowed = if reason == Blocked::Metadata {
            self.allow
                .iter()
                .any(|net| net.prefix_len() == net.max_prefix_len() && covers(net))
        } else {
            self.allow.iter().any(covers)
        };
        if allowed { None } else { Some(reason) }
    }
}

/// The `egress_allow` line that admits `blocked` on top of what a datasource already lists
/// (`existing`): each address as a single host (/32 or /128), each once, items quoted, as
/// `catalog check`'s egress pre-flight and the datasource test print it.
pub fn allow_line(existing: &[String], blocked: impl IntoIterator<Item = IpAddr>) -> String {
    let mut items: Vec<String> = existing.to_vec();
    for ip in blocked {
        let item = IpNet::from(ip.to_canonical()).to_string();
        if !items.contains(&item) {
            items.push(item);
        }
    }
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    format!("egress_allow: [{}]", quoted.join(", "))
}

/// A CIDR list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{item}` is not a CIDR or IP address (write e.g. 10.0.0.0/8, 192.168.1.5 or fd00::/8)")]
pub struct CidrError {
    pub item: String,
}

/// Reads a list written as one string, such as `10.0.0.0/8, 192.168.1.5` (commas or
/// whitespace between items), as environment variables hold them. See [`parse_cidrs`].
pub fn parse_cidr_list(list: &str) -> Result<Vec<IpNet>, CidrError> {
    parse_cidrs(list.split(|c: char| c == ',' || c.is_whitespace()))
}

/// Reads CIDRs one item each, as catalog lists hold them (`["10.0.0.0/8", "192.168.1.5"]`).
/// A bare address is a single host (/32 or /128); host bits in a CIDR are cleared; items are
/// trimmed and empty ones skipped.
pub fn parse_cidrs<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Vec<IpNet>, CidrError> {
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| CidrError { item: shown(item) })
        })
        .collect()
}

/// Resolves `host` once and judges every address; returns the addresses to connect to.
///
/// IP literals are judged directly, without DNS. A name is refused if any address it resolves
/// to is blocked (a name with one public and one loopback address is refused), because the
/// caller's driver or a later retry might pick either.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    policy: &EgressPolicy,
) -> Result<Vec<SocketAddr>, EgressError> {
    if let HostSpec::Ip(ip) = parse_host(host)? {
        policy.check_host(host, ip)?;
        return Ok(vec![SocketAddr::new(ip.to_canonical(), port)]);
    }
    let resolved = resolve_unjudged(host, port).await?;
    check_resolved(host, resolved.addresses, policy)
}

/// What [`resolve_unjudged`] found: the addresses, and whether DNS was asked (not for an IP
/// literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addresses: Vec<SocketAddr>,
    pub looked_up: bool,
}

/// The first half of [`resolve_checked`]: the host read (an IP literal is its own address)
/// or resolved once, nothing judged yet, so that the datasource test can report resolution
/// and the egress decision apart. Cloud metadata host names are refused here, before any
/// lookup. Never connect to these addresses without judging each with
/// [`EgressPolicy::check`].
pub async fn resolve_unjudged(host: &str, port: u16) -> Result<Resolved, EgressError> {
    match parse_host(host)? {
        HostSpec::Ip(ip) => Ok(Resolved {
            addresses: vec![SocketAddr::new(ip, port)],
            looked_up: false,
        }),
        HostSpec::Name(name) => {
            if is_metadata_name(&name) {
                return Err(EgressError::MetadataHost { host: shown(host) });
            }
            let addresses = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|source| EgressError::Resolve {
                    host: shown(host),
                    source,
                })?
                .collect();
            Ok(Resolved {
                addresses,
                looked_up: true,
            })
        }
    }
}

/// The pure half of [`resolve_checked`]: judges resolved addresses, all or nothing.
fn check_resolved(
    host: &str,
    resolved: impl IntoIterator<Item = SocketAddr>,
    policy: &EgressPolicy,
) -> Result<Vec<SocketAddr>, EgressError> {
    let mut checked: Vec<SocketAddr> = Vec::new();
    for mut addr in resolved {
        addr.set_ip(addr.ip().to_canonical());
        policy.check_host(host, addr.ip())?;
        if !checked.contains(&addr) {
            checked.push(addr);
        }
    }
    if checked.is_empty() {
        return Err(EgressError::NoAddress { host: shown(host) });
    }
    Ok(checked)
}

/// Connects to the first reachable address of `addrs` (which must come from
/// [`resolve_checked`]), each attempt limited by `timeout`.
///
/// When `bind` is not empty, each socket is bound to the first bind address of the target's
/// family, and targets of a family with no bind address are skipped: a connection must never
/// leave from a source address the DBA was not given. The stream has `TCP_NODELAY` set.
pub async fn connect_checked(
    addrs: &[SocketAddr],
    bind: &[IpAddr],
    timeout: Duration,
) -> Result<TcpStream, EgressError> {
    let mut last_error = None;
    for &addr in addrs {
        let local = bind
            .iter()
            .copied()
            .find(|local| local.is_ipv4() == addr.is_ipv4());
        if local.is_none() && !bind.is_empty() {
            last_error.get_or_insert(EgressError::NoSourceAddress { target: addr });
            continue;
        }
        match connect_one(addr, local, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or(EgressError::NothingToConnect))
}

async fn connect_one(
    addr: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> Result<TcpStream, EgressError> {
    let connect_error = |source| EgressError::Connect { addr, source };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(connect_error)?;
    if let Some(local) = local {
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|source| EgressError::Bind { local, source })?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| EgressError::Timeout {
            addr,
            after: timeout,
        })?
        .map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    Ok(stream)
}
