//! Where connectors put their readings: a queue in front of the store that
//! coalesces batches, waits for durability and holds the readings while the
//! store is away, so a store restart loses nothing.

use std::sync::Arc;
use std::time::Duration;

use headroom_engine::store::{Reading, ReadingSink};
use tokio::sync::{mpsc, oneshot};

/// Readings and, for a caller waiting on them, who to tell once durable.
type Batch = (Vec<Reading>, Option<oneshot::Sender<()>>);
use tokio_util::sync::CancellationToken;

use crate::status::StatusHandle;

/// Readings written to the store in one go at most.
const MAX_WRITE: usize = 100_000;

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
        if self.queue.send((readings, None)).await.is_ok() {
            self.status.update(|s| s.readings += count);
        } else {
            self.status.error("output_closed");
        }
    }

    /// Queues a batch and waits until the store has made it durable; false if
    /// the connector is shutting down first.
    pub async fn send_durable(&self, readings: Vec<Reading>) -> bool {
        if readings.is_empty() {
            return true;
        }
        let count = readings.len() as u64;
        let (done, durable) = oneshot::channel();
        if self.queue.send((readings, Some(done))).await.is_err() {
            self.status.error("output_closed");
            return false;
        }
        self.status.update(|s| s.readings += count);
        durable.await.is_ok()
    }
}

async fn forward(
    sink: Arc<dyn ReadingSink>,
    mut receiver: mpsc::Receiver<Batch>,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<Reading> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        if pending.is_empty() {
            // Not ended by shutdown itself: the connector stops producing at
            // shutdown and drops its outputs, and what it queued is still written.
            match receiver.recv().await {
                Some((batch, done)) => {
                    pending = batch;
                    waiting.extend(done);
                }
                None => return,
            }
        }
        // Whatever else is queued joins this write.
        while pending.len() < MAX_WRITE {
            match receiver.try_recv() {
                Ok((batch, done)) => {
                    pending.extend(batch);
                    waiting.extend(done);
                }
                Err(_) => break,
            }
        }
        match sink.write(pending.clone()).durable().await {
            Ok(summary) => {
                status.update(|s| s.durable += summary.accepted as u64);
                if summary.rejected > 0 {
                    status.update(|s| {
                        *s.errors.entry("rejected_by_store".into()).or_default() +=
                            summary.rejected as u64;
                    });
                }
                pending.clear();
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
                backoff.reset();
            }
            Err(e) => {
                // Kept and tried again: the store may be restarting.
                tracing::warn!("store write failed, retrying: {e}");
                status.error("store");
                if shutdown.is_cancelled() {
                    // The store is away at shutdown: what is held is lost, and said so.
                    status.update(|s| {
                        *s.errors.entry("lost_at_shutdown".into()).or_default() +=
                            pending.len() as u64;
                    });
                    return;
                }
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
