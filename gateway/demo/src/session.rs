//! Sessions of the stateful eras: ids, negotiated revision, log level, subscriptions, streams and in-flight work.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::locks::lock;
use crate::sink::{EventLog, EventSink};

/// Sessions nobody used for this long are forgotten, so load tests that
/// never send DELETE do not grow the server without bound.
const IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);
/// How often creating a session may trigger a sweep of idle ones.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// 128 random bits as 32 lowercase hex digits.
pub fn new_session_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/mcp` with `Mcp-Session-Id`.
    Streamable,
    /// `/sse` + `/message?sessionId=`: every message travels on the one stream.
    Legacy,
}

/// RFC 5424 severities as MCP names them, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub fn parse(name: &str) -> Option<LogLevel> {
        Some(match name {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "notice" => LogLevel::Notice,
            "warning" => LogLevel::Warning,
            "error" => LogLevel::Error,
            "critical" => LogLevel::Critical,
            "alert" => LogLevel::Alert,
            "emergency" => LogLevel::Emergency,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }
}

pub struct Session {
    pub id: String,
    pub transport: Transport,
    version: Mutex<String>,
    client_capabilities: Mutex<Value>,
    /// `None` until `logging/setLevel`: until then every message is sent.
    log_level: Mutex<Option<LogLevel>>,
    subscriptions: Mutex<HashSet<String>>,
    /// The GET stream (Streamable) or the only stream (Legacy).
    standalone: Mutex<Option<EventSink>>,
    /// Server→client requests awaiting the client's response, by id key.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Client requests still running, by id key, so `notifications/cancelled` can stop them.
    in_flight: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    in_flight_seq: AtomicU64,
    /// Recent events of this session's streams, for `Last-Event-ID`.
    pub events: Arc<EventLog>,
    last_used: Mutex<Instant>,
}

impl Session {
    fn new(id: String, transport: Transport, version: &str) -> Self {
        Self {
            id,
            transport,
            version: Mutex::new(version.to_owned()),
            client_capabilities: Mutex::new(Value::Null),
            log_level: Mutex::new(None),
            subscriptions: Mutex::new(HashSet::new()),
            standalone: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            in_flight_seq: AtomicU64::new(0),
            events: Arc::default(),
            last_used: Mutex::new(Instant::now()),
        }
    }

    pub fn version(&self) -> String {
        lock(&self.version).clone()
    }

    /// Records what `initialize` settled (the legacy transport learns it late).
    pub fn initialized(&self, version: &str, client_capabilities: Value) {
        *lock(&self.version) = version.to_owned();
        *lock(&self.client_capabilities) = client_capabilities;
    }

    /// Whether the client declared `name` (e.g. "sampling") at initialize.
    pub fn client_supports(&self, name: &str) -> bool {
        lock(&self.client_capabilities).get(name).is_some()
    }

    pub fn set_log_level(&self, level: LogLevel) {
        *lock(&self.log_level) = Some(level);
    }

    pub fn wants_log(&self, level: LogLevel) -> bool {
        lock(&self.log_level).is_none_or(|threshold| level >= threshold)
    }

    pub fn subscribe(&self, uri: &str) {
        lock(&self.subscriptions).insert(uri.to_owned());
    }

    pub fn unsubscribe(&self, uri: &str) {
        lock(&self.subscriptions).remove(uri);
    }

    pub fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.subscriptions).contains(uri)
    }

    /// Installs the stream for unsolicited messages; a newer GET replaces an
    /// older one (whose client has most likely gone) instead of being refused.
    pub fn set_standalone(&self, sink: EventSink) {
        *lock(&self.standalone) = Some(sink);
    }

    pub fn standalone(&self) -> Option<EventSink> {
        lock(&self.standalone)
            .as_ref()
            .filter(|sink| !sink.is_closed())
            .cloned()
    }

    /// Registers a server→client request before it is sent.
    pub fn expect_response(&self, key: String) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(key, tx);
        rx
    }

    pub fn forget_response(&self, key: &str) {
        lock(&self.pending).remove(key);
    }

    /// Hands the client's response to whoever waits for it; `false` if nobody does.
    pub fn deliver_response(&self, key: &str, message: Value) -> bool {
        match lock(&self.pending).remove(key) {
            Some(waiter) => waiter.send(message).is_ok(),
            None => false,
        }
    }

    /// Marks a client request as running; the receiver fires on cancellation.
    /// The returned ticket lets the request unregister only its own entry,
    /// even if the client reuses the id later.
    pub fn start_request(&self, key: String) -> (u64, oneshot::Receiver<()>) {
        let ticket = self.in_flight_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.in_flight).insert(key, (ticket, tx));
        (ticket, rx)
    }

    pub fn finish_request(&self, key: &str, ticket: u64) {
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(key).is_some_and(|(t, _)| *t == ticket) {
            in_flight.remove(key);
        }
    }

    pub fn cancel_request(&self, key: &str) -> bool {
        match lock(&self.in_flight).remove(key) {
            Some((_, cancel)) => cancel.send(()).is_ok(),
            None => false,
        }
    }

    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    /// A session with an open stream is in use however quiet it is.
    fn is_idle(&self, now: Instant) -> bool {
        let quiet = now.duration_since(*lock(&self.last_used)) > IDLE_LIMIT;
        quiet && self.standalone().is_none() && lock(&self.in_flight).is_empty()
    }
}

/// All live sessions of one server.
pub struct SessionStore {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    last_sweep: Mutex<Instant>,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            last_sweep: Mutex::new(Instant::now()),
        }
    }
}

impl SessionStore {
    pub fn create(&self, transport: Transport, version: &str) -> std::io::Result<Arc<Session>> {
        self.sweep_idle();
        let session = Arc::new(Session::new(new_session_id()?, transport, version));
        lock(&self.sessions).insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let session = lock(&self.sessions).get(id).cloned()?;
        session.touch();
        Some(session)
    }

    /// Ends a session: its standalone stream closes once the last sink
    /// clone is dropped, and waiting server→client requests fail.
    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let session = lock(&self.sessions).remove(id)?;
        lock(&session.standalone).take();
        lock(&session.pending).clear();
        Some(session)
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }

    fn sweep_idle(&self) {
        let now = Instant::now();
        {
            let mut last = lock(&self.last_sweep);
            if now.duration_since(*last) < SWEEP_EVERY {
                return;
            }
            *last = now;
        }
        lock(&self.sessions).retain(|_, session| !session.is_idle(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn session_ids_are_128_bit_hex_and_distinct() {
        let a = new_session_id().expect("os randomness");
        let b = new_session_id().expect("os randomness");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn log_level_filters_below_threshold() {
        let store = SessionStore::default();
        let session = store
            .create(Transport::Streamable, "2025-11-25")
            .expect("session");
        assert!(session.wants_log(LogLevel::Debug));
        session.set_log_level(LogLevel::Warning);
        assert!(!session.wants_log(LogLevel::Info));
        assert!(session.wants_log(LogLevel::Error));
    }

    #[tokio::test]
    async fn responses_reach_their_waiter_once() {
        let store = SessionStore::default();
        let session = store
            .create(Transport::Streamable, "2025-11-25")
            .expect("session");
        let rx = session.expect_response("1".into());
        assert!(session.deliver_response("1", json!({"result": {}})));
        assert!(!session.deliver_response("1", json!({"result": {}})));
        assert_eq!(rx.await.expect("delivered"), json!({"result": {}}));
    }

    #[test]
    fn finishing_an_old_request_keeps_a_newer_one_with_the_same_id() {
        let store = SessionStore::default();
        let session = store
            .create(Transport::Streamable, "2025-11-25")
            .expect("session");
        let (old, _old_rx) = session.start_request("7".into());
        let (_new, _new_rx) = session.start_request("7".into());
        session.finish_request("7", old);
        assert!(session.cancel_request("7"));
    }
}
