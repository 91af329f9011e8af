//! The graceful drain on shutdown: each open connection is told to finish the request it is
//! serving and close (HTTP/1.1 keep-alive ends after that answer), and the shutdown waits
//! until every one has.
//!
//! Polling a connection costs one read of a shared flag and, until the drain starts, the
//! registration of its waker in that connection's own slot. (hyper-util's watcher, which
//! this replaces, polls a watch channel with every poll of every connection, and each such
//! poll locks the one waiter list all connections share: under load, both workers contend
//! for it on every request.) The shared list of open connections is locked only when a
//! connection opens or closes, and once at shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Context;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

/// The connections of one listener, drained together.
#[derive(Default)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    draining: AtomicBool,
    /// The wakers of the open connections, by connection.
    open: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
    next_id: AtomicU64,
    /// Told when the last open connection closes.
    all_closed: Notify,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<AtomicWaker>>> {
        // A panic elsewhere while the list was held leaves it consistent (single inserts and
        // removals): keep using it.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's place in the drain; it leaves the list when dropped.
pub struct Member {
    shared: Arc<Shared>,
    id: u64,
    waker: Arc<AtomicWaker>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut open = self.shared.open();
        open.remove(&self.id);
        if open.is_empty() {
            self.shared.all_closed.notify_waiters();
        }
    }
}

impl Member {
    /// Whether the drain has started; until it has, `cx`'s task is woken when it does.
    fn draining(&self, cx: &Context<'_>) -> bool {
        if self.shared.draining.load(Ordering::Acquire) {
            return true;
        }
        self.waker.register(cx.waker());
        // The drain may have started (and woken the old waker) in between.
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Serves `connection` to its end, calling `shut_down` on it (hyper's
    /// `graceful_shutdown`) once the drain starts, at once if it already has.
    pub async fn serve<C: Future>(
        self,
        connection: C,
        shut_down: impl FnOnce(Pin<&mut C>),
    ) -> C::Output {
        let mut connection = pin!(connection);
        let mut shut_down = Some(shut_down);
        std::future::poll_fn(|cx| {
            if shut_down.is_some()
                && self.draining(cx)
                && let Some(shut_down) = shut_down.take()
            {
                shut_down(connection.as_mut());
            }
            connection.as_mut().poll(cx)
        })
        .await
    }
}

impl Drain {
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Adds a connection that has just been accepted.
    pub fn join(&self) -> Member {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.shared.open().insert(id, waker.clone());
        Member {
            shared: self.shared.clone(),
            id,
            waker,
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.shared.open().len()
    }

    /// Starts the drain and resolves once every connection has closed.
    pub async fn shutdown(self) {
        self.shared.draining.store(true, Ordering::Release);
        let mut closed = pin!(self.shared.all_closed.notified());
        // Registered before the list is read, so the last close cannot slip in between.
        closed.as_mut().enable();
        {
            let open = self.shared.open();
            if open.is_empty() {
                return;
            }
            for waker in open.values() {
                waker.wake();
            }
        }
        closed.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A connection that runs until it is asked to shut down, then ends after `linger`.
    struct FakeConnection {
        asked: Arc<AtomicBool>,
        linger: Duration,
        ending: Option<Pin<Box<tokio::time::Sleep>>>,
    }

    impl Future for FakeConnection {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> std::task::Poll<Self::Output> {
            match self.ending.as_mut() {
                Some(sleep) => sleep.as_mut().poll(cx).map(|()| "closed"),
                None => std::task::Poll::Pending,
            }
        }
    }

    impl FakeConnection {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.asked.store(true, Ordering::SeqCst);
            let linger = self.linger;
            self.ending = Some(Box::pin(tokio::time::sleep(linger)));
        }
    }

    fn connection(linger: Duration) -> (FakeConnection, Arc<AtomicBool>) {
        let asked = Arc::new(AtomicBool::new(false));
        let connection = FakeConnection {
            asked: asked.clone(),
            linger,
            ending: None,
        };
        (connection, asked)
    }

    #[tokio::test]
    async fn shutdown_asks_every_connection_to_close_and_waits_for_them() {
        let drain = Drain::new();
        let mut served = Vec::new();
        let mut asked = Vec::new();
        for linger in [10, 200] {
            let (fake, was_asked) = connection(Duration::from_millis(linger));
            asked.push(was_asked);
            served.push(tokio::spawn(
                drain.join().serve(fake, FakeConnection::graceful_shutdown),
            ));
        }
        assert_eq!(drain.open(), 2);
        // Nothing is asked before the drain starts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(asked.iter().all(|a| !a.load(Ordering::SeqCst)));
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .expect("every connection closed");
        // It waited for the slower connection's last answer.
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(asked.iter().all(|a| a.load(Ordering::SeqCst)));
        for served in served {
            assert!(served.is_finished());
            assert_eq!(served.await.unwrap(), "closed");
        }
    }

    #[tokio::test]
    async fn a_connection_that_joins_while_draining_is_asked_at_once() {
        let drain = Drain::new();
        let (first, _) = connection(Duration::from_millis(100));
        let first = tokio::spawn(drain.join().serve(first, FakeConnection::graceful_shutdown));
        let shared = drain.shared.clone();
        let shutdown = tokio::spawn(drain.shutdown());
        while !shared.draining.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        let late = Drain {
            shared: shared.clone(),
        }
        .join();
        let (fake, asked) = connection(Duration::from_millis(1));
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            late.serve(fake, FakeConnection::graceful_shutdown),
        )
        .await
        .expect("asked to close at once");
        assert_eq!(served, "closed");
        assert!(asked.load(Ordering::SeqCst));
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("every connection closed")
            .unwrap();
        assert!(first.is_finished());
    }

    #[tokio::test]
    async fn shutdown_without_connections_returns_at_once() {
        tokio::time::timeout(Duration::from_secs(1), Drain::new().shutdown())
            .await
            .expect("nothing to wait for");
    }
}
