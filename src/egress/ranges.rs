//! Address classification: why an IPv4 or IPv6 address is not a public destination
//! (loopback, private, link-local and metadata ranges, and IPv4 addresses embedded in IPv6
//! ones), or `None` when it is. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Blocked, METADATA_V4, METADATA_V6};

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
