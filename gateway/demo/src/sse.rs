//! Server-sent-event framing and the streaming response bodies that carry it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::protocol::SESSION_HEADER;

pub fn message_event(id: Option<u64>, json: &str) -> Bytes {
    // serde_json never emits raw newlines, so one `data:` line always suffices.
    match id {
        Some(id) => Bytes::from(format!("event: message\nid: {id}\ndata: {json}\n\n")),
        None => Bytes::from(format!("event: message\ndata: {json}\n\n")),
    }
}

/// The 2025-11-25 priming event: an id the client can resume from, no data.
pub fn priming_event(id: u64) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: \n\n"))
}

/// The legacy transport's first event: where to POST messages.
pub fn endpoint_event(path: &str) -> Bytes {
    Bytes::from(format!("event: endpoint\ndata: {path}\n\n"))
}

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// How often quiet streams get a keep-alive comment: well under common
/// proxy idle timeouts (a gateway, a load balancer) that would cut them.
pub const KEEP_ALIVE_PERIOD: Duration = Duration::from_secs(15);

/// What a streaming body owns while it is open.
pub struct StreamParts {
    /// Events written before anything from the channel (priming, endpoint).
    pub preamble: Vec<Bytes>,
    pub rx: mpsc::Receiver<Bytes>,
    /// Keep-alive period (see `KEEP_ALIVE_PERIOD`); `None` in tests.
    pub keep_alive: Option<Duration>,
    /// Dropped when the client goes away: lets the legacy transport end its session.
    pub on_close: Option<Box<dyn Send>>,
    /// Fires when the server shuts down: long-lived streams would otherwise
    /// keep graceful shutdown waiting forever.
    pub closing: watch::Receiver<bool>,
}

struct Open {
    preamble: VecDeque<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    keep_alive: Option<tokio::time::Interval>,
    closing: watch::Receiver<bool>,
    _on_close: Option<Box<dyn Send>>,
}

async fn tick(keep_alive: &mut Option<tokio::time::Interval>) {
    match keep_alive {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A body that yields each event as soon as it is sent, and ends when every
/// sink is dropped (the request stream is done) or the client disconnects.
pub fn body(parts: StreamParts) -> Body {
    let keep_alive = parts.keep_alive.map(|period| {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let open = Open {
        preamble: parts.preamble.into(),
        rx: parts.rx,
        keep_alive,
        closing: parts.closing,
        _on_close: parts.on_close,
    };
    let stream = futures::stream::unfold(open, |mut open| async move {
        if *open.closing.borrow() {
            return None;
        }
        if let Some(event) = open.preamble.pop_front() {
            return Some((Ok::<_, Infallible>(event), open));
        }
        let next = tokio::select! {
            event = open.rx.recv() => event,
            () = tick(&mut open.keep_alive) => Some(Bytes::from_static(KEEP_ALIVE)),
            _ = open.closing.changed() => None,
        };
        next.map(|event| (Ok(event), open))
    });
    Body::from_stream(stream)
}

/// A 200 `text/event-stream` response around `body`.
pub fn response(body: Body, session_id: Option<&str>) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Tells nginx-style proxies not to buffer: events must arrive when sent.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(value) = session_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(SESSION_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn frames_events_as_the_spec_shows() {
        assert_eq!(
            message_event(Some(3), "{}"),
            "event: message\nid: 3\ndata: {}\n\n"
        );
        assert_eq!(message_event(None, "{}"), "event: message\ndata: {}\n\n");
        assert_eq!(priming_event(0), "id: 0\ndata: \n\n");
        assert_eq!(
            endpoint_event("/message?sessionId=ab"),
            "event: endpoint\ndata: /message?sessionId=ab\n\n"
        );
    }

    #[tokio::test]
    async fn body_ends_when_the_last_sink_is_dropped() {
        use http_body_util_shim::collect;
        let (sink, rx) = sink::channel(Some(Arc::new(AtomicU64::new(1))));
        let (_closing_tx, closing) = watch::channel(false);
        let body = body(StreamParts {
            preamble: vec![priming_event(0)],
            rx,
            keep_alive: None,
            on_close: None,
            closing,
        });
        assert!(sink.send(&serde_json::json!({"a": 1})).await);
        drop(sink);
        let text = collect(body).await;
        assert_eq!(
            text,
            "id: 0\ndata: \n\nevent: message\nid: 1\ndata: {\"a\":1}\n\n"
        );
    }

    #[tokio::test]
    async fn body_ends_when_the_server_closes() {
        let (_sink, rx) = sink::channel(None);
        let (closing_tx, closing) = watch::channel(false);
        let body = body(StreamParts {
            preamble: vec![],
            rx,
            keep_alive: Some(Duration::from_secs(3600)),
            on_close: None,
            closing,
        });
        closing_tx.send_replace(true);
        assert_eq!(http_body_util_shim::collect(body).await, "");
    }

    /// Reads a whole body without pulling in http-body-util just for tests.
    mod http_body_util_shim {
        use axum::body::Body;
        use futures::StreamExt;

        pub async fn collect(body: Body) -> String {
            let mut stream = body.into_data_stream();
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.expect("in-memory body"));
            }
            String::from_utf8(out).expect("utf-8")
        }
    }
}
