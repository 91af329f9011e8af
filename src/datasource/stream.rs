//! The stream of one execution: [`Frame`]s of rows already encoded as JSON, the
//! [`Execution`] that hands them out, the `Producer` a driver writes to, and the inline
//! `Driver` that polls a PostgreSQL producer on the request's own task.
//!
//! Owns how rows travel from a driver to the response, and how much is buffered on the way
//! (at most [`FRAME_QUEUE`] frames of about [`FRAME_BYTES`]). Must never drop an unfinished
//! producer while a runtime can still run it (its timeout and cancel logic must run), and
//! never let a panic in a producer reach the request's task.
//!
//! # Who drives a producer
//!
//! A *producer* runs the statement and writes to a `Producer`: the columns (or an error) on
//! a oneshot, then [`Frame`]s on a bounded channel. MySQL and SQLite producers run on their
//! own task (or blocking thread) from the start. The PostgreSQL producer is a plain future
//! that the request's own task drives *inline* (`Driver`):
//! [`Datasource::execute`](super::Datasource::execute) polls it while waiting for the
//! columns, and [`Execution::next_frame`] polls it while waiting for a frame. A point query,
//! whose rows all fit the first frame, thus costs no task spawn and no cross-task wake-up;
//! the channels stay, so the code that reads frames is the same for every datasource.
//!
//! Once a result outgrows its first frame the response streams, and the body is polled by
//! the connection, at the pace of the client. Before that, the response calls
//! [`Execution::spawn_producer`] so the rest of the result is produced on its own task, in
//! parallel with the writes, exactly as every producer used to run.
//!
//! # When the receiving side goes away
//!
//! The request is dropped when its client leaves (a reset connection, a failed write). Every
//! producer watches for that with `Producer::gone` (the frame receiver was dropped) while it
//! waits for a connection, for the statement and for rows, and then *cancels* the statement
//! on the server and discards its connection (`Streamed::Abandoned`): a result nobody reads
//! is not worth a connection and a backend until its timeout.
//!
//! If the request is dropped while its producer is still inline, the producer is not dropped
//! with it: `Driver`'s `Drop` spawns it, and the spawned producer sees at its first poll that
//! its receiver is gone and cancels. Dropping it mid-query instead would return the
//! connection to the pool with the statement still running on the server, and skip the
//! cancel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::DatasourceError;
use super::slots::Slot;

/// How many encoded bytes a producer gathers before handing a frame to the response.
pub const FRAME_BYTES: usize = 32 * 1024;
/// Frames buffered between a producer and the response body; bounds memory per request.
pub(crate) const FRAME_QUEUE: usize = 4;

/// A result column: its name and the database's name for its type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The `columns` member of a result, already JSON: `[{"name": ..., "type": ...}, ...]`.
/// PostgreSQL serialises it once per prepared statement and connection; MySQL and SQLite once
/// per execution.
pub(crate) fn columns_json(columns: &[ColumnInfo]) -> Bytes {
    serde_json::to_vec(columns)
        .expect("column names and types serialise")
        .into()
}

/// Limits for one execution, and what its connection is set up with.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The whole execution (connect, run, stream) must finish within this.
    pub timeout: Duration,
    /// Stop after this many rows and report the result as truncated.
    pub max_rows: u64,
    /// PostgreSQL only: run the statement in a transaction as this role with these claims
    /// (row security). The catalog compiler refuses it on every other kind.
    pub row_security: Option<crate::statement::RowContext>,
    /// A producer hands its rows over once it has gathered this many bytes:
    /// [`FRAME_BYTES`] for a JSON answer, 1 for an NDJSON one (each row as it is produced,
    /// so a browser renders it at once).
    pub frame_bytes: usize,
}

/// A piece of a running result.
#[derive(Debug)]
pub enum Frame {
    /// Rows encoded as JSON arrays separated by commas. Every frame after the first row
    /// starts with a comma, so frames concatenate into the body of a JSON array.
    Rows(Bytes),
    /// The statement finished.
    Done(Summary),
    /// The statement failed after rows had started.
    Failed(DatasourceError),
}

/// How a finished statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub row_count: u64,
    /// Rows changed, for statements that return no columns.
    pub rows_affected: Option<u64>,
    /// The `max_rows` cap cut the result short.
    pub truncated: bool,
}

/// A started statement: columns are known, rows follow as frames ([`Execution::next_frame`]).
#[derive(Debug)]
pub struct Execution {
    /// The result's columns as a JSON array (see [`ColumnInfo`]).
    pub columns_json: Bytes,
    pub(super) frames: mpsc::Receiver<Frame>,
    /// The producer, while this execution still drives it inline (PostgreSQL).
    pub(super) driver: Driver,
}

impl Execution {
    /// The next frame; `None` when the producer ended without a last frame. While the
    /// producer is inline it is polled too (after the channel, so a waiting frame is taken
    /// first): the frames it sends are the ones this waits for.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.driver.drive_while(self.frames.recv()).await
    }

    /// Hands an inline producer to its own task, to produce the rest of a result that
    /// streams. Does nothing for a producer that already runs on its own or has finished.
    pub fn spawn_producer(&mut self) {
        if let Some(producer) = self.driver.producer.take() {
            tokio::spawn(producer);
        }
    }
}

/// A producer future that the caller's task drives, not yet spawned.
pub(crate) type ProducerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Boxes the producer `make` returns, to be driven inline. A panic in it ends the producer
/// only, as it did when every producer had its own task: its senders drop, and the request
/// answers `producer_vanished` instead of losing its connection task to the panic.
///
/// The box is allocated first and the producer made into it, which lets the optimiser build
/// the future in place (it does in the bench profile, checked with callgrind): a producer
/// future is several kilobytes, and made first, then passed here and boxed, it was copied
/// whole (unused space included) three times per statement, the last time into the fresh,
/// cold block.
pub(crate) fn inline_producer<F>(make: impl FnOnce() -> F) -> ProducerFuture
where
    F: Future<Output = ()> + Send + 'static,
{
    use futures_util::FutureExt;
    let slot = Box::new_uninit();
    let producer = Box::write(
        slot,
        std::panic::AssertUnwindSafe(make())
            .catch_unwind()
            .map(|_: std::thread::Result<()>| ()),
    );
    Box::into_pin(producer)
}

/// The producer of an execution while the request's task drives it inline; empty once it
/// finished, once it was spawned, and for producers that run on their own (MySQL, SQLite).
///
/// Dropped while the producer is unfinished (the request went away), it spawns the producer
/// rather than dropping it mid-query: the spawned producer finds its receiver gone, cancels
/// the statement on the server and discards the connection (see the module docs). Without
/// a runtime to spawn on (it is shutting down), the producer is dropped.
pub(crate) struct Driver {
    producer: Option<ProducerFuture>,
}

impl Driver {
    pub(super) fn inline(producer: ProducerFuture) -> Driver {
        Driver {
            producer: Some(producer),
        }
    }

    pub(super) fn none() -> Driver {
        Driver { producer: None }
    }

    /// Awaits `wait` (a receive from this execution's channels), polling the inline
    /// producer too until it finishes. `wait` is checked first, so it completes as soon as
    /// it can.
    ///
    /// While the producer is inline, only its polls here can complete `wait` (it holds the
    /// senders), so `wait` is checked with a waker that does nothing: registered with the
    /// real one, each frame the producer sends would wake this very task while it runs,
    /// and the runtime answers such a wake by queueing the task again and waking an idle
    /// worker thread to share the work, for nothing. The producer's own waits (its sockets,
    /// its timer, room in the frame channel) carry the real waker. `wait` is also exempt
    /// from the runtime's cooperative budget, which, spent, would make it pending and wake
    /// the waker that does nothing; the producer's waits still spend the budget, and wake
    /// the task when it is spent.
    pub(super) async fn drive_while<F: Future>(&mut self, wait: F) -> F::Output {
        let Some(producer) = self.producer.as_mut() else {
            return wait.await;
        };
        let wait = tokio::task::unconstrained(wait);
        tokio::pin!(wait);
        let quiet = |wait: Pin<&mut tokio::task::Unconstrained<F>>| {
            wait.poll(&mut Context::from_waker(Waker::noop()))
        };
        let ready = std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = quiet(wait.as_mut()) {
                return Poll::Ready(Some(output));
            }
            if producer.as_mut().poll(cx).is_pending() {
                return match quiet(wait.as_mut()) {
                    Poll::Ready(output) => Poll::Ready(Some(output)),
                    Poll::Pending => Poll::Pending,
                };
            }
            Poll::Ready(None)
        })
        .await;
        match ready {
            Some(output) => output,
            None => {
                // Finished: what it sent is buffered in the channels (or they are closed).
                self.producer = None;
                wait.await
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(producer);
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("inline", &self.producer.is_some())
            .finish()
    }
}

/// How a producer's statement ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Streamed {
    /// Every frame was handed over (or the statement needed none).
    Finished,
    /// The receiving side went away first: the statement must be cancelled on the server
    /// and its connection discarded, not returned to the pool mid-result.
    Abandoned,
}

/// The sending half a driver task writes to: first the columns (or an error), then frames.
/// Holds the statement's connection [`Slot`] until it is dropped (or the slot is taken for
/// the clean-up of a cancelled statement).
pub(crate) struct Producer {
    pub(super) started: Option<oneshot::Sender<Result<Bytes, DatasourceError>>>,
    pub(super) frames: mpsc::Sender<Frame>,
    pub(super) slot: Option<Slot>,
}

impl Producer {
    /// Resolves once the receiving side is gone (the request was dropped: its client left).
    /// Owned, so a producer can race it against work that borrows the producer; it keeps
    /// the channel open no longer than the producer itself does.
    pub(crate) fn gone(&self) -> impl Future<Output = ()> + Send + 'static {
        let frames = self.frames.clone();
        async move { frames.closed().await }
    }

    /// Takes the connection slot, for a clean-up that outlives the producer (a cancel, a
    /// disconnect on another task); it is freed when that drops it.
    pub(crate) fn take_slot(&mut self) -> Option<Slot> {
        self.slot.take()
    }

    /// Reports the columns (as [`columns_json`] makes them); false when the caller has gone
    /// away.
    pub(crate) fn start(&mut self, columns_json: Bytes) -> bool {
        match self.started.take() {
            Some(tx) => tx.send(Ok(columns_json)).is_ok(),
            None => true,
        }
    }

    /// Ends the execution with an error, before or after rows started.
    pub(crate) async fn fail(mut self, error: DatasourceError) {
        match self.started.take() {
            Some(tx) => {
                let _ = tx.send(Err(error));
            }
            None => {
                let _ = self.frames.send(Frame::Failed(error)).await;
            }
        }
    }

    /// The blocking-thread twin of [`Producer::fail`] (SQLite runs on blocking threads).
    pub(crate) fn fail_blocking(mut self, error: DatasourceError) {
        match self.started.take() {
            Some(tx) => {
                let _ = tx.send(Err(error));
            }
            None => {
                let _ = self.frames.blocking_send(Frame::Failed(error));
            }
        }
    }

    pub(crate) fn frames(&self) -> &mpsc::Sender<Frame> {
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    /// An execution whose producer is `producer`, driven inline, with its frame sender.
    fn inline_execution(make: impl FnOnce(mpsc::Sender<Frame>) -> ProducerFuture) -> Execution {
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        Execution {
            columns_json: Bytes::from_static(b"[]"),
            frames: frames_rx,
            driver: Driver::inline(make(frames_tx)),
        }
    }

    fn rows(text: &'static str) -> Frame {
        Frame::Rows(Bytes::from_static(text.as_bytes()))
    }

    /// Runs `body` as a spawned task, so that task ids can be compared.
    async fn in_task<F: Future<Output = ()> + Send + 'static>(body: F) {
        tokio::spawn(body).await.expect("test task");
    }

    #[tokio::test]
    async fn next_frame_drives_an_inline_producer_on_the_callers_task() {
        in_task(async {
            let ran_on = Arc::new(Mutex::new(None));
            let seen = ran_on.clone();
            let mut execution = inline_execution(move |frames| {
                Box::pin(async move {
                    *seen.lock().unwrap() = tokio::task::try_id();
                    // A yield between frames, as when rows arrive in several reads.
                    let _ = frames.send(rows("[1]")).await;
                    tokio::task::yield_now().await;
                    let _ = frames.send(Frame::Done(Summary::default())).await;
                })
            });
            assert!(
                matches!(execution.next_frame().await, Some(Frame::Rows(b)) if &b[..] == b"[1]")
            );
            assert!(matches!(execution.next_frame().await, Some(Frame::Done(_))));
            assert!(execution.next_frame().await.is_none());
            assert!(execution.driver.producer.is_none(), "the producer finished");
            assert_eq!(*ran_on.lock().unwrap(), Some(tokio::task::id()));
        })
        .await;
    }

    /// Counts the wakes of the task it stands for.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A frame the inline producer sends while the caller's task polls it must not wake that
    /// task: the runtime would queue it again and wake an idle worker for nothing.
    #[tokio::test]
    async fn an_inline_producer_does_not_wake_the_task_that_drives_it() {
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let mut execution = inline_execution(move |frames| {
            Box::pin(async move {
                // Waits like a producer waiting for rows, then sends them.
                let _ = go_rx.await;
                let _ = frames.send(rows("[1]")).await;
                let _ = frames.send(Frame::Done(Summary::default())).await;
            })
        });
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut next = Box::pin(execution.next_frame());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        // The rows arrive: the producer's own wait wakes the task, once.
        go_tx.send(()).unwrap();
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        let Poll::Ready(Some(Frame::Rows(first))) = next.as_mut().poll(&mut cx) else {
            panic!("the first frame is ready");
        };
        assert_eq!(&first[..], b"[1]");
        // Sending it (and the next) woke nobody.
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// Many frames through a full channel, far past the runtime's cooperative budget of one
    /// poll: the inline producer and the caller take turns to the end, nothing stalls.
    #[tokio::test]
    async fn a_long_inline_result_streams_through_a_full_channel_to_its_end() {
        const FRAMES: usize = 2_000;
        let mut execution = inline_execution(|frames| {
            Box::pin(async move {
                for _ in 0..FRAMES {
                    let _ = frames.send(rows(",[1]")).await;
                }
                let _ = frames.send(Frame::Done(Summary::default())).await;
            })
        });
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            let mut received = 0;
            while let Some(frame) = execution.next_frame().await {
                match frame {
                    Frame::Rows(_) => received += 1,
                    _ => break,
                }
            }
            received
        })
        .await
        .expect("the result streamed to its end without stalling");
        assert_eq!(received, FRAMES);
    }

    #[tokio::test]
    async fn frames_buffered_by_a_finished_producer_are_still_delivered() {
        let mut execution = inline_execution(|frames| {
            Box::pin(async move {
                let _ = frames.send(rows("[1]")).await;
                let _ = frames.send(rows(",[2]")).await;
                let _ = frames.send(Frame::Done(Summary::default())).await;
            })
        });
        assert!(matches!(execution.next_frame().await, Some(Frame::Rows(b)) if &b[..] == b"[1]"));
        assert!(execution.driver.producer.is_none());
        assert!(matches!(execution.next_frame().await, Some(Frame::Rows(b)) if &b[..] == b",[2]"));
        assert!(matches!(execution.next_frame().await, Some(Frame::Done(_))));
        assert!(execution.next_frame().await.is_none());
    }

    #[tokio::test]
    async fn a_panicking_inline_producer_ends_the_frames_not_the_caller() {
        let mut execution = inline_execution(|frames| {
            inline_producer(|| async move {
                let _frames = frames;
                panic!("producer bug");
            })
        });
        assert!(execution.next_frame().await.is_none());
        assert!(execution.driver.producer.is_none());
    }

    #[tokio::test]
    async fn a_spawned_producer_runs_on_its_own_task() {
        in_task(async {
            let (ran_on_tx, ran_on_rx) = oneshot::channel();
            let mut execution = inline_execution(move |frames| {
                Box::pin(async move {
                    let _ = ran_on_tx.send(tokio::task::try_id());
                    let _ = frames.send(Frame::Done(Summary::default())).await;
                })
            });
            execution.spawn_producer();
            assert!(execution.driver.producer.is_none());
            assert!(matches!(execution.next_frame().await, Some(Frame::Done(_))));
            let ran_on = ran_on_rx.await.expect("the producer ran");
            assert!(ran_on.is_some());
            assert_ne!(ran_on, Some(tokio::task::id()));
        })
        .await;
    }

    /// The client went away mid-query: the producer must still run to its end (its timeout
    /// and cancel logic, its connection hand-back), not be dropped half-way.
    #[tokio::test]
    async fn a_dropped_execution_lets_its_unfinished_producer_finish() {
        let (finished_tx, finished_rx) = oneshot::channel();
        let mut execution = inline_execution(move |frames| {
            Box::pin(async move {
                let _ = frames.send(rows("[1]")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // The receiver is gone by now: the send fails, the producer goes on.
                let _ = frames.send(Frame::Done(Summary::default())).await;
                let _ = finished_tx.send(());
            })
        });
        assert!(execution.next_frame().await.is_some());
        assert!(execution.driver.producer.is_some(), "still inline, asleep");
        drop(execution);
        tokio::time::timeout(Duration::from_secs(5), finished_rx)
            .await
            .expect("the producer finished in time")
            .expect("the producer ran to its end instead of being dropped");
    }

    /// The same while the columns are awaited: dropping `execute`'s future mid-way spawns
    /// the producer too.
    #[tokio::test]
    async fn a_dropped_wait_for_columns_lets_the_producer_finish() {
        let (finished_tx, finished_rx) = oneshot::channel();
        let (_started_tx, started_rx) = oneshot::channel::<()>();
        let mut driver = Driver::inline(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = finished_tx.send(());
        }));
        let waited =
            tokio::time::timeout(Duration::from_millis(10), driver.drive_while(started_rx)).await;
        assert!(waited.is_err(), "nothing was started");
        drop(driver);
        tokio::time::timeout(Duration::from_secs(5), finished_rx)
            .await
            .expect("the producer finished in time")
            .expect("the producer ran to its end instead of being dropped");
    }

    /// A producer that waits on its statement while the request goes away learns it from
    /// `gone()` (and cancels), whether it was inline or already on its own task.
    #[tokio::test]
    async fn a_dropped_execution_tells_its_producer_the_receiver_is_gone() {
        for spawned in [false, true] {
            let (noticed_tx, noticed_rx) = oneshot::channel();
            let mut execution = inline_execution(move |frames| {
                let producer = Producer {
                    started: None,
                    frames,
                    slot: None,
                };
                Box::pin(async move {
                    let gone = producer.gone();
                    tokio::select! {
                        () = gone => {
                            let _ = noticed_tx.send(());
                        }
                        // The statement: it would run far longer than the test.
                        () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                })
            });
            if spawned {
                execution.spawn_producer();
            } else {
                // Polled inline once, then the request goes.
                let waited =
                    tokio::time::timeout(Duration::from_millis(10), execution.next_frame()).await;
                assert!(waited.is_err(), "no frame was sent");
            }
            drop(execution);
            tokio::time::timeout(Duration::from_secs(5), noticed_rx)
                .await
                .expect("the producer noticed at once, not at its statement's end")
                .expect("the producer ran until it noticed");
        }
    }

    #[tokio::test]
    async fn gone_stays_pending_while_the_execution_is_held() {
        let (frames_tx, _frames_rx) = mpsc::channel(FRAME_QUEUE);
        let producer = Producer {
            started: None,
            frames: frames_tx,
            slot: None,
        };
        let gone = tokio::time::timeout(Duration::from_millis(20), producer.gone()).await;
        assert!(gone.is_err());
    }

    /// Outside a runtime (shutdown) there is nowhere to spawn: the producer is dropped, and
    /// nothing panics.
    #[test]
    fn without_a_runtime_an_unfinished_producer_is_dropped() {
        struct Flag(Arc<Mutex<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                *self.0.lock().unwrap() = true;
            }
        }
        let dropped = Arc::new(Mutex::new(false));
        let flag = Flag(dropped.clone());
        let driver = Driver::inline(Box::pin(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        }));
        drop(driver);
        assert!(*dropped.lock().unwrap());
    }
}
