//! A client's `GET` stream on a virtual server: every source session its
//! sealed session carries is asked for its own event stream, and what they
//! send (`list_changed`, `resources/updated`, log messages, requests to
//! the client) reaches the client on one stream as it comes — a request
//! with an id naming its source (`federation::relay`). A source without a
//! stream is left out; one whose stream fails ends its part (a log line and
//! `sluice_upstream_errors_total`) and the others go on; the client's
//! stream ends when the client goes or every source's has ended.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::super::rpc;
use super::super::Deps;
use super::session::known_session;
use super::{source_failed, tenant_may_use};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::federation::relay;
use crate::federation::seal::SessionState;
use crate::mcp::sse::{write_event, SseParser};
use crate::refusal::Refusal;

/// What a source's message becomes on the client's stream: the closure
/// appends it (or nothing) to the buffer, and says whether the source's
/// part goes on.
pub(super) type Reframe = Box<dyn FnMut(&[u8], &mut Vec<u8>) -> bool + Send>;

/// One source's stream, read event by event.
pub(super) struct Source {
    pub upstream: usize,
    pub answer: h1::Response,
    pub parser: SseParser,
    /// An oversize message was met: the events before it go out, then the
    /// stream ends with the error.
    pub oversize: bool,
    pub frame: Reframe,
}

impl Source {
    pub fn new(ctx: &Ctx, upstream: usize, answer: h1::Response, frame: Reframe) -> Source {
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        Source {
            upstream,
            answer,
            parser: SseParser::new(max),
            oversize: false,
            frame,
        }
    }
}

type Part = std::result::Result<Bytes, (usize, Box<Error>)>;

pub(super) async fn listen(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&sluice_config::Server, Option<&SessionState>),
) -> std::result::Result<Result<()>, Refusal> {
    let Some(state) = sealed else {
        return Err(Refusal::NoSession);
    };
    let binding: std::sync::Arc<str> = super::relay_binding(ctx, Some(state)).into();
    let mut sources = Vec::new();
    for src in &server.sources {
        let i = src.upstream;
        if src.is_http() || !tenant_may_use(ctx, i) {
            continue;
        }
        let Some(s) = known_session(deps, ctx, Some(state), i) else {
            continue;
        };
        match rpc::listen(deps, ctx, &s).await {
            Ok(Some(answer)) => {
                let frame = tagging(ctx, i, binding.clone());
                sources.push(Source::new(ctx, i, answer, frame));
            }
            Ok(None) => {}
            Err(e) => source_failed(deps, ctx, i, &e),
        }
    }
    if sources.is_empty() {
        // As an MCP server without a stream answers.
        return Err(Refusal::MethodNotAllowed);
    }
    Ok(merge(deps, session, ctx, sources, (None, None)).await)
}

/// A source's requests to the client, with ids naming it
/// (`federation::relay`); the rest as sent.
fn tagging(ctx: &Ctx, upstream: usize, binding: std::sync::Arc<str>) -> Reframe {
    let name = ctx.rt.snapshot.upstreams[upstream].name.clone();
    let keys = ctx.rt.session_keys.clone();
    Box::new(move |data, out| {
        let mark = |up: &str, id: &str| keys.mark(&[&binding, up, id]);
        let tagged = relay::tag_request(data, &name, mark);
        write_event(out, tagged.as_deref().unwrap_or(data));
        true
    })
}

/// The sources' streams merged into the client's, as they come, after
/// `first` (an event's data) and — when every source's part has ended —
/// with `last`.
pub(super) async fn merge(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    sources: Vec<Source>,
    (first, last): (Option<Vec<u8>>, Option<Vec<u8>>),
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    session.write_response_header(Box::new(resp), false).await?;
    if let Some(first) = first {
        let mut out = Vec::with_capacity(first.len() + 24);
        write_event(&mut out, &first);
        session
            .write_response_body(Some(Bytes::from(out)), false)
            .await?;
    }
    let mut merged = futures::stream::select_all(sources.into_iter().map(|s| Box::pin(events(s))));
    let mut watch_client = true;
    loop {
        tokio::select! {
            part = merged.next() => match part {
                None => {
                    let last = last.map(|l| {
                        let mut out = Vec::with_capacity(l.len() + 24);
                        write_event(&mut out, &l);
                        Bytes::from(out)
                    });
                    return session.write_response_body(last, true).await;
                }
                Some(Ok(events)) => session.write_response_body(Some(events), false).await?,
                Some(Err((upstream, e))) => source_failed(deps, ctx, upstream, &e),
            },
            // The client going away ends every source's stream.
            r = session.read_body_or_idle(true), if watch_client => match r {
                Err(e) => return Err(e.into_down()),
                Ok(_) => watch_client = false,
            },
        }
    }
}

/// A source's events, re-framed for the client, as they come; an error
/// ends them.
fn events(src: Source) -> impl futures::Stream<Item = Part> {
    futures::stream::unfold(Some(src), |state| async move {
        let mut src = state?;
        loop {
            if src.oversize {
                let e = Error::explain(
                    ErrorType::InvalidHTTPHeader,
                    "a message on the source's stream is larger than the gateway reads",
                )
                .into_up();
                return Some((Err((src.upstream, e)), None));
            }
            let mut raw = BytesMut::new();
            let more = match src.answer.read(|p| raw.extend_from_slice(p)).await {
                Ok(more) => more,
                Err(e) => return Some((Err((src.upstream, e)), None)),
            };
            let mut out = Vec::new();
            let mut oversize = false;
            let mut go_on = true;
            let frame = &mut src.frame;
            src.parser.feed(&raw, |e| {
                if e.oversize || oversize {
                    oversize = true;
                    return;
                }
                if go_on {
                    go_on = frame(e.data, &mut out);
                }
            });
            src.oversize = oversize;
            if !go_on {
                // The source ended its part: what came before goes out.
                return (!out.is_empty()).then(|| (Ok(Bytes::from(out)), None));
            }
            if !out.is_empty() {
                let go_on = more || src.oversize;
                return Some((Ok(Bytes::from(out)), go_on.then_some(src)));
            }
            if !more && !src.oversize {
                return None;
            }
        }
    })
}
