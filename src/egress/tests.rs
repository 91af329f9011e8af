use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nets(list: &str) -> Vec<IpNet> {
    parse_cidr_list(list).unwrap()
}

/// The address a host spelling normalises to, or the reason it is refused.
fn host_ip(host: &str) -> IpAddr {
    match parse_host(host) {
        Ok(HostSpec::Ip(ip)) => ip,
        other => panic!("`{host}` should be an IP literal, got {other:?}"),
    }
}

#[test]
fn ipv4_spellings_normalise_like_inet_aton() {
    let cases = [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0.0.0.0", "0.0.0.0"),
        ("00", "0.0.0.0"),
        ("10.0x10203", "10.1.2.3"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("4294967295", "255.255.255.255"),
        ("8.8.8.8", "8.8.8.8"),
    ];
    for (host, expected) in cases {
        assert_eq!(host_ip(host), ip(expected), "{host}");
    }
}

#[test]
fn ipv6_spellings_normalise() {
    let cases = [
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("[::]", "::"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("[FD00:EC2::254]", "fd00:ec2::254"),
    ];
    for (host, expected) in cases {
        assert_eq!(host_ip(host), ip(expected), "{host}");
    }
}

#[test]
fn names_normalise() {
    let cases = [
        ("DB.Example.COM", "db.example.com"),
        ("db.example.com.", "db.example.com"),
        ("localhost", "localhost"),
        ("my_db-1.internal", "my_db-1.internal"),
        ("127.0.0.1.nip.io", "127.0.0.1.nip.io"),
        ("0xdead.example", "0xdead.example"),
        // inet_aton refuses trailing garbage, so the resolver treats this as a name too.
        ("0x1g", "0x1g"),
    ];
    for (host, expected) in cases {
        assert_eq!(
            parse_host(host).unwrap(),
            HostSpec::Name(expected.to_string()),
            "{host}"
        );
    }
}

#[test]
fn malformed_hosts_are_refused() {
    let cases = [
        "",
        ".",
        "[::1",
        "[127.0.0.1]",
        "fe80::1%eth0",
        "[fe80::1%25eth0]",
        "db:5432",
        "1.2.3.4.5",
        "256.0.0.1",
        "127.0.0.256",
        "127.16777216",
        "4294967296",
        "08.0.0.1",
        "0x",
        "127..1",
        "db.123",
        "a b",
        "-db.example",
        "db..example",
        "user:pass@db",
        "user@db",
        "１２７.０.０.１",
        "bücher.example",
        "+1",
    ];
    for host in cases {
        let error = parse_host(host).expect_err(host);
        assert_eq!(error.class(), "invalid_host", "{host}");
    }
    // A pasted credential is never echoed into the message.
    let error = parse_host("user:secret@db").unwrap_err().to_string();
    assert!(!error.contains("secret"), "{error}");
}

#[test]
fn classify_names_each_range() {
    use Blocked::*;
    let cases: &[(&str, Option<Blocked>)] = &[
        // Public.
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700::1111", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("192.0.3.1", None),
        // Loopback and unspecified.
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.254", Some(Loopback)),
        ("::1", Some(Loopback)),
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(Unspecified)),
        ("::", Some(Unspecified)),
        // Private.
        ("10.0.0.1", Some(Private)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("192.168.1.1", Some(Private)),
        ("fec0::1", Some(Private)),
        ("64:ff9b:1::a00:1", Some(Private)),
        // Link-local, CGNAT, unique-local.
        ("169.254.1.1", Some(LinkLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("100.64.0.1", Some(SharedCgnat)),
        ("100.127.255.255", Some(SharedCgnat)),
        ("fc00::1", Some(UniqueLocal)),
        ("fd12:3456::1", Some(UniqueLocal)),
        // Multicast, broadcast, reserved.
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.250", Some(Multicast)),
        ("ff02::1", Some(Multicast)),
        ("255.255.255.255", Some(Broadcast)),
        ("240.0.0.1", Some(Reserved)),
        ("192.0.0.8", Some(Reserved)),
        ("192.0.2.1", Some(Reserved)),
        ("198.18.0.1", Some(Reserved)),
        ("198.19.255.255", Some(Reserved)),
        ("198.51.100.1", Some(Reserved)),
        ("203.0.113.1", Some(Reserved)),
        ("2001:db8::1", Some(Reserved)),
        ("100::1", Some(Reserved)),
        ("4000::1", Some(Reserved)),
        // Metadata, including inside ranges that are otherwise private or public.
        ("169.254.169.254", Some(Metadata)),
        ("169.254.170.2", Some(Metadata)),
        ("100.100.100.200", Some(Metadata)),
        ("168.63.129.16", Some(Metadata)),
        ("fd00:ec2::254", Some(Metadata)),
        ("::ffff:169.254.169.254", Some(Metadata)),
        ("64:ff9b::a9fe:a9fe", Some(Metadata)),
        // IPv6 forms that embed a blocked IPv4 address.
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:7f00:1", Some(Loopback)),
        ("::ffff:0:127.0.0.1", Some(Loopback)),
        ("::127.0.0.1", Some(Loopback)),
        ("::ffff:10.0.0.1", Some(Private)),
        ("::ffff:0.0.0.0", Some(Unspecified)),
        ("64:ff9b::7f00:1", Some(Loopback)),
        ("64:ff9b::192.168.0.1", Some(Private)),
        ("2002:7f00:1::", Some(Loopback)),
        ("2002:a9fe:a9fe::1", Some(Metadata)),
        ("2002:c0a8:101::1", Some(Private)),
        // Teredo: server 127.0.0.1 in clear; client 10.0.0.1 inverted (f5ff:fffe).
        ("2001:0:7f00:1::", Some(Loopback)),
        ("2001:0:808:808::f5ff:fffe", Some(Private)),
        ("2001:0:808:808::f7f7:f7f7", None),
    ];
    for &(text, expected) in cases {
        assert_eq!(classify(ip(text)), expected, "{text}");
    }
}

#[test]
fn every_spelling_of_loopback_is_refused() {
    let policy = EgressPolicy::default();
    let spellings = [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "0x7f.1",
        "[::1]",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "0:0:0:0:0:0:0:1",
        "0.0.0.0",
        "0",
        "[::]",
        "017700000001",
        "127.0.0.1.",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
    ];
    for host in spellings {
        let ip = host_ip(host);
        let error = policy.check(ip).expect_err(host);
        assert!(
            matches!(
                error,
                EgressError::Blocked {
                    reason: Blocked::Loopback | Blocked::Unspecified,
                    ..
                }
            ),
            "{host}: {error:?}"
        );
    }
}

#[test]
fn public_addresses_pass() {
    let policy = EgressPolicy::default();
    for text in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
        policy.check(ip(text)).expect(text);
    }
}

#[test]
fn allow_lists_open_what_they_name() {
    // (instance allow, datasource allow, address, allowed)
    let cases = [
        ("", "10.0.0.0/8", "10.1.2.3", true),
        ("", "10.0.0.0/8", "::ffff:10.1.2.3", true),
        ("", "10.0.0.0/8", "192.168.0.1", false),
        ("10.0.0.0/8", "", "10.1.2.3", true),
        ("", "127.0.0.2/32", "127.0.0.2", true),
        ("", "127.0.0.2", "127.0.0.2", true),
        ("", "127.0.0.2/32", "127.0.0.1", false),
        ("", "fd00::/8", "fd12::1", true),
        ("", "0.0.0.0/0", "127.0.0.1", true),
        ("", "::/0", "fe80::1", true),
        // A catch-all, or a broad range, does not open metadata; the exact address does.
        ("0.0.0.0/0", "", "169.254.169.254", false),
        ("", "0.0.0.0/0, ::/0", "169.254.169.254", false),
        ("", "::/0", "fd00:ec2::254", false),
        ("", "169.254.0.0/16", "169.254.169.254", false),
        ("", "169.254.0.0/16", "169.254.1.1", true),
        ("", "100.64.0.0/10", "100.100.100.200", false),
        ("", "fd00::/8", "fd00:ec2::254", false),
        ("", "169.254.169.254/32", "169.254.169.254", true),
        ("169.254.169.254", "", "::ffff:169.254.169.254", true),
        ("", "fd00:ec2::254", "fd00:ec2::254", true),
    ];
    for (instance, datasource, address, allowed) in cases {
        let policy = EgressPolicy::new(&nets(instance), &nets(datasource));
        assert_eq!(
            policy.check(ip(address)).is_ok(),
            allowed,
            "{instance} | {datasource} | {address}"
        );
    }
}

#[test]
fn cidr_lists_parse_and_name_the_bad_item() {
    assert_eq!(
        nets("10.0.0.0/8, 192.168.1.5"),
        vec![
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "192.168.1.5/32".parse().unwrap()
        ]
    );
    assert_eq!(
        nets(" fd00::/8 ::1,,10.1.2.3/8 "),
        vec![
            "fd00::/8".parse::<IpNet>().unwrap(),
            "::1/128".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap()
        ]
    );
    assert_eq!(nets(""), Vec::<IpNet>::new());
    for (list, bad) in [
        ("10.0.0.0/8, 10.0.0.0/33", "10.0.0.0/33"),
        ("db.internal", "db.internal"),
        ("127.1", "127.1"),
        ("10.0.0.0/8;192.168.0.0/16", "10.0.0.0/8;192.168.0.0/16"),
    ] {
        let error = parse_cidr_list(list).unwrap_err();
        assert_eq!(error.item, bad, "{list}");
        assert!(error.to_string().contains(bad), "{error}");
    }
}

#[test]
fn messages_name_host_address_and_remedy() {
    let policy = EgressPolicy::default();
    assert_eq!(
        policy.check(ip("169.254.169.254")).unwrap_err().to_string(),
        "`169.254.169.254` is a cloud metadata address; outbound connections there are refused"
    );
    let error = check_resolved(
        "db.internal",
        [SocketAddr::new(ip("10.0.0.5"), 5432)],
        &policy,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`db.internal` resolves to 10.0.0.5, a private address; an admin must allow it \
         (datasource `egress_allow` or SLUICE_EGRESS_ALLOW)"
    );
    assert_eq!(error.class(), "egress_blocked");
    let literal = policy.check_host("0x7f.1", host_ip("0x7f.1")).unwrap_err();
    assert!(
        literal
            .to_string()
            .starts_with("`0x7f.1` is 127.0.0.1, a loopback address;"),
        "{literal}"
    );
}

#[test]
fn a_name_with_any_blocked_address_is_refused() {
    let policy = EgressPolicy::default();
    let public = SocketAddr::new(ip("93.184.216.34"), 443);
    let loopback = SocketAddr::new(ip("127.0.0.1"), 443);
    let mapped_public = SocketAddr::new(ip("::ffff:93.184.216.34"), 443);
    for resolved in [
        vec![public, loopback],
        vec![loopback, public],
        vec![public, SocketAddr::new(ip("fd00:ec2::254"), 443)],
    ] {
        assert!(check_resolved("mixed.example", resolved, &policy).is_err());
    }
    // Duplicates (a mapped and a plain spelling) collapse; order is kept.
    assert_eq!(
        check_resolved("ok.example", [public, mapped_public], &policy).unwrap(),
        vec![public]
    );
    assert_eq!(
        check_resolved("none.example", [], &policy)
            .unwrap_err()
            .class(),
        "no_address"
    );
}

#[tokio::test]
async fn metadata_names_are_refused_before_resolution() {
    let policy = EgressPolicy::new(&nets("0.0.0.0/0, ::/0, 169.254.169.254"), &[]);
    for host in [
        "metadata.google.internal",
        "METADATA.google.internal.",
        "metadata",
        "instance-data",
    ] {
        let error = resolve_checked(host, 80, &policy).await.unwrap_err();
        assert_eq!(error.class(), "metadata_host", "{host}");
    }
}

#[tokio::test]
async fn literals_are_checked_without_dns() {
    let policy = EgressPolicy::default();
    let error = resolve_checked("0x7f000001", 5432, &policy)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        EgressError::Blocked {
            reason: Blocked::Loopback,
            ..
        }
    ));
    assert_eq!(
        resolve_checked("[2606:4700::1111]", 443, &policy)
            .await
            .unwrap(),
        vec![SocketAddr::new(ip("2606:4700::1111"), 443)]
    );
    // An allowed mapped literal is returned in its IPv4 form, ready for a bound IPv4 socket.
    let allowed = EgressPolicy::new(&nets("127.0.0.0/8"), &[]);
    assert_eq!(
        resolve_checked("::ffff:127.0.0.2", 5432, &allowed)
            .await
            .unwrap(),
        vec![SocketAddr::new(ip("127.0.0.2"), 5432)]
    );
}

#[tokio::test]
async fn localhost_resolves_to_loopback_and_is_refused() {
    let error = resolve_checked("localhost", 5432, &EgressPolicy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EgressError::Blocked {
                reason: Blocked::Loopback,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("`localhost` resolves to "));

    let allowed = EgressPolicy::new(&nets("127.0.0.0/8, ::1"), &[]);
    let addrs = resolve_checked("localhost", 5432, &allowed).await.unwrap();
    assert!(!addrs.is_empty());
    assert!(
        addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 5432)
    );
}

#[tokio::test]
async fn connect_leaves_from_the_bind_address() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let target = listener.local_addr().unwrap();
    let bind = [ip("::1"), ip("127.0.0.2")];
    let targets = [target];
    let (stream, accepted) = tokio::join!(
        connect_checked(&targets, &bind, Duration::from_secs(5)),
        listener.accept()
    );
    let stream = stream.unwrap();
    let (_, peer) = accepted.unwrap();
    assert_eq!(peer.ip(), ip("127.0.0.2"));
    assert_eq!(stream.local_addr().unwrap().ip(), ip("127.0.0.2"));
    assert!(stream.nodelay().unwrap());
}

#[tokio::test]
async fn connect_without_bind_uses_the_default_source() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let target = listener.local_addr().unwrap();
    // The first address refuses (nothing listens on port 1 of 127.0.0.3); the second answers.
    let refused = SocketAddr::new(ip("127.0.0.3"), 1);
    let targets = [refused, target];
    let (stream, accepted) = tokio::join!(
        connect_checked(&targets, &[], Duration::from_secs(5)),
        listener.accept()
    );
    stream.unwrap();
    assert_eq!(accepted.unwrap().1.ip(), ip("127.0.0.1"));
}

#[tokio::test]
async fn connect_refuses_a_family_without_a_bind_address() {
    let target = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9);
    let error = connect_checked(&[target], &[ip("127.0.0.2")], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), "no_source_address");
    let error = connect_checked(&[], &[], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), "no_address");
}

#[tokio::test]
async fn connect_reports_a_bind_address_that_is_not_local() {
    let target = SocketAddr::new(ip("127.0.0.1"), 9);
    let error = connect_checked(&[target], &[ip("192.0.2.1")], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.class(), "bind", "{error:?}");
}

#[test]
fn the_allow_line_keeps_what_is_listed_and_adds_each_address_once() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    assert_eq!(
        allow_line(&[], [ip("10.1.2.3")]),
        r#"egress_allow: ["10.1.2.3/32"]"#
    );
    assert_eq!(
        allow_line(
            &["192.168.0.0/16".to_string()],
            [
                ip("10.1.2.3"),
                ip("fd00::5"),
                ip("10.1.2.3"),
                ip("::ffff:10.1.2.3")
            ]
        ),
        r#"egress_allow: ["192.168.0.0/16", "10.1.2.3/32", "fd00::5/128"]"#
    );
}
