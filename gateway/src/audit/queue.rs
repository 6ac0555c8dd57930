//! The hand-off from the data path to the writer task: bounded, and never
//! blocking the sender. When the writer falls behind, events are dropped and
//! counted rather than letting audit back-pressure slow proxied requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::IntCounter;
use tokio::sync::mpsc;

use super::AuditEvent;

/// Constructor namespace for the sender/receiver pair.
pub struct AuditQueue;

impl AuditQueue {
    /// A queue holding at most `capacity` events (at least 1).
    // Returns the two ends, like `mpsc::channel`; there is no queue value to
    // hold on to, so `new` not returning `Self` is intended.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(capacity: usize) -> (AuditSender, AuditReceiver) {
        Self::build(capacity, None)
    }

    /// As [`AuditQueue::new`], also incrementing `dropped` (e.g. a metric
    /// registered in the gateway's registry) for every dropped event.
    pub fn with_drop_counter(capacity: usize, dropped: IntCounter) -> (AuditSender, AuditReceiver) {
        Self::build(capacity, Some(dropped))
    }

    fn build(capacity: usize, metric: Option<IntCounter>) -> (AuditSender, AuditReceiver) {
        // tokio panics on a zero-capacity channel; treat 0 as "smallest".
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            AuditSender {
                tx,
                dropped: Arc::clone(&dropped),
                metric,
            },
            AuditReceiver { rx, dropped },
        )
    }
}

/// The data path's end. Cheap to clone; `send` never blocks or awaits.
#[derive(Clone)]
pub struct AuditSender {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Arc<AtomicU64>,
    metric: Option<IntCounter>,
}

impl AuditSender {
    /// Queues `event`, or drops and counts it if the queue is full or the
    /// writer has stopped.
    pub fn send(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(metric) = &self.metric {
                metric.inc();
            }
        }
    }

    /// Events dropped so far (shared by all clones of this sender).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer's end.
pub struct AuditReceiver {
    rx: mpsc::Receiver<AuditEvent>,
    dropped: Arc<AtomicU64>,
}

impl AuditReceiver {
    /// Waits for the next event; `None` once every sender is gone (or the
    /// queue was closed) and the queue is empty.
    pub async fn recv(&mut self) -> Option<AuditEvent> {
        self.rx.recv().await
    }

    /// The next event if one is queued right now.
    pub fn try_recv(&mut self) -> Option<AuditEvent> {
        self.rx.try_recv().ok()
    }

    /// Stops accepting events (later sends count as drops) while keeping the
    /// ones already queued for draining.
    pub fn close(&mut self) {
        self.rx.close();
    }

    /// Events dropped so far by the senders of this queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
