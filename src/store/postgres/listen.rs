//! Catalog change notices across replicas: `LISTEN sluice_catalog` on a connection of its
//! own, kept open on the store's runtime, reconnecting (every second) when it is lost.
//!
//! Every committed catalog apply runs `pg_notify('sluice_catalog', revision)` in its
//! transaction; each notification moves the watch value on, and so does every (re)connection,
//! since notices sent while the listener was away are lost. The receiver only learns that
//! the revision may have changed: the instance reads it and reloads through its usual path.
//! A missed notice costs at most the periodic check (`SLUICE_CATALOG_RELOAD_SECS`). Never
//! logs.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use super::settings::PgSettings;
use super::{CATALOG_CHANNEL, PostgresStore};
use crate::store::catalog::CatalogChanges;

/// How long the listener waits before connecting again.
const RETRY: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// The watch of catalog notices, started on the first call.
    pub(super) fn catalog_listener(&self) -> CatalogChanges {
        self.changes
            .get_or_init(|| {
                let (sender, receiver) = watch::channel(0);
                self.pool
                    .spawn(listen_forever(self.pool.settings().clone(), sender));
                receiver
            })
            .clone()
    }
}

async fn listen_forever(settings: PgSettings, changes: watch::Sender<u64>) {
    loop {
        match settings.tls.clone() {
            Some(tls) => {
                if let Ok((client, connection)) = settings.config.connect(tls).await {
                    listen(client, connection, &changes).await;
                }
            }
            None => {
                if let Ok((client, connection)) = settings.config.connect(NoTls).await {
                    listen(client, connection, &changes).await;
                }
            }
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Listens on one connection until it is lost or nobody watches any more.
async fn listen<S, T>(
    client: Client,
    mut connection: Connection<S, T>,
    changes: &watch::Sender<u64>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
    // Polling for messages is what drives the connection, so it runs beside the LISTEN.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notices.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    if client
        .batch_execute(&format!("LISTEN {CATALOG_CHANNEL}"))
        .await
        .is_ok()
    {
        // Anything applied while no listener was connected went unnoticed.
        changes.send_modify(|count| *count = count.wrapping_add(1));
        while received.recv().await.is_some() {
            changes.send_modify(|count| *count = count.wrapping_add(1));
            if changes.is_closed() {
                break;
            }
        }
    }
    driver.abort();
}
