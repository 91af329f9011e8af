//! The listener loop: HTTP/1.1 with keep-alive, optional TLS, a header read timeout (slow
//! clients cannot hold a connection open without sending a request), a body read timeout
//! (nor by trickling a body), caps on open connections in all and per client address
//! (`connections`), a configurable listen backlog, answers to clients that half-close
//! after their request, a watch for clients that reset their connection mid-request
//! (`client_reset`: hyper does not read while a request is handled, so it cannot see
//! them), and a graceful drain on shutdown.
//!
//! Nothing here runs per request but what hyper does, one clock read for the body
//! deadline and reference counts for the service and the reset watch: connections are
//! counted, and their watch made, at accept and at close.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tower::Service;

use super::body::TimedBody;
use super::client_reset::ClientReset;
use super::connections::{self, ConnectionLimits, Connections, Refusal};
use super::drain::Drain;

/// Settings of the listener loop.
#[derive(Clone)]
pub struct ServerSettings {
    /// Time to send the request headers; also how long an idle keep-alive connection stays.
    pub header_read_timeout: Duration,
    /// Time to send the whole body once the headers are in (past it, reading fails with
    /// [`super::body::BodyTimeout`], answered 408).
    pub body_read_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Terminate TLS on accepted connections (the handshake must finish within the header
    /// read timeout).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Caps on open connections.
    pub limits: ConnectionLimits,
}

/// Binds `address` with a listen queue of `backlog` connections: those the kernel has
/// completed but the loop has not accepted yet (a burst of connects waits there, not in SYN
/// retries). The kernel caps it at `net.core.somaxconn`.
pub fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std's bind does: a restart can bind while old connections linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// How often at most a refused connection is logged at `warn` (each one is at `debug`).
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What a listener serves: each request is handed to `serve`, whose future owns what it
/// needs (for the instance's [`Front::listener_service`](crate::instance::Front::listener_service),
/// a reference count). A tower service's `call` takes `&mut self` and must clone itself
/// again for a future that outlives the call.
///
/// hyper keeps a connection's in-flight future in one allocation made for the connection
/// and sized to the future, so a `Future` type that is the handler's own future (not a box
/// of it) costs no allocation per request, and each open connection holds that much memory
/// for its life: see [`ServeFn`].
pub trait Serve: Clone + Send + 'static {
    type Future: Future<Output = Result<Response, Infallible>> + Send + 'static;

    fn serve(&self, request: Request) -> Self::Future;
}

impl Serve for axum::Router {
    type Future = axum::routing::future::RouteFuture<Infallible>;

    /// A router is always ready.
    fn serve(&self, request: Request) -> Self::Future {
        self.clone().call(request)
    }
}

/// A function from a request to its answer's future, served as it is: its future type is
/// the function's own, which an `async fn` cannot name.
#[derive(Clone)]
pub struct ServeFn<F>(pub F);

impl<F, Fut> Serve for ServeFn<F>
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    type Future = Fut;

    fn serve(&self, request: Request) -> Fut {
        (self.0)(request)
    }
}

/// Serves `service` (an instance's
/// [`Front::listener_service`](crate::instance::Front::listener_service), or a router) on
/// `listener` until `shutdown` resolves, then stops accepting, lets in-flight requests
/// finish (up to the grace period) and returns.
pub async fn run<S: Serve>(
    listener: TcpListener,
    service: S,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        // A client may shut its write side once its request is sent (`nc -N`,
        // `shutdown(SHUT_WR)`) and still gets the answer. The price: hyper reads nothing
        // while a request is handled, so a client that closes mid-request is noticed when
        // its answer is written. One that resets the connection is noticed at once, by the
        // `ClientReset` watch each request carries.
        .half_close(true);
    let connections = Connections::new(settings.limits.clone());
    let mut refusals = RefusalLog::default();
    let drain = Drain::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %error, "Accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let slot = match connections.admit(peer.ip()) {
                    Ok(slot) => slot,
                    Err(refusal) => {
                        let response = connections::refusal_response(refusal);
                        let plain = settings.tls.is_none();
                        connections::refuse(stream, plain.then_some(response.as_slice()));
                        refusals.record(refusal, peer, connections.open());
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = ConnectionService {
                    service: service.clone(),
                    peer: PeerAddr(peer),
                    reset: ClientReset::watch(&stream),
                    body_read_timeout: settings.body_read_timeout,
                };
                let builder = builder.clone();
                let member = drain.join();
                let tls = settings.tls.clone();
                let handshake_timeout = settings.header_read_timeout;
                tokio::spawn(async move {
                    // Counted until the connection is gone.
                    let _slot = slot;
                    let result = match tls {
                        None => {
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            member
                                .serve(connection, |connection| connection.graceful_shutdown())
                                .await
                        }
                        Some(acceptor) => {
                            let accepted =
                                tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
                            let stream = match accepted {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    tracing::debug!(error = %error, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                            // A CA's TLS-ALPN-01 validation ends with the handshake (RFC 8737).
                            if stream.get_ref().1.alpn_protocol()
                                == Some(super::tls::ACME_TLS_ALPN)
                            {
                                return;
                            }
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            member
                                .serve(connection, |connection| connection.graceful_shutdown())
                                .await
                        }
                    };
                    if let Err(error) = result {
                        tracing::debug!(error = %error, "Connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("Shutting down: draining in-flight requests");
    match tokio::time::timeout(settings.shutdown_grace, drain.shutdown()).await {
        Ok(()) => tracing::info!("All connections drained"),
        Err(_) => tracing::warn!(
            grace_secs = settings.shutdown_grace.as_secs(),
            "Grace period over; closing remaining connections"
        ),
    }
}

/// The service as one connection serves it: each request gets the peer address and the
/// connection's reset watch as extensions, and its body the body read deadline.
#[derive(Clone)]
struct ConnectionService<S> {
    service: S,
    peer: PeerAddr,
    reset: ClientReset,
    body_read_timeout: Duration,
}

impl<S: Serve> hyper::service::Service<Request<Incoming>> for ConnectionService<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer);
        request.extensions_mut().insert(self.reset.clone());
        let request = request.map(|body| Body::new(TimedBody::new(body, self.body_read_timeout)));
        self.service.serve(request)
    }
}

/// Logs refused connections: each at `debug`, and at most every ten seconds a `warn` with
/// how many were refused since, so a flood does not flood the log.
#[derive(Default)]
struct RefusalLog {
    last_warning: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn record(&mut self, refusal: Refusal, peer: SocketAddr, open: usize) {
        self.since += 1;
        let cap = match refusal {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        };
        tracing::debug!(peer = %peer.ip(), cap, open, "Connection refused: over a connection cap");
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY)
        {
            tracing::warn!(
                refused = self.since,
                cap,
                open,
                "Connections refused: over a connection cap (SLUICE_MAX_CONNECTIONS, SLUICE_MAX_CONNECTIONS_PER_IP)"
            );
            self.last_warning = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// The TCP peer of a connection, available to handlers as an extension.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
