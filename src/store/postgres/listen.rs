//! Change notices across replicas: `LISTEN sluice_catalog` and `LISTEN sluice_auth` on a
//! connection of its own, kept open on the store's runtime, reconnecting (every second) when
//! it is lost.
//!
//! Every committed catalog apply runs `pg_notify('sluice_catalog', revision)` in its
//! transaction; each notification moves the catalog watch on, and so does every
//! (re)connection, since notices sent while the listener was away are lost. The receiver
//! only learns that the revision may have changed: the instance reads it and reloads through
//! its usual path. A missed notice costs at most the periodic check
//! (`SLUICE_CATALOG_RELOAD_SECS`).
//!
//! The account triggers (migration 8) notify `sluice_auth` with `s:<session token hash>`
//! (a session deleted), `u:<user id>` (a user changed or deleted) or `k:<key id>` (an API
//! key revoked, changed or deleted), whoever made the change (any replica, the CLI, SQL by
//! hand). They go out as [`AuthChange`]s on a broadcast channel, with
//! [`AuthChange::Listening`] after each (re)connection and [`AuthChange::Lost`] when the
//! connection goes: a cache of accounts must not trust itself in between. Never logs (the
//! payloads name sessions by their hash and accounts by id, and stay in memory).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use super::settings::PgSettings;
use super::{AUTH_CHANNEL, CATALOG_CHANNEL, PostgresStore};
use crate::store::catalog::CatalogChanges;
use crate::store::sessions::{AuthChange, AuthChanges};

/// How long the listener waits before connecting again.
const RETRY: Duration = Duration::from_secs(1);
/// Account notices kept for a slow receiver; one that falls further behind is told it
/// lagged and must forget everything (`broadcast`'s `Lagged`).
const AUTH_BACKLOG: usize = 4096;

/// The two feeds of the one listening connection.
pub(super) struct Notices {
    catalog: CatalogChanges,
    auth: broadcast::Sender<AuthChange>,
}

impl PostgresStore {
    fn notices(&self) -> &Notices {
        self.notices.get_or_init(|| {
            let (catalog_sender, catalog) = watch::channel(0);
            let (auth, _) = broadcast::channel(AUTH_BACKLOG);
            self.pool.spawn(listen_forever(
                self.pool.settings().clone(),
                catalog_sender,
                auth.clone(),
            ));
            Notices { catalog, auth }
        })
    }

    /// The watch of catalog notices, started on the first call.
    pub(super) fn catalog_listener(&self) -> CatalogChanges {
        self.notices().catalog.clone()
    }

    /// A receiver of account notices, the listener started on the first call.
    pub(super) fn auth_listener(&self) -> AuthChanges {
        self.notices().auth.subscribe()
    }
}

async fn listen_forever(
    settings: PgSettings,
    catalog: watch::Sender<u64>,
    auth: broadcast::Sender<AuthChange>,
) {
    loop {
        match settings.tls.clone() {
            Some(tls) => {
                if let Ok((client, connection)) = settings.config.connect(tls).await {
                    listen(client, connection, &catalog, &auth).await;
                }
            }
            None => {
                if let Ok((client, connection)) = settings.config.connect(NoTls).await {
                    listen(client, connection, &catalog, &auth).await;
                }
            }
        }
        if catalog.is_closed() && auth.receiver_count() == 0 {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// What one notification says.
fn auth_change(payload: &str) -> Option<AuthChange> {
    let (kind, id) = payload.split_once(':')?;
    let id = id.to_owned();
    match kind {
        "s" => Some(AuthChange::Session(id)),
        "u" => Some(AuthChange::User(id)),
        "k" => Some(AuthChange::ApiKey(id)),
        _ => None,
    }
}

/// Listens on one connection until it is lost or nobody watches any more.
async fn listen<S, T>(
    client: Client,
    mut connection: Connection<S, T>,
    catalog: &watch::Sender<u64>,
    auth: &broadcast::Sender<AuthChange>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (notices, mut received) = tokio::sync::mpsc::unbounded_channel();
    // Polling for messages is what drives the connection, so it runs beside the LISTEN.
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notice)) => {
                    // `None` stands for a catalog notice; an account notice that does
                    // not parse is dropped.
                    let change = if notice.channel() == AUTH_CHANNEL {
                        match auth_change(notice.payload()) {
                            Some(change) => Some(change),
                            None => continue,
                        }
                    } else {
                        None
                    };
                    if notices.send(change).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    if client
        .batch_execute(&format!("LISTEN {CATALOG_CHANNEL}; LISTEN {AUTH_CHANNEL}"))
        .await
        .is_ok()
    {
        // Anything changed while no listener was connected went unnoticed.
        catalog.send_modify(|count| *count = count.wrapping_add(1));
        let _ = auth.send(AuthChange::Listening);
        while let Some(change) = received.recv().await {
            match change {
                Some(change) => {
                    let _ = auth.send(change);
                }
                None => catalog.send_modify(|count| *count = count.wrapping_add(1)),
            }
            if catalog.is_closed() && auth.receiver_count() == 0 {
                break;
            }
        }
        let _ = auth.send(AuthChange::Lost);
    }
    driver.abort();
}
