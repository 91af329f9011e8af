//! Host parsing: what an admin typed becomes an IP address (in any spelling the C library
//! accepts) or a validated DNS name, never something a resolver could read another way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{EgressError, HostSpec, METADATA_NAMES, invalid};

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
