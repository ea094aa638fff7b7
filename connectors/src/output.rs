//! Where connectors put their readings: a queue in front of the store that
//! coalesces batches, waits for durability and holds the readings while the
//! store is away, so a store restart loses nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use headroom_readings::{Reading, ReadingSink, WriteSummary};
use tokio::sync::{mpsc, oneshot};

/// Readings (in parts) and, for a caller waiting on them, who to tell once durable.
type Batch = (Vec<Vec<Reading>>, Option<oneshot::Sender<()>>);
use tokio_util::sync::CancellationToken;

use crate::status::StatusHandle;

/// Readings written to the store in one go at most: a producer of large
/// batches hands them over in parts of this size, which are written as they are.
pub const MAX_WRITE: usize = 100_000;

/// Batches queued per connector before producers wait: several minutes of a
/// large connector's output while the store is away.
const QUEUE_BATCHES: usize = 65_536;

/// A connector's way to the store.
#[derive(Clone, Debug)]
pub struct Output {
    queue: mpsc::Sender<Batch>,
    status: StatusHandle,
}

impl Output {
    /// Starts the forwarding task into `sink`; it ends when every [`Output`] clone
    /// is dropped and the queue is written, or when a write fails after `shutdown`.
    pub fn start(
        sink: Arc<dyn ReadingSink>,
        status: StatusHandle,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE_BATCHES);
        let task = tokio::spawn(forward(sink, receiver, status.clone(), shutdown));
        (Self { queue, status }, task)
    }

    /// Queues a batch; waits only when the queue is full.
    pub async fn send(&self, readings: Vec<Reading>) {
        if readings.is_empty() {
            return;
        }
        let count = readings.len() as u64;
        if self.queue.send((vec![readings], None)).await.is_ok() {
            self.status.update(|s| s.readings += count);
        } else {
            self.status.error("output_closed");
        }
    }

    /// Queues a batch and waits until the store has made it durable; false if
    /// the connector is shutting down first.
    pub async fn send_durable(&self, readings: Vec<Reading>) -> bool {
        self.send_durable_parts(vec![readings]).await
    }

    /// [`Output::send_durable`] for a batch already cut in parts of at most
    /// [`MAX_WRITE`] readings (a large file's), which are written without
    /// being copied again.
    pub async fn send_durable_parts(&self, parts: Vec<Vec<Reading>>) -> bool {
        let count: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if count == 0 {
            return true;
        }
        let (done, durable) = oneshot::channel();
        if self.queue.send((parts, Some(done))).await.is_err() {
            self.status.error("output_closed");
            return false;
        }
        self.status.update(|s| s.readings += count);
        durable.await.is_ok()
    }
}

/// Writes in flight at once: the store encodes one while its log commits
/// others, and commits them in one group.
const IN_FLIGHT: usize = 4;

/// A `send_durable` caller: told once every chunk holding its readings is durable.
struct Waiter {
    chunks_left: usize,
    done: Option<oneshot::Sender<()>>,
}

type SharedWaiter = Arc<std::sync::Mutex<Waiter>>;

/// At most [`MAX_WRITE`] readings written in one go, and whose they are.
#[derive(Default)]
struct Chunk {
    readings: Vec<Reading>,
    waiters: Vec<SharedWaiter>,
}

/// Appends a batch to the queue of chunks: a small part fills the last chunk,
/// a part of up to [`MAX_WRITE`] readings becomes a chunk as it is.
fn enqueue(chunks: &mut VecDeque<Chunk>, (parts, done): Batch) {
    let waiter: Option<SharedWaiter> = done.map(|done| {
        Arc::new(std::sync::Mutex::new(Waiter {
            chunks_left: 0,
            done: Some(done),
        }))
    });
    let join = |chunk: &mut Chunk| {
        if let Some(waiter) = &waiter
            && !chunk.waiters.iter().any(|w| Arc::ptr_eq(w, waiter))
        {
            chunk.waiters.push(waiter.clone());
            waiter.lock().unwrap_or_else(|e| e.into_inner()).chunks_left += 1;
        }
    };
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        let room = chunks
            .back()
            .map_or(0, |c| MAX_WRITE.saturating_sub(c.readings.len()));
        if part.len() > room && part.len() <= MAX_WRITE {
            let mut chunk = Chunk {
                readings: part,
                waiters: Vec::new(),
            };
            join(&mut chunk);
            chunks.push_back(chunk);
            continue;
        }
        let mut readings = part.into_iter().peekable();
        while readings.peek().is_some() {
            if chunks.back().is_none_or(|c| c.readings.len() >= MAX_WRITE) {
                chunks.push_back(Chunk::default());
            }
            let Some(chunk) = chunks.back_mut() else {
                break;
            };
            let room = MAX_WRITE - chunk.readings.len();
            chunk.readings.extend(readings.by_ref().take(room));
            join(chunk);
        }
    }
}

type Written = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Chunk, headroom_readings::Result<WriteSummary>)> + Send>,
>;

/// Writes queued readings into `sink`, up to [`IN_FLIGHT`] chunks at a time;
/// a failed chunk is kept and written again after a backoff.
async fn forward(
    sink: Arc<dyn ReadingSink>,
    mut receiver: mpsc::Receiver<Batch>,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let mut queued: VecDeque<Chunk> = VecDeque::new();
    let mut in_flight: FuturesUnordered<Written> = FuturesUnordered::new();
    // Not ended by shutdown itself: the connector stops producing at shutdown
    // and drops its outputs, and what it queued is still written.
    let mut open = true;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        while open && queued.len() <= IN_FLIGHT {
            match receiver.try_recv() {
                Ok(batch) => enqueue(&mut queued, batch),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        while in_flight.len() < IN_FLIGHT {
            let Some(chunk) = queued.pop_front() else {
                break;
            };
            // A copy stays with the chunk: the store may be away and the
            // readings must be written again.
            let ticket = sink.write(chunk.readings.clone());
            in_flight.push(Box::pin(async move { (chunk, ticket.durable().await) }));
        }
        if in_flight.is_empty() {
            if !open {
                return;
            }
            match receiver.recv().await {
                Some(batch) => enqueue(&mut queued, batch),
                None => open = false,
            }
            continue;
        }
        let written = tokio::select! {
            Some(written) = in_flight.next() => written,
            batch = receiver.recv(), if open && queued.is_empty() => {
                match batch {
                    Some(batch) => enqueue(&mut queued, batch),
                    None => open = false,
                }
                continue;
            }
        };
        match written {
            (chunk, Ok(summary)) => {
                status.update(|s| {
                    s.durable += summary.accepted as u64;
                    if summary.rejected > 0 {
                        *s.errors.entry("rejected_by_store".into()).or_default() +=
                            summary.rejected as u64;
                    }
                });
                for waiter in chunk.waiters {
                    let mut waiter = waiter.lock().unwrap_or_else(|e| e.into_inner());
                    waiter.chunks_left -= 1;
                    if waiter.chunks_left == 0
                        && let Some(done) = waiter.done.take()
                    {
                        let _ = done.send(());
                    }
                }
                backoff.reset();
            }
            (chunk, Err(e)) => {
                // Kept and tried again: the store may be restarting.
                tracing::warn!("store write failed, retrying: {e}");
                status.error("store");
                if shutdown.is_cancelled() {
                    // The store is away at shutdown: what is held is lost, and said so.
                    let held = chunk.readings.len()
                        + queued.iter().map(|c| c.readings.len()).sum::<usize>();
                    status.update(|s| {
                        *s.errors.entry("lost_at_shutdown".into()).or_default() += held as u64;
                    });
                    return;
                }
                queued.push_front(chunk);
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Exponential backoff with jitter: many clients that lost the same server do
/// not all come back in the same millisecond.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next attempt: the current step, less up to half of
    /// it at random; the step then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random::<f64>() * 0.5;
        step.mul_f64(1.0 - jitter)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_geodata::Quantity;
    use headroom_readings::{Quality, WriteTicket};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that is away for its first `away` writes.
    struct FlakyStore {
        away: AtomicUsize,
        written: Mutex<Vec<usize>>,
    }

    impl ReadingSink for FlakyStore {
        fn write(&self, readings: Vec<Reading>) -> WriteTicket {
            let (reply, ticket) = WriteTicket::channel();
            let away = self
                .away
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if away {
                let _ = reply.send(Err("the store is restarting".into()));
            } else {
                self.written.lock().unwrap().push(readings.len());
                let _ = reply.send(Ok(WriteSummary {
                    accepted: readings.len(),
                    ..WriteSummary::default()
                }));
            }
            ticket
        }
    }

    #[tokio::test]
    async fn a_large_batch_is_written_in_chunks_and_survives_failed_writes() {
        let store = Arc::new(FlakyStore {
            away: AtomicUsize::new(2),
            written: Mutex::default(),
        });
        let status = StatusHandle::new("test", "test", 1);
        let (output, forwarder) =
            Output::start(store.clone(), status.clone(), CancellationToken::new());
        let source: Arc<str> = Arc::from("test");
        let asset: Arc<str> = Arc::from("T_1");
        let reading = |i: usize| Reading {
            ts_ms: i as i64,
            asset: asset.clone(),
            quantity: Quantity::PKw,
            value: i as f64,
            quality: Quality::Good,
            source: source.clone(),
        };
        let big: Vec<Reading> = (0..2 * MAX_WRITE + 500).map(reading).collect();
        output.send(vec![reading(0); 10]).await;
        assert!(
            output.send_durable(big).await,
            "durable once every chunk is"
        );
        let written = store.written.lock().unwrap().clone();
        assert_eq!(
            written.iter().sum::<usize>(),
            2 * MAX_WRITE + 510,
            "{written:?}"
        );
        assert!(written.iter().all(|n| *n <= MAX_WRITE), "{written:?}");
        let snapshot = status.snapshot();
        assert_eq!(snapshot.durable, 2 * MAX_WRITE as u64 + 510);
        assert_eq!(snapshot.errors.get("store"), Some(&2));

        // Parts of a large file are written as they are, each at most MAX_WRITE.
        let parts = vec![vec![reading(1); MAX_WRITE], vec![reading(2); 5]];
        assert!(output.send_durable_parts(parts).await);
        let written = store.written.lock().unwrap().clone();
        assert_eq!(
            written.iter().sum::<usize>(),
            3 * MAX_WRITE + 515,
            "{written:?}"
        );
        assert!(written.contains(&MAX_WRITE), "{written:?}");
        drop(output);
        forwarder.await.unwrap();
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_below_each_step() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let steps = [100, 200, 400, 800, 800];
        for step in steps {
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_millis(step), "{delay:?} > {step}");
            assert!(
                delay >= Duration::from_millis(step / 2),
                "{delay:?} < {step}/2"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
