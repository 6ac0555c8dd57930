//! Virtual servers' sources that speak only the legacy HTTP+SSE transport
//! (2024-11-05), as this replica holds them: each source session is an
//! event stream kept open, known by an id of 128 random bits (what the
//! client's sealed session carries), with where its messages are posted,
//! the requests waiting for their answers on the stream (matched by id, as
//! a value) and what the source sent unasked, kept until the session's own
//! stream (`GET`) takes it. Nothing here is shared between replicas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use sluice_config::locks::Recover;

use super::legacy::Refused;

/// The most source streams one replica holds.
pub const MAX_SOURCE_STREAMS: usize = 10_000;

/// Messages a source sent unasked, kept for the session's own stream; past
/// this they are dropped (and counted by the caller).
pub const UNASKED_BACKLOG: usize = 64;

/// A stream no request used for this long is ended at the next opening.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// One source session: the event stream's state.
pub struct SourceStream {
    /// The upstream it was opened to, and the caller it was opened for
    /// (`subject\0tenant`): an id is good for that pair only.
    pub upstream: String,
    pub owner: String,
    /// Path and query on the upstream's own origin where messages go.
    pub endpoint: String,
    waiting: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
    unasked_tx: Mutex<Option<mpsc::Sender<Bytes>>>,
    unasked_rx: Mutex<Option<mpsc::Receiver<Bytes>>>,
    used: Mutex<Instant>,
    reader: Mutex<Option<tokio::task::AbortHandle>>,
    ended: AtomicBool,
}

/// What became of a message the stream carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The answer a request was waiting for.
    Answered,
    /// Sent unasked (a notification, a request to the client, an answer
    /// nobody waits for): kept for the session's own stream.
    Unasked,
    /// Unasked, and the backlog was full (or the stream ended).
    Dropped,
}

/// The key a JSON-RPC id is matched by: its JSON text, so that `1` and
/// `"1"` stay apart.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

impl SourceStream {
    pub fn new(upstream: String, owner: String, endpoint: String) -> SourceStream {
        let (tx, rx) = mpsc::channel(UNASKED_BACKLOG);
        SourceStream {
            upstream,
            owner,
            endpoint,
            waiting: Mutex::new(HashMap::new()),
            unasked_tx: Mutex::new(Some(tx)),
            unasked_rx: Mutex::new(Some(rx)),
            used: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
            ended: AtomicBool::new(false),
        }
    }

    /// The task reading the stream: aborted when the session ends.
    pub fn set_reader(&self, reader: tokio::task::AbortHandle) {
        *self.reader.lock().recover() = Some(reader);
    }

    /// Wait for the answer to the request with id `key`.
    pub fn expect(&self, key: String) -> oneshot::Receiver<Bytes> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().recover().insert(key, tx);
        rx
    }

    /// No longer wait for `key` (the request failed or timed out).
    pub fn forget(&self, key: &str) {
        self.waiting.lock().recover().remove(key);
    }

    /// One message (not a batch) the stream carried.
    pub fn deliver(&self, message: Bytes) -> Delivery {
        let answer_to = serde_json::from_slice::<Value>(&message)
            .ok()
            .filter(|v| {
                v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some())
            })
            .and_then(|v| v.get("id").map(id_key));
        if let Some(key) = answer_to {
            if let Some(tx) = self.waiting.lock().recover().remove(&key) {
                let _ = tx.send(message);
                return Delivery::Answered;
            }
        }
        match &*self.unasked_tx.lock().recover() {
            Some(tx) if tx.try_send(message).is_ok() => Delivery::Unasked,
            _ => Delivery::Dropped,
        }
    }

    /// What the source sends unasked, for the session's own stream; `None`
    /// while another stream has it.
    pub fn take_unasked(&self) -> Option<mpsc::Receiver<Bytes>> {
        self.unasked_rx.lock().recover().take()
    }

    /// The session's own stream went: what comes next is kept for the next.
    pub fn give_back_unasked(&self, rx: mpsc::Receiver<Bytes>) {
        if !self.is_ended() {
            *self.unasked_rx.lock().recover() = Some(rx);
        }
    }

    /// The stream is over (ended by the client, the source or idleness):
    /// waiting requests fail, the session's own stream ends.
    pub fn end(&self) {
        self.ended.store(true, Ordering::Release);
        if let Some(r) = self.reader.lock().recover().take() {
            r.abort();
        }
        self.waiting.lock().recover().clear();
        self.unasked_tx.lock().recover().take();
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn idle(&self, now: Instant) -> bool {
        now.duration_since(*self.used.lock().recover()) >= IDLE
    }
}

/// The source streams of this replica, by id.
#[derive(Default)]
pub struct SourceStreams {
    map: Mutex<HashMap<String, Arc<SourceStream>>>,
}

impl SourceStreams {
    /// Keep `stream` under a new id. Ended and idle streams are let go of
    /// first; past `MAX_SOURCE_STREAMS` the opening is refused.
    pub fn insert(&self, stream: SourceStream) -> Result<(String, Arc<SourceStream>), Refused> {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Refused::NoRandom)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let stream = Arc::new(stream);
        let now = Instant::now();
        let mut g = self.map.lock().recover();
        g.retain(|_, s| {
            let keep = !s.is_ended() && !s.idle(now);
            if !keep {
                s.end();
            }
            keep
        });
        if g.len() >= MAX_SOURCE_STREAMS {
            return Err(Refused::Full);
        }
        g.insert(id.clone(), stream.clone());
        Ok((id, stream))
    }

    /// The live stream `id`, if it was opened to `upstream` for `owner`.
    pub fn get(&self, id: &str, upstream: &str, owner: &str) -> Option<Arc<SourceStream>> {
        let s = self.map.lock().recover().get(id).cloned()?;
        if s.is_ended() || s.upstream != upstream || s.owner != owner {
            return None;
        }
        *s.used.lock().recover() = Instant::now();
        Some(s)
    }

    /// End and let go of the stream `id` (its client ended the session).
    pub fn remove(&self, id: &str, upstream: &str, owner: &str) {
        let mut g = self.map.lock().recover();
        if g.get(id)
            .is_some_and(|s| s.upstream == upstream && s.owner == owner)
        {
            if let Some(s) = g.remove(id) {
                s.end();
            }
        }
    }

    /// Streams still open (an ended one is let go of at the next opening).
    pub fn live(&self) -> usize {
        let g = self.map.lock().recover();
        g.values().filter(|s| !s.is_ended()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_go_to_their_request_by_id_value_and_the_rest_waits() {
        let s = SourceStream::new("up".into(), "alice\0".into(), "/m".into());
        let one = s.expect(id_key(&Value::from(1)));
        let text = s.expect(id_key(&Value::from("1")));
        assert_eq!(
            s.deliver(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":"1","result":{}}"#
            )),
            Delivery::Answered
        );
        assert_eq!(
            text.await.expect("answered"),
            br#"{"jsonrpc":"2.0","id":"1","result":{}}"#[..]
        );
        // A request from the source with the same id is not an answer.
        assert_eq!(
            s.deliver(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
            )),
            Delivery::Unasked
        );
        assert_eq!(
            s.deliver(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#
            )),
            Delivery::Answered
        );
        assert!(one.await.is_ok());
        // An answer nobody waits for, and notifications, are unasked.
        assert_eq!(
            s.deliver(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":9,"result":{}}"#
            )),
            Delivery::Unasked
        );
        let mut rx = s.take_unasked().expect("unasked");
        assert!(s.take_unasked().is_none(), "one taker at a time");
        assert!(rx
            .recv()
            .await
            .expect("ping")
            .starts_with(br#"{"jsonrpc":"2.0","id":1,"method""#));
        s.give_back_unasked(rx);
        assert!(s.take_unasked().is_some());
    }

    #[tokio::test]
    async fn the_backlog_is_bounded_and_an_ended_stream_fails_its_waiters() {
        let s = SourceStream::new("up".into(), "o".into(), "/m".into());
        let note = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#);
        for _ in 0..UNASKED_BACKLOG {
            assert_eq!(s.deliver(note.clone()), Delivery::Unasked);
        }
        assert_eq!(s.deliver(note.clone()), Delivery::Dropped);
        let waiting = s.expect(id_key(&Value::from(5)));
        s.end();
        assert!(waiting.await.is_err(), "the waiter learns the stream ended");
        assert_eq!(s.deliver(note), Delivery::Dropped);
    }

    #[test]
    fn an_id_is_good_only_for_its_upstream_and_caller() {
        let streams = SourceStreams::default();
        let (id, _) = streams
            .insert(SourceStream::new(
                "up".into(),
                "alice\0".into(),
                "/m".into(),
            ))
            .expect("insert");
        assert!(streams.get(&id, "up", "alice\0").is_some());
        assert!(streams.get(&id, "other", "alice\0").is_none());
        assert!(streams.get(&id, "up", "bob\0").is_none());
        streams.remove(&id, "up", "bob\0");
        assert!(
            streams.get(&id, "up", "alice\0").is_some(),
            "not bob's to end"
        );
        streams.remove(&id, "up", "alice\0");
        assert!(streams.get(&id, "up", "alice\0").is_none());
        assert_eq!(streams.live(), 0);
    }
}
