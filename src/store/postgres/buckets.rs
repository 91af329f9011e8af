//! The PostgreSQL store's shared rate-limit buckets (`store::buckets`): one row per held-back
//! key in the UNLOGGED table `rate_buckets`, taken by the `sluice_take_token` function in
//! one statement (the row is locked while the refill and the take are computed, so replicas
//! racing for the last token queue on it and exactly one gets it). UNLOGGED: a bucket is
//! not worth a WAL write and an fsync, and a server crash that empties the table only
//! refills every bucket.
//!
//! One connection of its own, opened on the store's runtime and called from the request's
//! task (a tokio-postgres client needs no runtime of its caller), so a check is one round
//! trip with no blocking thread; concurrent checks are pipelined on it. A lost connection is
//! replaced at the next check, at most once a second: in between, checks fail at once and
//! the limiter falls back to its in-process buckets (the `limits` module). Every minute the rows
//! of buckets full for a minute are deleted. Never logs.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_postgres::{Client, Statement};

use super::pool::open_client;
use super::settings::PgSettings;
use super::{PostgresStore, pg};
use crate::spec::rate::RateRule;
use crate::store::StoreError;
use crate::store::buckets::{BucketStore, SharedBuckets, outcome};

/// How long after a failed connection attempt the next one is made.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often full buckets are deleted, and how long past full a row is kept.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

const TAKE_SQL: &str = "SELECT allowed, tokens FROM sluice_take_token($1, $2, $3, $4)";

struct Connected {
    client: Client,
    take: Statement,
}

enum Link {
    Up(Arc<Connected>),
    /// No connection; the last attempt failed at this instant.
    Down(Option<Instant>),
}

/// The buckets in `rate_buckets`.
pub(super) struct PgBuckets {
    settings: PgSettings,
    runtime: tokio::runtime::Handle,
    link: Mutex<Link>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

impl PgBuckets {
    pub(super) fn new(settings: PgSettings, runtime: tokio::runtime::Handle) -> Arc<PgBuckets> {
        let buckets = Arc::new(PgBuckets {
            settings,
            runtime: runtime.clone(),
            link: Mutex::new(Link::Down(None)),
            connecting: tokio::sync::Mutex::new(()),
        });
        runtime.spawn(prune_forever(Arc::downgrade(&buckets)));
        buckets
    }

    fn current(&self) -> Option<Arc<Connected>> {
        match &*self.link.lock().unwrap_or_else(PoisonError::into_inner) {
            Link::Up(connected) if !connected.client.is_closed() => Some(connected.clone()),
            _ => None,
        }
    }

    /// The live connection, opening one when there is none (unless an attempt failed less
    /// than [`RECONNECT_AFTER`] ago).
    async fn connection(&self) -> Result<Arc<Connected>, StoreError> {
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        let _one = self.connecting.lock().await;
        if let Some(connected) = self.current() {
            return Ok(connected);
        }
        if let Link::Down(Some(failed)) = &*self.link.lock().unwrap_or_else(PoisonError::into_inner)
            && failed.elapsed() < RECONNECT_AFTER
        {
            return Err(StoreError::Unreachable(
                "the shared rate-limit buckets' connection is down",
            ));
        }
        match self.open().await {
            Ok(connected) => {
                let connected = Arc::new(connected);
                *self.link.lock().unwrap_or_else(PoisonError::into_inner) =
                    Link::Up(connected.clone());
                Ok(connected)
            }
            Err(error) => {
                *self.link.lock().unwrap_or_else(PoisonError::into_inner) =
                    Link::Down(Some(Instant::now()));
                Err(error)
            }
        }
    }

    async fn open(&self) -> Result<Connected, StoreError> {
        // The socket is registered with the store's runtime, which drives the connection.
        let opened = self.runtime.spawn(open_client(self.settings.clone()));
        let client = opened
            .await
            .map_err(|_| StoreError::Unreachable("the metadata store's connection task stopped"))?
            .map_err(pg("connecting for the shared rate limits"))?;
        let take = client
            .prepare(TAKE_SQL)
            .await
            .map_err(pg("preparing the rate-limit take"))?;
        Ok(Connected { client, take })
    }
}

impl SharedBuckets for PgBuckets {
    fn take<'a>(
        &'a self,
        key: &'a str,
        rule: RateRule,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(async move {
            let connected = self.connection().await?;
            let row = connected
                .client
                .query_one(
                    &connected.take,
                    &[&key, &f64::from(rule.burst), &rule.rate(), &now_ms],
                )
                .await
                .map_err(pg("taking a rate-limit token"))?;
            let allowed: bool = row.get(0);
            let tokens: f64 = row.get(1);
            Ok(outcome(rule, allowed, tokens))
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

/// Every [`PRUNE_EVERY`], deletes the rows of buckets that have been full for that long,
/// until the buckets are dropped.
async fn prune_forever(buckets: std::sync::Weak<PgBuckets>) {
    let mut ticks = tokio::time::interval(PRUNE_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(buckets) = buckets.upgrade() else {
            return;
        };
        if let Some(connected) = buckets.current() {
            let before = chrono::Utc::now().timestamp_millis() - PRUNE_EVERY.as_millis() as i64;
            // A failure is retried at the next tick; nothing depends on it.
            let _ = connected
                .client
                .execute("DELETE FROM rate_buckets WHERE full_at_ms < $1", &[&before])
                .await;
        }
    }
}

impl BucketStore for PostgresStore {
    fn shared_buckets(&self) -> Option<Arc<dyn SharedBuckets>> {
        let runtime = self.pool.handle()?;
        Some(
            self.buckets
                .get_or_init(|| PgBuckets::new(self.pool.settings().clone(), runtime))
                .clone(),
        )
    }
}
