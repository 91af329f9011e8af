//! The listener loop against slow, odd and too many clients, through real sockets: the body
//! read deadline (408), a client that half-closes after its request, the connection caps
//! (total and per client address, refused at accept with a 503), the listen backlog, and
//! hundreds of clients trickling request bodies into the real `sluice` binary while its
//! memory is measured.
//!
//! Clients connect from several loopback addresses (127.0.0.x) to stand for different
//! client IPs.

use crate::common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::served::{Served, sluice_with_test_key};
use common::*;
use sluice::spec::CatalogSpec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A gateway with an empty catalog (health, readiness and the account routes).
async fn gateway(env: &[(&str, &str)]) -> TestGateway {
    TestGateway::start_spec(CatalogSpec::default(), env).await
}

/// The loopback address `127.0.0.<n>`, one client IP per `n`.
fn client_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Connects to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from.into(), 0))
        .expect("bind a loopback source address");
    let stream = socket.connect(to).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// One response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Reads one response (head, then a `Content-Length` body) within `limit`; `None` when the
/// connection closed, failed or stayed silent first.
async fn read_response(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Option<Raw> {
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        };
        let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut raw = Raw {
            status,
            head,
            body: String::new(),
        };
        let length: usize = raw.header("content-length")?.parse().ok()?;
        while received.len() < head_end + length {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
        raw.body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
        Some(raw)
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// Whether the peer closes the connection (EOF or reset) within `limit`.
async fn closes_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

/// `GET /healthz` on a connection that stays open: proves the server accepted it and
/// counts it.
async fn healthy(stream: &mut TcpStream) -> bool {
    stream.write_all(HEALTHZ).await.is_ok()
        && read_response(stream, Duration::from_secs(5))
            .await
            .is_some_and(|r| r.status == 200)
}

#[tokio::test]
async fn a_body_slower_than_the_body_deadline_gets_a_408_and_the_connection_closes() {
    let gateway = gateway(&[("SLUICE_BODY_READ_TIMEOUT_MS", "500")]).await;
    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{";

    // One byte every 100 ms: the body would take ten seconds.
    let stream = connect_from(client_ip(1), gateway.address).await;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let response = read_response(&mut reader, Duration::from_secs(3))
        .await
        .expect("no answer within 3 s to a body trickled past a 500 ms deadline");
    let waited = started.elapsed();
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    let json = response.json();
    assert_eq!(json["error"]["code"], "request_timeout", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("500 ms"), "{message}");
    assert!(json["error"]["request_id"].is_string(), "{json}");
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(2),
        "answered after {waited:?}"
    );
    assert!(
        closes_within(&mut reader, Duration::from_secs(2)).await,
        "the connection stayed open after the 408"
    );
    trickle.abort();

    // A body that arrives in one piece within the deadline, even late, is read as usual.
    let mut stream = connect_from(client_ip(1), gateway.address).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let body = r#""email":"nobody@example.com","password":"not the password"}"#;
    stream
        .write_all(format!("{body:<99}").as_bytes())
        .await
        .unwrap();
    let response = read_response(&mut stream, Duration::from_secs(10))
        .await
        .expect("an answer to a complete body");
    assert_eq!(response.status, 401, "{response:?}");
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_still_gets_the_answer() {
    let gateway = gateway(&[]).await;
    let login = r#"{"email":"nobody@example.com","password":"not the password"}"#;
    let requests = [
        (HEALTHZ.to_vec(), 200),
        (
            format!(
                "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{login}",
                login.len()
            )
            .into_bytes(),
            401,
        ),
    ];
    for (request, status) in requests {
        let mut stream = connect_from(client_ip(1), gateway.address).await;
        stream.write_all(&request).await.unwrap();
        // shutdown(SHUT_WR), as `nc -N` does: the request is complete, nothing more comes.
        stream.shutdown().await.unwrap();
        let response = read_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no answer to a half-closed {}",
                    String::from_utf8_lossy(&request[..20])
                )
            });
        assert_eq!(response.status, status, "{response:?}");
        assert!(response.json().is_object(), "{response:?}");
        assert!(
            closes_within(&mut stream, Duration::from_secs(2)).await,
            "the connection stayed open after answering a half-closed client"
        );
    }
}

/// Asserts that a connection is refused at accept: a 503 JSON error with `Retry-After`,
/// then the close, all at once.
async fn assert_refused(what: &str, stream: &mut TcpStream, code: &str) {
    let started = Instant::now();
    let response = read_response(stream, Duration::from_secs(2))
        .await
        .unwrap_or_else(|| panic!("{what}: no 503 within 2 s (the connection was served?)"));
    assert_eq!(response.status, 503, "{what}: {response:?}");
    assert_eq!(response.header("retry-after"), Some("1"), "{what}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let json = response.json();
    assert_eq!(json["error"]["code"], code, "{what}: {json}");
    assert!(json["error"]["request_id"].is_string(), "{what}: {json}");
    assert!(
        closes_within(stream, Duration::from_secs(1)).await,
        "{what}: still open after the 503"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{what}: took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_over_the_caps_are_refused_at_accept_and_counted_back_when_they_close() {
    let gateway = gateway(&[
        ("SLUICE_MAX_CONNECTIONS", "3"),
        ("SLUICE_MAX_CONNECTIONS_PER_IP", "2"),
    ])
    .await;
    let (one, two) = (client_ip(1), client_ip(2));

    let mut first = connect_from(one, gateway.address).await;
    let mut second = connect_from(one, gateway.address).await;
    assert!(healthy(&mut first).await, "first connection from .1");
    assert!(healthy(&mut second).await, "second connection from .1");
    let mut third = connect_from(one, gateway.address).await;
    assert_refused(
        "third connection from .1",
        &mut third,
        "too_many_connections",
    )
    .await;

    // Another address still gets in, up to the total.
    let mut other = connect_from(two, gateway.address).await;
    assert!(healthy(&mut other).await, "first connection from .2");
    let mut over = connect_from(two, gateway.address).await;
    assert_refused(
        "fourth connection in all",
        &mut over,
        "too_many_connections",
    )
    .await;

    // A closed connection gives its place back, to its address and to the total.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(one, gateway.address).await;
        if healthy(&mut again).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection's place was not given back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((second, other));
}

/// How many of `count` connection attempts a bound listener that never accepts queues up.
async fn queued_connections(backlog: Option<&str>, count: usize) -> usize {
    let env: Vec<(&str, &str)> = backlog
        .map(|b| vec![("SLUICE_LISTEN_BACKLOG", b)])
        .unwrap_or_default();
    let instance = test_instance(
        CatalogSpec::default(),
        &env,
        std::sync::Arc::new(sluice::clock::SystemClock),
    )
    .await;
    let listener = instance.bind().await.expect("bind");
    let address = listener.local_addr().unwrap();
    // Each attempt waits at most half a second: a SYN the kernel drops because the accept
    // queue is full is retried only after a second.
    let attempts: Vec<_> = (0..count)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address))
                    .await
                    .ok()
                    .and_then(Result::ok)
            })
        })
        .collect();
    let mut clients = Vec::new();
    for attempt in attempts {
        clients.extend(attempt.await.unwrap());
    }
    // What the kernel queued is what `accept` now hands over at once.
    let mut queued = 0;
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await {
        queued += 1;
    }
    drop(clients);
    queued
}

#[tokio::test]
async fn the_listen_backlog_holds_a_burst_of_connections() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("read net.core.somaxconn")
        .trim()
        .parse()
        .unwrap();
    // The default queue holds a burst of 600 (the kernel caps it at somaxconn).
    let burst = 600;
    let queued = queued_connections(None, burst).await;
    let expected = burst.min(somaxconn + 1);
    assert!(
        queued >= expected,
        "{queued} of a burst of {burst} connections queued (somaxconn {somaxconn})"
    );
    // The setting is what the kernel gets: a queue of n holds n + 1.
    let queued = queued_connections(Some("200"), 400).await;
    assert!(
        (200.min(somaxconn)..=201).contains(&queued),
        "{queued} connections queued with a backlog of 200"
    );
}

/// The resident set of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Trickling clients: connections opened from four client addresses, each sending login
/// headers and then one body byte per interval; a trickler that gets cut off stops.
const TRICKLERS: usize = 400;
const TRICKLE_EVERY: Duration = Duration::from_millis(100);
const TRICKLE_FOR: Duration = Duration::from_secs(20);
const RSS_CAP_KIB: u64 = 128 * 1024;

/// The slow-body attack of issue #11 on the real binary: hundreds of connections each
/// trickling a login body one byte at a time. The body deadline is set long here so that
/// nothing is cut: what is measured is what the connections and the bytes they sent cost.
/// The resident set must stay under 128 MiB, a normal request must be answered in under a
/// second meanwhile, and the memory must be given back once the tricklers leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_trickled_bodies_keep_memory_bounded_and_the_server_responsive() {
    let home = tempfile::tempdir().unwrap();
    let mut server = Served::start(
        sluice_with_test_key(home.path(), &["serve"])
            .env("SLUICE_BODY_READ_TIMEOUT_MS", "120000")
            .env("SLUICE_LOG_LEVEL", "warn"),
    )
    .await;
    let pid = server.pid();
    let address = server.address;
    let probe = |n: u8| async move {
        let started = Instant::now();
        let mut stream = connect_from(client_ip(n), address).await;
        assert!(healthy(&mut stream).await, "the probe was not answered");
        started.elapsed()
    };
    for _ in 0..20 {
        probe(9).await;
    }
    let baseline = rss_kib(pid);

    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 60000\r\n\r\n";
    let until = Instant::now() + TRICKLE_FOR;
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|i| {
            tokio::spawn(async move {
                let from = client_ip(1 + (i % 4) as u8);
                let mut stream = connect_from(from, address).await;
                stream.write_all(head.as_bytes()).await.unwrap();
                // Spread the writes over the interval.
                tokio::time::sleep(TRICKLE_EVERY * i as u32 / TRICKLERS as u32).await;
                let mut every = tokio::time::interval(TRICKLE_EVERY);
                let mut sent = 0usize;
                while Instant::now() < until {
                    every.tick().await;
                    if stream.write_all(b" ").await.is_err() {
                        return (sent, false);
                    }
                    sent += 1;
                }
                // Still open at the end: not cut, not refused.
                let open = !closes_within(&mut stream, Duration::from_millis(1)).await;
                (sent, open)
            })
        })
        .collect();

    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_kib(pid));
        slowest = slowest.max(probe(9).await);
    }
    let mut bytes = 0;
    let mut open = 0;
    for trickler in tricklers {
        let (sent, still_open) = trickler.await.unwrap();
        bytes += sent;
        open += usize::from(still_open);
    }
    peak = peak.max(rss_kib(pid));

    // The tricklers are gone: their connections close, their memory goes back.
    let mut after = rss_kib(pid);
    let settle = Instant::now() + Duration::from_secs(5);
    while after > baseline + 16 * 1024 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss_kib(pid);
    }
    let figures = format!(
        "{TRICKLERS} tricklers, one byte every {TRICKLE_EVERY:?} for {TRICKLE_FOR:?}: {bytes} \
         body bytes sent, {open} connections still open at the end; RSS baseline {} KiB, \
         peak {} KiB, after {} KiB; slowest probe {slowest:?}",
        baseline, peak, after
    );
    eprintln!("{figures}");
    assert!(server.is_running(), "{figures}\n{}", server.output());
    assert_eq!(
        open, TRICKLERS,
        "connections were cut or refused: {figures}"
    );
    assert!(peak < RSS_CAP_KIB, "RSS over 128 MiB: {figures}");
    assert!(
        slowest < Duration::from_secs(1),
        "a normal request waited: {figures}"
    );
    assert!(
        after <= baseline + 16 * 1024,
        "RSS did not fall back: {figures}"
    );
}
