//! The connection slots of one SQL datasource: at most `pool_size` statements hold a
//! connection at once, and a statement waits for a slot at most `pool_wait_ms` (and never
//! past its own timeout). One that cannot get a slot in time is refused as
//! [`DatasourceError::Busy`] (503 `datasource_busy`, `Retry-After: 1`), before any
//! connection is asked for.
//!
//! Owns the admission of statements to a pool. The drivers' own pools stay as a second,
//! never reached bound: every connection request they see already holds a slot. A slot is
//! held by the statement's producer until its connection is back in the pool or
//! discarded (a cancelled statement keeps its slot until the cancel has been sent), so a
//! pool is never asked for more connections than it may open.
//!
//! Must never wait without a bound, and never hand out more slots than the pool size.
//!
//! [`Slots::usage`] reads how many slots are taken and how many statements wait, for the
//! metrics: the wait is counted only on the slow path (no free slot), never on the common one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::DatasourceError;

/// How long a statement waits for a connection slot when neither the catalog
/// (`pool_wait_ms`) nor the environment (`SLUICE_POOL_WAIT_MS`) says.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_millis(5000);

/// The slots of one datasource.
#[derive(Debug)]
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    size: usize,
    wait: Duration,
    /// Statements waiting for a slot now.
    waiting: AtomicUsize,
}

/// How a datasource's slots are used at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Statements that may hold a connection at once (the pool size).
    pub size: usize,
    /// Statements holding one now.
    pub in_use: usize,
    /// Statements waiting for one now.
    pub waiting: usize,
}

/// Counts one waiting statement while it lives (so a wait cut short by a dropped request
/// is uncounted too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One statement's hold on a connection of its datasource; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Slots {
    /// `size` slots (at least one), each waited for at most `wait`.
    pub(crate) fn new(size: usize, wait: Duration) -> Slots {
        let size = size.max(1);
        Slots {
            permits: Arc::new(Semaphore::new(size)),
            size,
            wait,
            waiting: AtomicUsize::new(0),
        }
    }

    /// How the slots are used now.
    pub(crate) fn usage(&self) -> PoolUse {
        PoolUse {
            size: self.size,
            in_use: self.size.saturating_sub(self.permits.available_permits()),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// A free slot, waiting at most the datasource's `pool_wait` and at most `limit` (the
    /// statement's own timeout). `Busy` when none came free in time.
    pub(crate) async fn acquire(&self, limit: Duration) -> Result<Slot, DatasourceError> {
        // The common case, a free slot, takes no timer.
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        let wait = self.wait.min(limit);
        let _waiting = Waiting::start(&self.waiting);
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            // The semaphore is never closed; a closed one is as good as no free slot.
            Ok(Err(_)) | Err(_) => Err(DatasourceError::Busy {
                pool_size: self.size,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn a_free_slot_is_taken_at_once_and_given_back_on_drop() {
        let slots = Slots::new(1, Duration::from_secs(5));
        let first = slots.acquire(LONG).await.unwrap();
        drop(first);
        let started = Instant::now();
        let _second = slots.acquire(LONG).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_full_datasource_is_busy_after_its_pool_wait() {
        let slots = Slots::new(2, Duration::from_millis(100));
        let _held = [
            slots.acquire(LONG).await.unwrap(),
            slots.acquire(LONG).await.unwrap(),
        ];
        let started = Instant::now();
        let refused = slots.acquire(LONG).await.unwrap_err();
        assert_eq!(refused, DatasourceError::Busy { pool_size: 2 });
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn the_wait_never_outlasts_the_statements_own_timeout() {
        let slots = Slots::new(1, LONG);
        let _held = slots.acquire(LONG).await.unwrap();
        let started = Instant::now();
        let refused = slots.acquire(Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(refused, DatasourceError::Busy { .. }));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_slot_freed_during_the_wait_is_handed_over() {
        let slots = Arc::new(Slots::new(1, LONG));
        let held = slots.acquire(LONG).await.unwrap();
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn usage_counts_the_slots_taken_and_the_statements_waiting() {
        let slots = Arc::new(Slots::new(2, LONG));
        let idle = PoolUse {
            size: 2,
            in_use: 0,
            waiting: 0,
        };
        assert_eq!(slots.usage(), idle);
        let held = [
            slots.acquire(LONG).await.unwrap(),
            slots.acquire(LONG).await.unwrap(),
        ];
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire(LONG).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            slots.usage(),
            PoolUse {
                in_use: 2,
                waiting: 1,
                ..idle
            }
        );
        // A waiter that goes away is no longer counted.
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(slots.usage().waiting, 0);
        drop(held);
        assert_eq!(slots.usage(), idle);
    }

    #[tokio::test]
    async fn a_zero_wait_refuses_at_once_when_full() {
        let slots = Slots::new(1, Duration::ZERO);
        let _held = slots.acquire(LONG).await.unwrap();
        assert!(matches!(
            slots.acquire(LONG).await,
            Err(DatasourceError::Busy { pool_size: 1 })
        ));
    }
}
