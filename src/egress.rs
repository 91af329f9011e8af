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

mod resolver;
#[cfg(test)]
mod tests;

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

/// Normalises a host: an IP literal in any spelling the C library accepts, a bracketed or bare
/// IPv6 literal (zone ids refused), or a DNS name (lower-cased, trailing dot removed).
///
/// A host whose last label is a number must be an IPv4 address (as in the WHATWG URL rules), so
/// `127.0.0.1.` and `0x7f.1` are addresses and `1.2.3.4.5` or `db.123` are refused rather than
/// passed to the resolver, which could read them as addresses of its own accord.
pub fn parse_host(host: &str) -> Result<HostSpec, EgressError> {
    if host.is_empty() {
        return Err(invalid(host, "it is empty"));
    }
    if host.contains('%') {
        return Err(invalid(
            host,
            "IPv6 zone ids and percent-encoding are not allowed",
        ));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(invalid(host, "an opening `[` has no closing `]`"));
        };
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| HostSpec::Ip(IpAddr::V6(ip)))
            .map_err(|_| invalid(host, "brackets must hold an IPv6 address"));
    }
    if host.contains(':') {
        return host
            .parse::<Ipv6Addr>()
            .map(|ip| HostSpec::Ip(IpAddr::V6(ip)))
            .map_err(|_| {
                invalid(
                    host,
                    "it is not a valid IPv6 address (a port belongs in its own field)",
                )
            });
    }
    if !host.is_ascii() {
        return Err(invalid(
            host,
            "it is not ASCII (write an internationalised name in its xn-- form)",
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if ends_in_number(name) {
        return parse_ipv4_loose(name)
            .map(|ip| HostSpec::Ip(IpAddr::V4(ip)))
            .ok_or_else(|| invalid(host, "it looks like an IPv4 address but is not a valid one"));
    }
    validate_name(host, name)?;
    Ok(HostSpec::Name(name.to_ascii_lowercase()))
}

/// Whether the last label is a number in some base, which makes the whole host an IPv4 literal.
fn ends_in_number(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x").or_else(|| last.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// The `inet_aton` rules: one to four parts, each decimal, octal (leading `0`) or hex (`0x`);
/// the last part fills all remaining bytes (`127.1` is 127.0.0.1, `2130706433` is 127.0.0.1).
fn parse_ipv4_loose(name: &str) -> Option<Ipv4Addr> {
    let parts = name
        .split('.')
        .map(parse_ipv4_part)
        .collect::<Option<Vec<u32>>>()?;
    let (last, leading) = parts.split_last()?;
    if leading.len() > 3 || leading.iter().any(|&part| part > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 32 && *last >= 1 << room {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &part)| acc | (part << (24 - 8 * i as u32)));
    Some(Ipv4Addr::from(high | last))
}

fn parse_ipv4_part(part: &str) -> Option<u32> {
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    // `from_str_radix` would accept a sign; an address part never has one.
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Letters, digits, `-` and `_` in labels of 1 to 63 characters, at most 253 in all.
fn validate_name(host: &str, name: &str) -> Result<(), EgressError> {
    if name.is_empty() || name.len() > 253 {
        return Err(invalid(host, "a host name has 1 to 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid(host, "each name label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                host,
                "a host name holds only letters, digits, `-`, `_` and dots",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid(host, "a name label cannot start or end with `-`"));
        }
    }
    Ok(())
}

/// Whether `host` names this machine (database TLS is then off by default). Every spelling
/// of a loopback address counts (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`), and the name
/// `localhost`; other names are not resolved here.
pub fn is_loopback_host(host: &str) -> bool {
    match parse_host(host) {
        Ok(HostSpec::Name(name)) => name == "localhost",
        Ok(HostSpec::Ip(ip)) => match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        },
        Err(_) => false,
    }
}

/// Whether a normalised name always means a metadata service.
pub fn is_metadata_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    METADATA_NAMES
        .iter()
        .any(|known| known.eq_ignore_ascii_case(name))
}

/// Why `ip` is not a public destination, or `None` when it is.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    const RESERVED: &[([u8; 4], u32)] = &[
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([240, 0, 0, 0], 4),     // reserved for future use
    ];
    let blocked = if METADATA_V4.contains(&ip) {
        Blocked::Metadata
    } else if in_v4(ip, [0, 0, 0, 0], 8) {
        Blocked::Unspecified
    } else if in_v4(ip, [127, 0, 0, 0], 8) {
        Blocked::Loopback
    } else if in_v4(ip, [10, 0, 0, 0], 8)
        || in_v4(ip, [172, 16, 0, 0], 12)
        || in_v4(ip, [192, 168, 0, 0], 16)
    {
        Blocked::Private
    } else if in_v4(ip, [169, 254, 0, 0], 16) {
        Blocked::LinkLocal
    } else if in_v4(ip, [100, 64, 0, 0], 10) {
        Blocked::SharedCgnat
    } else if in_v4(ip, [224, 0, 0, 0], 4) {
        Blocked::Multicast
    } else if ip == Ipv4Addr::BROADCAST {
        Blocked::Broadcast
    } else if RESERVED.iter().any(|&(net, prefix)| in_v4(ip, net, prefix)) {
        Blocked::Reserved
    } else {
        return None;
    };
    Some(blocked)
}

fn in_v6(bits: u128, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    bits & mask == net & mask
}

fn v4_at(bits: u128, shift: u32) -> Ipv4Addr {
    // Truncation keeps exactly the 32 bits that hold the embedded address.
    Ipv4Addr::from((bits >> shift) as u32)
}

/// The IPv4 addresses an IPv6 address carries and that a packet to it ends up reaching:
/// IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64 well-known prefix, 6to4 and Teredo.
fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let bits = u128::from(ip);
    let high96 = bits >> 32;
    if high96 == 0xffff || high96 == 0xffff_0000 || high96 == 0 {
        // ::ffff:a.b.c.d, ::ffff:0:a.b.c.d, ::a.b.c.d
        vec![v4_at(bits, 0)]
    } else if high96 == 0x0064_ff9b_0000_0000_0000_0000 {
        vec![v4_at(bits, 0)]
    } else if in_v6(bits, 0x2002 << 112, 16) {
        vec![v4_at(bits, 80)]
    } else if in_v6(bits, 0x2001_0000 << 96, 32) {
        // Teredo: the server address in clear, the client address with its bits inverted.
        vec![v4_at(bits, 64), Ipv4Addr::from(!(bits as u32))]
    } else {
        Vec::new()
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    const RESERVED: &[(u128, u32)] = &[
        (0x0100 << 112, 64),     // discard-only
        (0x2001_0002 << 96, 48), // benchmarking
        (0x2001_0db8 << 96, 32), // documentation
        (0x3fff << 112, 20),     // documentation
    ];
    if METADATA_V6.contains(&ip) {
        return Some(Blocked::Metadata);
    }
    if ip.is_unspecified() {
        return Some(Blocked::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Blocked::Loopback);
    }
    let embedded = embedded_v4(ip);
    if !embedded.is_empty() {
        // The most telling reason wins: metadata first, then the first embedded address.
        let reasons: Vec<Blocked> = embedded.into_iter().filter_map(classify_v4).collect();
        return reasons
            .iter()
            .copied()
            .find(|&reason| reason == Blocked::Metadata)
            .or_else(|| reasons.first().copied());
    }
    let bits = u128::from(ip);
    let blocked = if in_v6(bits, 0xfe80 << 112, 10) {
        Blocked::LinkLocal
    } else if in_v6(bits, 0xfec0 << 112, 10) || in_v6(bits, 0x0064_ff9b_0001 << 80, 48) {
        // Deprecated site-local, and the local-use NAT64 prefix (RFC 8215), whose embedded
        // address position depends on the operator's prefix length.
        Blocked::Private
    } else if in_v6(bits, 0xfc00 << 112, 7) {
        Blocked::UniqueLocal
    } else if in_v6(bits, 0xff00 << 112, 8) {
        Blocked::Multicast
    } else if RESERVED
        .iter()
        .any(|&(net, prefix)| in_v6(bits, net, prefix))
        || !in_v6(bits, 0x2000 << 112, 3)
    {
        Blocked::Reserved
    } else {
        return None;
    };
    Some(blocked)
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
