//! What the gateway does with an MCP answer, whichever path carries it
//! (Pingora's loop, the gateway's own client, a held stream): at its head,
//! the watchers start and sessions are bound; with each chunk, a call past
//! its whole-call deadline is cut, the legacy `endpoint` event is
//! rewritten, the inspector reads, the list filter filters and a catalog
//! is learnt.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};

use crate::ctx::Ctx;
use crate::failure::Failure;
use crate::mcp::Method;
use crate::sessions::legacy_key;
use crate::state::Shared;

const MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// The answer's head: start watching it (JSON or SSE), bind or end the
/// caller's session, and drop a length the watchers will change.
pub fn head(shared: &Shared, resp: &mut ResponseHeader, ctx: &mut Ctx) {
    let t = Instant::now();
    let ct = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let snap = &ctx.rt.snapshot;
    let max = snap.max_inspected_response_bytes as usize;
    let x = &mut ctx.exchange;
    x.inspector.hash_definitions = !snap.approvals.is_empty();
    x.inspector.start(ct, ctx.request.facts.as_ref(), max);
    if let Some(c) = &ctx.caller {
        let ok = resp.status.is_success();
        if let Some(sid) = resp
            .headers
            .get(&MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
        {
            let initialize = ctx
                .request
                .facts
                .as_ref()
                .is_some_and(|f| f.first().method == Method::Initialize);
            let url_elicitation = initialize
                && ctx
                    .request
                    .body
                    .as_deref()
                    .is_some_and(crate::approval::declares_url_elicitation);
            shared
                .sessions
                .bind(sid, &c.subject, c.tenant.as_deref(), url_elicitation);
        }
        if ok && ctx.request.method_is_delete {
            if let Some(sid) = &ctx.request.session {
                shared.sessions.end(sid);
            }
        }
    }
    let sse = ctx.exchange.inspector.is_sse();
    if let Some(f) = ctx.decision.list_filter.as_mut() {
        f.set_sse(sse);
        // Filtering changes the length.
        resp.remove_header(&http::header::CONTENT_LENGTH);
    }
    if sse {
        ctx.exchange.sse_counted = true;
        shared
            .metrics
            .sse_streams
            .with_label_values(&[ctx.route_label()])
            .inc();
        if ctx.exchange.legacy.is_some() {
            // The rewritten endpoint event changes the length.
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
    } else {
        ctx.exchange.legacy = None;
    }
    ctx.outcome.gateway_time += t.elapsed();
}

/// A call past its whole-call deadline fails here (checked before each
/// chunk that is not the last).
pub fn check_deadline(ctx: &mut Ctx) -> Result<()> {
    if ctx.exchange.deadline.is_some_and(|d| Instant::now() > d) {
        ctx.outcome.failure = Some(Failure::TotalTimeout);
        return Err(Error::explain(
            ErrorType::ReadTimedout,
            "upstream call took longer than timeouts.total_ms",
        )
        .into_up());
    }
    Ok(())
}

/// One chunk of the answer: the deadline, the legacy rewrite, the
/// inspector, the list filter, the catalog.
pub fn chunk(shared: &Shared, body: &mut Option<Bytes>, end: bool, ctx: &mut Ctx) -> Result<()> {
    if !end {
        check_deadline(ctx)?;
    }
    let t = Instant::now();
    let x = &mut ctx.exchange;
    if let Some(rw) = x.legacy.as_mut() {
        *body = rw.process(body.take(), end);
        if let (Some(sid), Some(c)) = (rw.take_session(), &ctx.caller) {
            shared
                .sessions
                .bind(&legacy_key(&sid), &c.subject, c.tenant.as_deref(), false);
        }
    }
    // The inspector sees what the upstream sent (the whole catalog), the
    // client what the list filter leaves of it.
    if let Some(b) = body.as_ref() {
        x.inspector.feed(b);
    }
    if end {
        x.inspector.finish();
    }
    if let Some(f) = ctx.decision.list_filter.as_mut() {
        *body = f.process(body.take(), end);
    }
    // The catalog is learnt as soon as its list is read, before the bytes
    // carrying it reach the client: a client that calls a tool right after
    // listing it finds its metric label known.
    if !x.catalog_learnt {
        if let (Some(tools), Some(i)) = (&x.inspector.tools_seen, ctx.request.route) {
            let snap = &ctx.rt.snapshot;
            let upstream = snap.upstream(&snap.routes[i]).name.as_str();
            shared.learn_tools(snap, upstream, tools);
            x.catalog_learnt = true;
        }
    }
    ctx.outcome.gateway_time += t.elapsed();
    Ok(())
}
