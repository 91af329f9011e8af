//! The PostgreSQL store's connections: a small pool of `tokio-postgres` clients, driven by a
//! runtime of the store's own, and [`block_on`], which waits for one client call on the
//! calling thread.
//!
//! Why not the sync `postgres` crate or `r2d2`: the store's calls are blocking (callers run
//! them in `spawn_blocking`, and the CLI calls them from plain threads), and the sync crate
//! runs each client on a runtime it `block_on`s, which panics when a call is made from
//! inside a tokio runtime. Here each connection's I/O task runs on one worker thread the
//! store owns, and a call only waits on the client's channel to it ([`block_on`] parks the
//! calling thread; it needs no runtime), so a store call is safe from any thread, inside a
//! runtime or not, and dropping the store never blocks (the runtime is shut down in the
//! background). The pool is a mutex, a condition variable and a list of idle clients: a
//! client whose connection closed (a restarted server, `pg_terminate_backend`) is dropped
//! when it comes back and the next call opens a new one.
//!
//! Never logs; connection errors carry the driver's message (no password: the driver never
//! prints it).

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::settings::PgSettings;
use crate::store::StoreError;
use crate::store::error::PgError;

/// How long a call waits for a free connection when all are in use.
const WAIT: Duration = Duration::from_secs(30);

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the calling thread, parking it between polls. For client
/// calls only: their I/O happens on the pool's runtime, so nothing here needs a reactor.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

struct State {
    idle: Vec<Client>,
    /// Clients open, idle or lent out.
    open: usize,
}

pub(super) struct Pool {
    runtime: Option<tokio::runtime::Runtime>,
    settings: PgSettings,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
}

/// A client lent out by the pool; it goes back when dropped.
pub(super) struct Lent<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl std::ops::Deref for Lent<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a lent client is there until dropped")
    }
}

impl std::ops::DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a lent client is there until dropped")
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let mut state = self.pool.lock();
            if client.is_closed() {
                state.open -= 1;
            } else {
                state.idle.push(client);
            }
            drop(state);
            self.pool.freed.notify_one();
        }
    }
}

impl Pool {
    pub(super) fn new(settings: PgSettings, max: usize) -> Result<Pool, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-store")
            .enable_all()
            .build()
            .map_err(StoreError::Io)?;
        Ok(Pool {
            runtime: Some(runtime),
            settings,
            max: max.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    pub(super) fn settings(&self) -> &PgSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A client: an idle one whose connection is still open, else a new one while fewer
    /// than the maximum are open, else the first one given back within [`WAIT`].
    pub(super) fn get(&self) -> Result<Lent<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            while let Some(client) = state.idle.pop() {
                if client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Lent {
                    pool: self,
                    client: Some(client),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.connect() {
                    Ok(client) => Ok(Lent {
                        pool: self,
                        client: Some(client),
                    }),
                    Err(error) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(error)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(state, WAIT)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = next;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(StoreError::Unreachable(
                    "every connection to the metadata store is busy",
                ));
            }
        }
    }

    /// Runs `task` on the store's runtime, for as long as the store lives.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(task);
        }
    }

    /// The store's runtime, for connections that live outside the pool and are used from
    /// async code (the shared rate-limit buckets): their I/O runs here, their client is
    /// called from any runtime.
    pub(super) fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
    }

    /// Opens a connection outside the pool (migrations hold one for their lock).
    pub(super) fn connect(&self) -> Result<Client, StoreError> {
        let runtime = self.runtime.as_ref().expect("the runtime lives until drop");
        let opened = runtime.spawn(open_client(self.settings.clone()));
        match block_on(opened) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(source)) => Err(StoreError::Postgres {
                context: "connecting to the metadata store",
                source: PgError::new(source),
            }),
            Err(_) => Err(StoreError::Unreachable(
                "the metadata store's connection task stopped",
            )),
        }
    }
}

/// Connects with `settings` and spawns the connection's task on the current runtime (the
/// store's, where callers spawn this), returning the client, which works from any thread.
pub(super) async fn open_client(settings: PgSettings) -> Result<Client, tokio_postgres::Error> {
    match settings.tls {
        Some(tls) => {
            let (client, connection) = settings.config.connect(tls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        None => {
            let (client, connection) = settings.config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Clients first (their connections end), then the runtime, without waiting: a store
        // dropped inside an async task must not block it.
        self.lock().idle.clear();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
