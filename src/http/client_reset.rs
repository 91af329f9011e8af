//! Noticing, while a request is handled, that its client reset the connection.
//!
//! The listener serves with hyper's `half_close(true)`, so that a client which shuts its
//! write side once its request is sent still gets the answer (issue #11, defect 6). The
//! price is that hyper reads nothing from a connection while it handles a request: a client
//! that *closes* (FIN) cannot be told from one that only half-closed, and is noticed when its
//! answer is written. A client that *resets* the connection (RST: an abortive close with
//! `SO_LINGER` 0, a killed process whose socket still held unread data, most browser
//! aborts) is different: the kernel records an error on the socket. [`ClientReset`] waits
//! for exactly that error, so a plane can stop work nobody will read (the gateway cancels
//! the statement).
//!
//! How: at accept, the connection's socket descriptor is duplicated and the duplicate is
//! registered with the runtime, on Linux for urgent data only (`EPOLLPRI`, which TCP peers do not
//! send); the kernel reports an error on any registration, whatever it asked for. Nothing
//! is ever read or written through it, so hyper's own reads and writes are untouched, and
//! a FIN, pipelined bytes, each request's bytes or free send space raise no event on it: a
//! registration for reading (as a `TcpStream` makes) would put a second event in the
//! runtime's poll for every request. Each open connection thus holds two descriptors. Per
//! request the cost is a reference count; per connection a `dup`, a registration and a
//! close.
//!
//! Must never read from or write to the socket, nor take a half-close for a reset. Where a
//! socket cannot be watched (no Unix, no descriptor left), [`ClientReset::happened`] never
//! resolves and requests run to their end, as without the watch.

use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The watched duplicate of a connection's socket.
#[cfg(unix)]
type Watched = tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>;
#[cfg(not(unix))]
type Watched = ();

/// The watch on one connection, handed to each of its requests as an extension.
#[derive(Clone, Debug, Default)]
pub struct ClientReset {
    socket: Option<Arc<Watched>>,
}

impl ClientReset {
    /// Watches `stream` (a duplicate of its descriptor); not watched if that fails.
    pub fn watch(stream: &TcpStream) -> ClientReset {
        match duplicate(stream) {
            Ok(socket) => ClientReset {
                socket: Some(Arc::new(socket)),
            },
            Err(error) => {
                tracing::debug!(error = %error, "Cannot watch a connection for resets");
                ClientReset::default()
            }
        }
    }

    /// A watch that never fires (requests without a socket, such as in-process tests).
    pub fn none() -> ClientReset {
        ClientReset::default()
    }

    /// Resolves once the client has reset the connection; never resolves otherwise (a FIN,
    /// a half-close, an idle or a healthy connection).
    pub async fn happened(&self) {
        let Some(socket) = &self.socket else {
            return std::future::pending().await;
        };
        wait_for_error(socket).await
    }
}

/// Resolves when the kernel reports an error on `socket`; never when the runtime is going
/// away (nothing to report).
#[cfg(unix)]
async fn wait_for_error(socket: &Watched) {
    // Only error readiness is asked for: the hang-up after a FIN does not wake this.
    match socket.ready(Interest::ERROR).await {
        Ok(ready) if ready.ready().is_error() => {}
        _ => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_error(_socket: &Watched) {
    std::future::pending().await
}

#[cfg(unix)]
fn duplicate(stream: &TcpStream) -> std::io::Result<Watched> {
    use std::os::fd::AsFd;
    // A duplicate shares the file status flags, so it is non-blocking already, as the
    // runtime requires; nothing is ever read through it anyway.
    let descriptor = stream.as_fd().try_clone_to_owned()?;
    // Tokio deprecates this constructor for descriptor holders that could hand out another
    // descriptor later (its replacement is `unsafe`, which this crate forbids); an
    // `OwnedFd` owns exactly one for its life.
    #[allow(deprecated)]
    tokio::io::unix::AsyncFd::with_interest(descriptor, REGISTERED)
}

/// What the duplicate is registered for. Errors are reported whatever the interest. On
/// Linux, urgent data (`EPOLLPRI`) is the interest that no request's bytes raise (see the
/// module docs); other systems have no such interest in tokio, and the registration for
/// errors alone is one for reading there, as a `TcpStream`'s would be.
#[cfg(all(unix, any(target_os = "linux", target_os = "android")))]
const REGISTERED: Interest = Interest::PRIORITY;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const REGISTERED: Interest = Interest::ERROR;

#[cfg(not(unix))]
fn duplicate(_stream: &TcpStream) -> std::io::Result<Watched> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "watching for resets needs Unix descriptors",
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair: (the server's accepted stream, the client's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(address).await.unwrap() });
        let (server, _) = listener.accept().await.unwrap();
        (server, client.await.unwrap())
    }

    async fn fires_within(watch: &ClientReset, limit: Duration) -> bool {
        tokio::time::timeout(limit, watch.happened()).await.is_ok()
    }

    #[tokio::test]
    async fn a_reset_is_noticed() {
        let (server, client) = pair().await;
        let watch = ClientReset::watch(&server);
        assert!(!fires_within(&watch, Duration::from_millis(50)).await);
        client.set_zero_linger().unwrap();
        drop(client);
        assert!(fires_within(&watch, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_half_close_bytes_and_a_close_are_not_resets() {
        let (mut server, mut client) = pair().await;
        let watch = ClientReset::watch(&server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        assert!(!fires_within(&watch, Duration::from_millis(100)).await);
        // The watch read nothing: every byte is still there for the server.
        let mut request = Vec::new();
        server.read_to_end(&mut request).await.unwrap();
        assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
        // The server can still answer the half-closed client.
        server.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
        drop(client);
        assert!(!fires_within(&watch, Duration::from_millis(100)).await);
    }

    #[tokio::test]
    async fn no_watch_never_fires() {
        assert!(!fires_within(&ClientReset::none(), Duration::from_millis(20)).await);
    }
}
