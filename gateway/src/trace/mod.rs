//! OpenTelemetry traces (`traces` in config): each request's W3C trace
//! context — continued from the caller's `traceparent`/`tracestate` or
//! started here, sampled by ratio or by the caller's flag — passed to
//! upstreams; a sampled request's server span and the spans of its phases
//! handed to the exporter's bounded queue, never waited on (`export`).

pub mod context;
mod export;
mod otlp;
pub mod span;

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use http::HeaderMap;

pub use span::{AttrValue, Root, SpanData, Trace};

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

pub struct Tracer {
    ratio: context::Ratio,
    parent_based: bool,
    tx: SyncSender<export::Item>,
    metrics: export::Counters,
}

impl Tracer {
    /// Start the exporter for `cfg` (its secrets read now).
    pub fn start(
        cfg: &sluice_config::Traces,
        spans: prometheus::IntCounterVec,
    ) -> anyhow::Result<Tracer> {
        let metrics = export::Counters::new(spans);
        let (tx, rx) = sync_channel(cfg.max_queue);
        export::spawn(cfg, rx, metrics.clone())?;
        Ok(Tracer {
            ratio: context::Ratio::new(cfg.sample_ratio),
            parent_based: cfg.parent_based,
            tx,
            metrics,
        })
    }

    /// The trace of a request with these headers: the caller's continued
    /// when its `traceparent` is valid, else a new one.
    pub fn begin(&self, headers: &HeaderMap) -> Trace {
        let parent = headers
            .get(&TRACEPARENT)
            .and_then(|v| context::parse_traceparent(v.as_bytes()));
        let caller_state = headers.get(&TRACESTATE);
        let Some(p) = parent else {
            // A tracestate without a valid traceparent is dropped.
            let id = context::new_trace_id();
            let sampled = self.ratio.sampled(&id);
            return Trace::new(id, None, sampled, None, caller_state.is_some());
        };
        let sampled = if self.parent_based {
            p.sampled
        } else {
            self.ratio.sampled(&p.trace_id)
        };
        let state = caller_state
            .filter(|v| context::valid_tracestate(v.as_bytes()))
            .and_then(|v| v.to_str().ok())
            .map(Into::into);
        Trace::new(
            p.trace_id,
            Some(p.span_id),
            sampled,
            state,
            caller_state.is_some(),
        )
    }

    /// Queue a finished request's spans; a full queue drops them (counted).
    pub fn finish(&self, spans: Vec<SpanData>) {
        let n = spans.len() as u64;
        match self.tx.try_send(export::Item::Spans(spans)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics.dropped.inc_by(n)
            }
        }
    }

    /// Export what is queued now (shutdown), waiting up to `within` for the
    /// exporter to say it is done. Blocks: call it off the runtime.
    pub fn flush(&self, within: std::time::Duration) -> bool {
        let (done, wait) = std::sync::mpsc::channel();
        let deadline = std::time::Instant::now() + within;
        let mut item = export::Item::Flush(done);
        loop {
            match self.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .is_ok()
    }
}

/// Set the trace context headers of an upstream request (the caller's are
/// replaced: the upstream's parent is the gateway's span).
pub fn propagate(trace: &Trace, req: &mut pingora::http::RequestHeader) -> pingora::Result<()> {
    // Hex and dashes: always a valid header value.
    let parent = http::HeaderValue::from_bytes(&trace.traceparent())
        .map_err(|_| pingora::Error::explain(pingora::ErrorType::InternalError, "traceparent"))?;
    // Names as static text: Pingora keeps them as they are, where a
    // `HeaderName` would be copied into a title-cased name first.
    req.insert_header("traceparent", parent)?;
    match &trace.state {
        Some(s) => req.insert_header("tracestate", &**s)?,
        None if trace.caller_state => {
            req.remove_header(&TRACESTATE);
        }
        None => {}
    }
    Ok(())
}
