//! The listener loop: HTTP/1.1 with keep-alive, optional TLS, a header read timeout (slow
//! clients cannot hold a connection open without sending a request), and a graceful drain on
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Settings of the listener loop.
#[derive(Clone)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// Terminate TLS on accepted connections (the handshake must finish within the header
    /// read timeout).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to the grace period) and returns.
pub async fn run(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
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
                let _ = stream.set_nodelay(true);
                // Around the router as a whole (`Router::layer` would wrap every route).
                let service = TowerToHyperService::new(tower::Layer::layer(
                    &axum::Extension(PeerAddr(peer)),
                    router.clone(),
                ));
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = settings.tls.clone();
                let handshake_timeout = settings.header_read_timeout;
                tokio::spawn(async move {
                    let result = match tls {
                        None => {
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(connection).await
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
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(connection).await
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
    match tokio::time::timeout(settings.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("All connections drained"),
        Err(_) => tracing::warn!(
            grace_secs = settings.shutdown_grace.as_secs(),
            "Grace period over; closing remaining connections"
        ),
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
