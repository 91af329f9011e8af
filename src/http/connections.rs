//! The connection caps of the listener loop: how many connections may be open at once, in
//! all and from one client address, and the answer given to one over a cap.
//!
//! Counting happens at accept and at close, never per request: the total is an atomic, the
//! per-address counts a small map behind a mutex, touched by the accept loop and by each
//! connection as it ends (an entry goes when its count reaches zero, so the map holds only
//! addresses with open connections). A connection over a cap is answered at once, without
//! reading anything, and closed: over plain HTTP with a fixed 503 JSON error and
//! `Retry-After: 1`, over TLS by closing (a handshake is the work a cap saves).
//!
//! The address counted is the socket peer: an IPv4 address, or the /64 of an IPv6 one (one
//! host usually holds a whole /64). Peers listed as exempt (trusted reverse proxies, which
//! carry many clients) count toward the total only.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use super::{ApiError, RequestId};

/// Seconds a refused client is asked to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// The caps; 0 means no cap.
#[derive(Debug, Clone, Default)]
pub struct ConnectionLimits {
    /// Connections open at once, in all.
    pub max_total: usize,
    /// Connections open at once from one client address.
    pub max_per_ip: usize,
    /// Peers not counted per address (trusted reverse proxies).
    pub exempt: Vec<ipnet::IpNet>,
}

/// Which cap a refused connection was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerIp,
}

/// The open connections, in all and per client address.
#[derive(Debug)]
pub struct Connections {
    limits: ConnectionLimits,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `peer`, or says which cap it is over. The slot gives
    /// the place back when dropped (when the connection ends). Called by one task (the
    /// accept loop); slots are dropped by any.
    pub fn admit(self: &Arc<Connections>, peer: IpAddr) -> Result<Slot, Refusal> {
        let max_total = self.limits.max_total;
        if max_total != 0 && self.total.load(Ordering::Acquire) >= max_total {
            return Err(Refusal::Total);
        }
        let peer = peer.to_canonical();
        let key = (self.limits.max_per_ip != 0
            && !self.limits.exempt.iter().any(|net| net.contains(&peer)))
        .then(|| address_key(peer));
        if let Some(key) = key {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_ip.entry(key).or_insert(0);
            if *count >= self.limits.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *count += 1;
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            connections: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut per_ip = self
                .connections
                .per_ip
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = per_ip.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&key);
                }
            }
        }
        self.connections.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What is counted per address: an IPv4 address, or the /64 an IPv6 address is in.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

/// The whole answer to a connection over a cap: a 503 JSON error with `Retry-After`, and
/// `Connection: close`.
pub fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let message = match refusal {
        Refusal::Total => "the server has too many open connections; retry shortly",
        Refusal::PerIp => {
            "too many open connections from your address; reuse or close some, or retry shortly"
        }
    };
    let error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        message,
    );
    let mut body = Vec::with_capacity(192);
    body.extend_from_slice(b"{\"error\":");
    body.extend_from_slice(&error.body_json(RequestId::next().as_str()));
    body.push(b'}');
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: {RETRY_AFTER_SECS}\r\ncache-control: no-store\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// Answers a connection over a cap without waiting: one non-blocking write of `response`
/// (none over TLS), the write side shut, what the client already sent read off (so that
/// the close is a FIN, not a reset that could discard the answer), then the close.
pub fn refuse(stream: tokio::net::TcpStream, response: Option<&[u8]>) {
    let Ok(stream) = stream.into_std() else {
        return;
    };
    if let Some(response) = response {
        let _ = (&stream).write(response);
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    let _ = (&stream).read(&mut sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_total: usize, max_per_ip: usize, exempt: &[&str]) -> Arc<Connections> {
        Connections::new(ConnectionLimits {
            max_total,
            max_per_ip,
            exempt: exempt.iter().map(|n| n.parse().unwrap()).collect(),
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_count_per_address_and_in_all_and_give_places_back() {
        let connections = limits(4, 2, &[]);
        let a1 = connections.admit(ip("192.0.2.1")).unwrap();
        let _a2 = connections.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            connections.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerIp
        );
        // The IPv4-mapped spelling is the same client.
        assert_eq!(
            connections.admit(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refusal::PerIp
        );
        let _b1 = connections.admit(ip("192.0.2.2")).unwrap();
        let _b2 = connections.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(connections.open(), 4);
        assert_eq!(
            connections.admit(ip("192.0.2.3")).unwrap_err(),
            Refusal::Total
        );
        drop(a1);
        assert_eq!(connections.open(), 3);
        let _a3 = connections.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(connections.open(), 4);
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_address() {
        let connections = limits(0, 2, &[]);
        let _one = connections.admit(ip("2001:db8:1:2::1")).unwrap();
        let _two = connections.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            connections.admit(ip("2001:db8:1:2::3")).unwrap_err(),
            Refusal::PerIp
        );
        connections.admit(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn exempt_peers_and_zero_caps_are_not_counted_per_address() {
        let connections = limits(3, 1, &["10.0.0.0/8"]);
        let slots: Vec<_> = (0..3)
            .map(|_| connections.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(
            connections.admit(ip("10.1.2.3")).unwrap_err(),
            Refusal::Total
        );
        drop(slots);
        assert!(connections.per_ip.lock().unwrap().is_empty());

        let unlimited = limits(0, 0, &[]);
        let slots: Vec<_> = (0..1000)
            .map(|_| unlimited.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(unlimited.open(), 1000);
        drop(slots);
        assert_eq!(unlimited.open(), 0);
    }

    #[test]
    fn the_refusal_is_a_complete_503_json_answer() {
        for refusal in [Refusal::Total, Refusal::PerIp] {
            let response = String::from_utf8(refusal_response(refusal)).unwrap();
            let (head, body) = response.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
            assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
            assert!(head.contains("\r\nconnection: close"), "{head}");
            assert!(
                head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
                "{head}"
            );
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(json["error"]["code"], "too_many_connections");
            assert!(json["error"]["request_id"].is_string());
        }
    }
}
