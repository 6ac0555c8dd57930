//! A request's trace as it goes (`Trace`: its ids, the caller's context,
//! the phases timed) and the spans it becomes when it ends (`SpanData`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::context::{self, SpanId, TraceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    Server,
    Client,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Static(&'static str),
    Int(i64),
    Bool(bool),
}

/// One span, ready to encode.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub remote_parent: bool,
    pub trace_state: Option<Box<str>>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    /// Status error with this message; `None`: unset.
    pub error: Option<String>,
}

/// A phase of the request that cost time, timed on the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Phase {
    name: &'static str,
    kind: Kind,
    start: Instant,
    end: Instant,
}

/// A request's trace context: continued from the caller's `traceparent` or
/// started here. Phases are kept only when the trace is sampled.
#[derive(Debug)]
pub struct Trace {
    pub trace_id: TraceId,
    /// The caller's span, when it sent a valid `traceparent`.
    pub parent: Option<SpanId>,
    /// This request's server span.
    pub span_id: SpanId,
    /// The client span of the upstream exchange: the parent upstreams see.
    pub upstream_span: SpanId,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on as sent.
    pub state: Option<Box<str>>,
    /// The caller sent a `tracestate` (kept in `state` or dropped).
    pub(super) caller_state: bool,
    phases: Vec<Phase>,
}

impl Trace {
    pub(super) fn new(
        trace_id: TraceId,
        parent: Option<SpanId>,
        sampled: bool,
        state: Option<Box<str>>,
        caller_state: bool,
    ) -> Trace {
        Trace {
            trace_id,
            parent,
            span_id: context::new_span_id(),
            upstream_span: context::new_span_id(),
            sampled,
            state,
            caller_state,
            phases: Vec::new(),
        }
    }

    /// Now, when the phases of this trace are kept.
    pub fn clock(&self) -> Option<Instant> {
        self.sampled.then(Instant::now)
    }

    /// A phase that began at `start` ends now.
    pub fn phase(&mut self, name: &'static str, start: Instant) {
        if self.sampled {
            self.timed(name, Kind::Internal, start, Instant::now());
        }
    }

    fn timed(&mut self, name: &'static str, kind: Kind, start: Instant, end: Instant) {
        if self.sampled {
            if self.phases.capacity() == 0 {
                self.phases.reserve_exact(6);
            }
            self.phases.push(Phase {
                name,
                kind,
                start,
                end,
            });
        }
    }

    /// The upstream exchange: sent at `sent`, its answer's head at `head`
    /// (when one came), over now. A streamed answer is a phase of its own.
    pub fn upstream(&mut self, sent: Instant, head: Option<Instant>, streamed: bool) {
        let now = Instant::now();
        self.timed("upstream", Kind::Client, sent, now);
        if let (Some(head), true) = (head, streamed) {
            self.timed("stream", Kind::Internal, head, now);
        }
    }

    /// The `traceparent` toward upstreams: this trace, the upstream span.
    pub fn traceparent(&self) -> [u8; 55] {
        context::traceparent(&self.trace_id, &self.upstream_span, self.sampled)
    }

    /// The trace id in lower-case hex (logs, audit).
    pub fn trace_id_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        context::write_hex(&self.trace_id, &mut s);
        s
    }

    /// The request's spans: the server span `root` (name, attributes,
    /// error) started at `started`, and its phases under it.
    pub fn spans(&self, started: Instant, root: Root) -> Vec<SpanData> {
        let now = Instant::now();
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let unix = |t: Instant| {
            wall_now.saturating_sub(now.saturating_duration_since(t).as_nanos() as u64)
        };
        let mut out = Vec::with_capacity(1 + self.phases.len());
        out.push(SpanData {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            remote_parent: self.parent.is_some(),
            trace_state: self.state.clone(),
            name: root.name,
            kind: Kind::Server,
            start_unix_ns: unix(started),
            end_unix_ns: wall_now,
            attributes: root.attributes,
            error: root.error,
        });
        for p in &self.phases {
            let client = p.kind == Kind::Client;
            out.push(SpanData {
                trace_id: self.trace_id,
                span_id: if client {
                    self.upstream_span
                } else {
                    context::new_span_id()
                },
                parent: Some(self.span_id),
                remote_parent: false,
                trace_state: self.state.clone(),
                name: p.name.to_owned(),
                kind: p.kind,
                start_unix_ns: unix(p.start),
                end_unix_ns: unix(p.end),
                attributes: Vec::new(),
                error: if client {
                    root.upstream_error.clone()
                } else {
                    None
                },
            });
        }
        out
    }
}

/// What the server span says, from the finished request.
pub struct Root {
    pub name: String,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub error: Option<String>,
    /// The upstream exchange failed this way.
    pub upstream_error: Option<String>,
}
