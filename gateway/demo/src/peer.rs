//! The handle a request handler uses to talk back to its client: notifications, logs, progress and server→client requests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::jsonrpc;
use crate::session::{LogLevel, Session};
use crate::sink::EventSink;

/// How long a tool waits for the client to answer sampling or elicitation.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where messages related to one request can go.
#[derive(Clone)]
pub enum Route {
    /// The request's own SSE stream (or the legacy session's stream).
    Stream(EventSink),
    /// A JSON response, which cannot carry anything but the result: what
    /// would have gone on the request's stream goes on the session's GET
    /// stream if one is open (the spec prefers unrelated messages there,
    /// but a client can still match progress tokens and request ids, and
    /// it beats losing them), else nowhere.
    JsonOnly,
}

#[derive(Clone)]
pub struct Peer {
    route: Route,
    session: Option<Arc<Session>>,
    request_ids: Arc<AtomicU64>,
    progress_token: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerError {
    /// No stream is open on which the request could travel.
    NoChannel,
    /// Stateless requests have no session to route the answer back to.
    NoSession,
    TimedOut,
    /// The client answered with a JSON-RPC error.
    Remote(Value),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::NoChannel => write!(f, "no open stream to send the request to the client"),
            PeerError::NoSession => write!(f, "server-to-client requests need a session"),
            PeerError::TimedOut => write!(f, "the client did not answer in time"),
            PeerError::Remote(error) => write!(f, "the client answered with an error: {error}"),
        }
    }
}

impl Peer {
    pub fn new(
        route: Route,
        session: Option<Arc<Session>>,
        request_ids: Arc<AtomicU64>,
        params: &Value,
    ) -> Self {
        let progress_token = params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"))
            .filter(|token| token.is_string() || token.is_number())
            .cloned();
        Self {
            route,
            session,
            request_ids,
            progress_token,
        }
    }

    /// Whether this request has a stream of its own (not a JSON response).
    pub fn has_stream(&self) -> bool {
        matches!(self.route, Route::Stream(_))
    }

    /// The stream messages for this request go to right now, if any.
    fn sink(&self) -> Option<EventSink> {
        match &self.route {
            Route::Stream(sink) => Some(sink.clone()),
            Route::JsonOnly => self.session.as_ref()?.standalone(),
        }
    }

    pub fn has_progress_token(&self) -> bool {
        self.progress_token.is_some()
    }

    pub async fn notify(&self, method: &str, params: Value) -> bool {
        match self.sink() {
            Some(sink) => sink.send(&jsonrpc::notification(method, params)).await,
            None => false,
        }
    }

    /// `notifications/message`, subject to the session's `logging/setLevel`.
    pub async fn log(&self, level: LogLevel, logger: &str, data: Value) -> bool {
        if let Some(session) = &self.session {
            if !session.wants_log(level) {
                return false;
            }
        }
        let params = json!({ "level": level.as_str(), "logger": logger, "data": data });
        self.notify("notifications/message", params).await
    }

    /// `notifications/progress`, only when the request asked for it with a token.
    pub async fn progress(&self, progress: u64, total: u64, message: &str) -> bool {
        let Some(token) = &self.progress_token else {
            return false;
        };
        let params = json!({
            "progressToken": token,
            "progress": progress,
            "total": total,
            "message": message,
        });
        self.notify("notifications/progress", params).await
    }

    /// Closes the client's connection to this request's stream while the
    /// request goes on; the client resumes with GET + `Last-Event-ID` after
    /// `retry`. `false` (nothing done) when the stream is not resumable.
    pub async fn close_stream(&self, retry: Duration) -> bool {
        match &self.route {
            Route::Stream(sink) if sink.is_resumable() => {
                let retry = format!("retry: {}\n\n", retry.as_millis());
                sink.send_raw(retry.into()).await;
                sink.detach();
                true
            }
            _ => false,
        }
    }

    /// Sends a request to the client and waits for the response it POSTs
    /// back, which the transport matches to us by id through the session.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, PeerError> {
        let session = self.session.as_ref().ok_or(PeerError::NoSession)?;
        let sink = self.sink().ok_or(PeerError::NoChannel)?;
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let key = jsonrpc::id_key(&json!(id));
        let answer = session.expect_response(key.clone());
        // Unregisters the waiter however this future ends (even if aborted).
        let _pending = PendingGuard { session, key };
        if !sink.send(&jsonrpc::request(id, method, params)).await {
            return Err(PeerError::NoChannel);
        }
        let message = match tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, answer).await {
            Ok(Ok(message)) => message,
            // The session ended while we waited.
            Ok(Err(_)) => return Err(PeerError::NoChannel),
            Err(_) => return Err(PeerError::TimedOut),
        };
        match (message.get("result"), message.get("error")) {
            (Some(result), None) => Ok(result.clone()),
            (_, Some(error)) => Err(PeerError::Remote(error.clone())),
            (None, None) => Err(PeerError::Remote(json!("response without result"))),
        }
    }
}

struct PendingGuard<'a> {
    session: &'a Session,
    key: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.session.forget_response(&self.key);
    }
}
