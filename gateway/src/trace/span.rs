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

/// One exchange with a virtual server's source: a client span of its own,
/// whose id is the parent that source saw.
#[derive(Debug, Clone)]
struct SourceSpan {
    id: SpanId,
    upstream: Box<str>,
    method: &'static str,
    start: Instant,
    end: Instant,
    error: Option<String>,
}

/// A source exchange under way (`Trace::source_begin`).
#[derive(Debug, Clone, Copy)]
pub struct SourceStart {
    id: SpanId,
    start: Instant,
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
    /// The parent the next upstream request names: `upstream_span`, or
    /// the span of the source exchange under way.
    current: SpanId,
    sources: Vec<SourceSpan>,
}

impl Trace {
    pub(super) fn new(
        trace_id: TraceId,
        parent: Option<SpanId>,
        sampled: bool,
        state: Option<Box<str>>,
        caller_state: bool,
    ) -> Trace {
        let ids = context::new_span_ids();
        Trace {
            trace_id,
            parent,
            span_id: ids[0],
            upstream_span: ids[1],
            sampled,
            state,
            caller_state,
            phases: Vec::new(),
            current: ids[1],
            sources: Vec::new(),
        }
    }

    /// A sampled request's exchange with a virtual server's source
    /// begins: it gets a span of its own, the parent that source sees
    /// (unsampled, every exchange names `upstream_span`).
    pub fn source_begin(&mut self) -> Option<SourceStart> {
        if !self.sampled {
            return None;
        }
        self.current = context::new_span_id();
        Some(SourceStart {
            id: self.current,
            start: Instant::now(),
        })
    }

    /// The source exchange begun at `at` is over (`error`: how it failed).
    pub fn source_end(
        &mut self,
        at: SourceStart,
        upstream: &str,
        method: &'static str,
        error: Option<String>,
    ) {
        self.sources.push(SourceSpan {
            id: at.id,
            upstream: upstream.into(),
            method,
            start: at.start,
            end: Instant::now(),
            error,
        });
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
    /// Where the sources' exchanges have spans of their own, they stand
    /// for it.
    pub fn upstream(&mut self, sent: Instant, head: Option<Instant>, streamed: bool) {
        let now = Instant::now();
        if self.sources.is_empty() {
            self.timed("upstream", Kind::Client, sent, now);
        }
        if let (Some(head), true) = (head, streamed) {
            self.timed("stream", Kind::Internal, head, now);
        }
    }

    /// The `traceparent` toward upstreams: this trace, the upstream span.
    pub fn traceparent(&self) -> [u8; 55] {
        context::traceparent(&self.trace_id, &self.current, self.sampled)
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
        let mut out = Vec::with_capacity(1 + self.phases.len() + self.sources.len());
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
        for src in &self.sources {
            out.push(SpanData {
                trace_id: self.trace_id,
                span_id: src.id,
                parent: Some(self.span_id),
                remote_parent: false,
                trace_state: self.state.clone(),
                name: "upstream".to_owned(),
                kind: Kind::Client,
                start_unix_ns: unix(src.start),
                end_unix_ns: unix(src.end),
                attributes: vec![
                    ("sluice.upstream", AttrValue::Str(src.upstream.to_string())),
                    ("http.request.method", AttrValue::Static(src.method)),
                ],
                error: src.error.clone(),
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
