//! The client's address: the socket peer, or — only when the peer is a trusted proxy — the
//! address the proxies recorded in `X-Forwarded-For` (or `Forwarded: for=`).
//!
//! Forwarded lists are read from the right (the hop nearest to Sluice), skipping trusted
//! proxies; the first address that is not a trusted proxy is the client. Anything a client
//! wrote to the left of that can be forged and is never used. An untrusted peer's headers
//! are ignored entirely.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The client address as resolved for this request (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The address the edge resolved for `request` (unspecified if the edge did not run).
    pub fn of<B>(request: &axum::http::Request<B>) -> IpAddr {
        request
            .extensions()
            .get::<ClientIp>()
            .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| c.0)
    }
}

/// Resolves the client address from the socket peer and the forwarding headers.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !is_trusted(&client) {
                    return client;
                }
            }
            // An entry that does not parse ends the walk: nothing left of it is believable.
            None => return client,
        }
    }
    client
}

/// The rate-limit identity of an address: IPv4 as is, IPv6 by its /64 (one host usually
/// holds a whole /64, so per-address buckets would be free to rotate through).
pub fn bucket_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        v4 => v4.to_string(),
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The hops of `X-Forwarded-For` if present, else of `Forwarded`, left to right; `None`
/// for an entry that is not an address (`unknown`, an obfuscated name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(|item| parse_hop(item.trim()))
            .collect();
    }
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_hop(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a = bucket_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = bucket_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(bucket_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
        assert_eq!(bucket_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn nets(list: &str) -> Vec<IpNet> {
        crate::egress::parse_cidr_list(list).unwrap()
    }

    #[test]
    fn client_addresses_resolve_per_trust() {
        let proxies = nets("10.0.0.0/8, 2001:db8:ffff::/48");
        type Case<'a> = (&'a str, &'a [(&'static str, &'a str)], &'a str);
        let cases: &[Case] = &[
            // Untrusted peers: headers are ignored, however they look.
            (
                "203.0.113.9",
                &[("x-forwarded-for", "198.51.100.1")],
                "203.0.113.9",
            ),
            (
                "203.0.113.9",
                &[("forwarded", "for=198.51.100.1")],
                "203.0.113.9",
            ),
            // A trusted proxy: the nearest untrusted hop is the client.
            (
                "10.0.0.5",
                &[("x-forwarded-for", "198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.0.0.7")],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.1"),
                ],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "198.51.100.1:4711")],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "[2001:db8::7]:4711")],
                "2001:db8::7",
            ),
            (
                "10.0.0.5",
                &[("forwarded", "for=198.51.100.1;proto=https, for=10.0.0.7")],
                "198.51.100.1",
            ),
            (
                "10.0.0.5",
                &[("forwarded", "for=\"[2001:db8::7]:4711\"")],
                "2001:db8::7",
            ),
            // Garbage ends the walk at the last trusted hop, never left of it.
            (
                "10.0.0.5",
                &[("x-forwarded-for", "198.51.100.1, unknown")],
                "10.0.0.5",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "198.51.100.1, 10.0.0.8, nonsense")],
                "10.0.0.5",
            ),
            // No header from a trusted proxy: the proxy itself.
            ("10.0.0.5", &[], "10.0.0.5"),
            // IPv4-mapped peers count as IPv4.
            (
                "::ffff:10.0.0.5",
                &[("x-forwarded-for", "198.51.100.1")],
                "198.51.100.1",
            ),
            (
                "2001:db8:ffff::1",
                &[("x-forwarded-for", "2001:db8:1::9")],
                "2001:db8:1::9",
            ),
        ];
        for (peer, pairs, expected) in cases {
            let got = resolve(peer.parse().unwrap(), &headers(pairs), &proxies);
            assert_eq!(got, expected.parse::<IpAddr>().unwrap(), "{peer} {pairs:?}");
        }
        // Nobody trusted: always the peer.
        let got = resolve(
            "10.0.0.5".parse().unwrap(),
            &headers(&[("x-forwarded-for", "1.2.3.4")]),
            &[],
        );
        assert_eq!(got, "10.0.0.5".parse::<IpAddr>().unwrap());
    }
}
