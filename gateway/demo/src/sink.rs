//! Where handlers write SSE events: stream senders, the per-session event log, and resumption by `Last-Event-ID`.
//!
//! A session's streams are resumable (2025-11-25): every event with an id is
//! also kept, bounded, in the session's log. When a client loses a stream
//! it sends GET with `Last-Event-ID`; the missed events are replayed and
//! the stream's sender is re-pointed at the new connection, so a call still
//! running delivers the rest there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::locks::lock;
use crate::sse::{message_event, priming_event};

/// Events buffered per stream before a handler waits for the client to read.
const STREAM_BUFFER: usize = 256;
/// The log is for reconnects after short gaps, not an archive: a session
/// keeps at most this many events and bytes (load tests run many sessions).
const LOG_EVENTS: usize = 256;
const LOG_BYTES: usize = 1024 * 1024;

/// Where `id:` values come from: one counter per server, so ids never repeat
/// across the streams a gateway multiplexes.
pub type EventIds = Arc<AtomicU64>;

pub fn next_id(ids: &EventIds) -> u64 {
    ids.fetch_add(1, Ordering::Relaxed)
}

/// Writes JSON-RPC messages as `event: message` into one SSE stream.
/// Clones share the stream, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<Target>,
}

struct Target {
    /// `None` once detached: a resumable stream then only logs.
    tx: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// `None` for the legacy transport, whose events carry no ids.
    ids: Option<EventIds>,
    /// The session log and this stream's number in it, if resumable.
    log: Option<(Arc<EventLog>, u64)>,
}

impl EventSink {
    /// Sends one message. `false` means it will never reach the client:
    /// the client left and the stream cannot be resumed.
    pub async fn send(&self, message: &Value) -> bool {
        let id = self.inner.ids.as_ref().map(next_id);
        let event = message_event(id, &message.to_string());
        // Logged and sender taken under one lock, so a concurrent resume
        // either replays this event or hands over the new sender, never both.
        let tx = {
            let tx = lock(&self.inner.tx);
            if let (Some((log, stream)), Some(id)) = (&self.inner.log, id) {
                log.record(id, *stream, Some(event.clone()));
            }
            tx.clone()
        };
        let delivered = match tx {
            Some(tx) => tx.send(event).await.is_ok(),
            None => false,
        };
        delivered || self.inner.log.is_some()
    }

    /// Bytes outside any event (a `retry:` line); never logged.
    pub async fn send_raw(&self, bytes: Bytes) -> bool {
        let tx = lock(&self.inner.tx).clone();
        match tx {
            Some(tx) => tx.send(bytes).await.is_ok(),
            None => false,
        }
    }

    /// The priming event that opens a stream, logged so that resuming from
    /// its id finds this stream.
    pub fn priming(&self) -> Option<Bytes> {
        let id = next_id(self.inner.ids.as_ref()?);
        if let Some((log, stream)) = &self.inner.log {
            log.record(id, *stream, None);
        }
        Some(priming_event(id))
    }

    pub fn is_resumable(&self) -> bool {
        self.inner.log.is_some()
    }

    /// Ends the client's connection while the stream lives on in the log
    /// (SEP-1699 polling: the client comes back with `Last-Event-ID`).
    pub fn detach(&self) {
        lock(&self.inner.tx).take();
    }

    /// Whether nothing sent now would reach a connected client.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.tx)
            .as_ref()
            .is_none_or(mpsc::Sender::is_closed)
    }
}

/// A stream that cannot be resumed (legacy transport, stateless requests).
pub fn channel(ids: Option<EventIds>) -> (EventSink, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let inner = Arc::new(Target {
        tx: Mutex::new(Some(tx)),
        ids,
        log: None,
    });
    (EventSink { inner }, rx)
}

/// A session stream whose events are logged for resumption.
pub fn resumable(ids: EventIds, log: &Arc<EventLog>) -> (EventSink, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let stream = log.next_stream.fetch_add(1, Ordering::Relaxed);
    let inner = Arc::new(Target {
        tx: Mutex::new(Some(tx)),
        ids: Some(ids),
        log: Some((log.clone(), stream)),
    });
    log.register(stream, &inner);
    (EventSink { inner }, rx)
}

/// Re-attaches a client to the stream that carried event `last_id`: the
/// events it missed, and a receiver for what the stream sends from now on
/// (which ends at once if the stream's work is already done). `None` if the
/// id is unknown or has aged out of the log.
pub fn resume(log: &EventLog, last_id: u64) -> Option<(Vec<Bytes>, mpsc::Receiver<Bytes>)> {
    let stream = log.stream_of(last_id)?;
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let missed = match log.live(stream) {
        Some(target) => {
            let mut current = lock(&target.tx);
            let missed = log.events_after(stream, last_id);
            *current = Some(tx);
            missed
        }
        None => log.events_after(stream, last_id),
    };
    Some((missed, rx))
}

struct Logged {
    id: u64,
    stream: u64,
    /// `None` for priming events: they mark a stream but carry nothing.
    event: Option<Bytes>,
}

/// One session's recent events, by stream.
#[derive(Default)]
pub struct EventLog {
    events: Mutex<(VecDeque<Logged>, usize)>,
    streams: Mutex<HashMap<u64, Weak<Target>>>,
    next_stream: AtomicU64,
}

impl EventLog {
    fn record(&self, id: u64, stream: u64, event: Option<Bytes>) {
        let mut guard = lock(&self.events);
        let (events, bytes) = &mut *guard;
        *bytes += event.as_ref().map_or(0, Bytes::len);
        events.push_back(Logged { id, stream, event });
        while events.len() > LOG_EVENTS || *bytes > LOG_BYTES {
            let Some(old) = events.pop_front() else { break };
            *bytes -= old.event.as_ref().map_or(0, Bytes::len);
        }
    }

    fn register(&self, stream: u64, target: &Arc<Target>) {
        let mut streams = lock(&self.streams);
        // Forget streams whose work is over, so the map stays small.
        streams.retain(|_, target| target.strong_count() > 0);
        streams.insert(stream, Arc::downgrade(target));
    }

    fn live(&self, stream: u64) -> Option<Arc<Target>> {
        lock(&self.streams).get(&stream).and_then(Weak::upgrade)
    }

    fn stream_of(&self, id: u64) -> Option<u64> {
        let guard = lock(&self.events);
        guard
            .0
            .iter()
            .find(|logged| logged.id == id)
            .map(|logged| logged.stream)
    }

    fn events_after(&self, stream: u64, id: u64) -> Vec<Bytes> {
        let guard = lock(&self.events);
        guard
            .0
            .iter()
            .filter(|logged| logged.stream == stream && logged.id > id)
            .filter_map(|logged| logged.event.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> EventIds {
        Arc::new(AtomicU64::new(1))
    }

    #[tokio::test]
    async fn a_detached_stream_resumes_with_what_was_missed() {
        let log = Arc::new(EventLog::default());
        let (sink, mut first) = resumable(ids(), &log);
        let priming = sink.priming().expect("ids");
        assert_eq!(priming, "id: 1\ndata: \n\n");
        assert!(sink.send(&json!({"n": 1})).await);
        assert!(first.recv().await.is_some());
        sink.detach();
        assert!(
            first.recv().await.is_none(),
            "detaching ends the connection"
        );
        assert!(sink.send(&json!({"n": 2})).await, "kept for resumption");

        let (missed, mut resumed) = resume(&log, 2).expect("known id");
        assert_eq!(missed, vec![message_event(Some(3), r#"{"n":2}"#)]);
        assert!(sink.send(&json!({"n": 3})).await);
        assert_eq!(
            resumed.recv().await,
            Some(message_event(Some(4), r#"{"n":3}"#))
        );
        drop(sink);
        assert!(
            resumed.recv().await.is_none(),
            "ends with the stream's work"
        );
    }

    #[tokio::test]
    async fn resuming_from_the_priming_event_replays_everything() {
        let log = Arc::new(EventLog::default());
        let (sink, _rx) = resumable(ids(), &log);
        sink.priming();
        sink.send(&json!({"n": 1})).await;
        drop(sink);
        let (missed, mut rx) = resume(&log, 1).expect("known id");
        assert_eq!(missed.len(), 1);
        assert!(rx.recv().await.is_none());
        assert!(resume(&log, 99).is_none());
    }

    #[tokio::test]
    async fn plain_streams_report_a_departed_client() {
        let (sink, rx) = channel(None);
        drop(rx);
        assert!(sink.is_closed());
        assert!(!sink.send(&json!({})).await);
    }

    #[test]
    fn the_log_is_bounded() {
        let log = EventLog::default();
        for id in 0..(LOG_EVENTS as u64 + 10) {
            log.record(id, 0, Some(Bytes::from_static(b"x")));
        }
        assert_eq!(log.stream_of(0), None);
        assert_eq!(log.events_after(0, 0).len(), LOG_EVENTS);
    }
}
