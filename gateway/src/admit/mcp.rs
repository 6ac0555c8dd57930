//! Admission of an MCP request, once its route and caller are known: the
//! legacy transport's session check, GET and DELETE (no body), and for a
//! POST the body read and classified, the mirrored headers, the policy, the
//! rate limits and concurrency caps, the approval hold; then the circuit.

use std::time::Instant;

use pingora::proxy::Session;
use sluice_config::{Route, RouteTransport, Snapshot};

use super::head::header_bytes;
use super::{circuit, limit_owner, Admit};
use crate::conn::PINGORA_REPLAY_LIMIT;
use crate::ctx::Ctx;
use crate::mcp::jsonrpc::{check_mirrored_headers, effective_revision};
use crate::mcp::legacy::EndpointRewriter;
use crate::mcp::{classify_capped, JsonCaps, Method, Revision};
use crate::policy::list::ListFilter;
use crate::policy::{self, Deny};
use crate::refusal::Refusal;
use crate::sessions::{legacy_key, Check};
use crate::state::Shared;

const MCP_PROTOCOL_VERSION: http::HeaderName =
    http::HeaderName::from_static("mcp-protocol-version");
const MCP_METHOD: http::HeaderName = http::HeaderName::from_static("mcp-method");
const MCP_NAME: http::HeaderName = http::HeaderName::from_static("mcp-name");

pub(super) async fn admit(
    shared: &Shared,
    snap: &std::sync::Arc<Snapshot>,
    route: &Route,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<Admit, Refusal> {
    let t = Instant::now();
    let up = snap.upstream(route);
    let method = session.req_header().method.clone();
    legacy(shared, route, session, ctx)?;
    ctx.outcome.gateway_time += t.elapsed();
    match method {
        http::Method::POST => {}
        http::Method::GET | http::Method::DELETE => {
            // A body on these has no meaning for MCP, and nothing would
            // read it before the upstream does.
            if !session.is_body_empty() {
                return Err(Refusal::Framing("GET and DELETE requests carry no body"));
            }
            if let (Some(c), true) = (&ctx.caller, method == http::Method::GET) {
                // A GET stream (its `Last-Event-ID` replay, the legacy
                // transport's stream) can carry any list result.
                ctx.decision.list_filter =
                    Some(Box::new(ListFilter::for_stream(&up.name, c, snap.clone())));
            }
            circuit(shared, ctx)?;
            crate::exchange::request::act_as_caller(shared, ctx, route.upstream).await?;
            return Ok(if up.http2 {
                Admit::Proxy
            } else {
                Admit::Forward
            });
        }
        _ => return Err(Refusal::MethodNotAllowed),
    }
    let big = call(shared, snap, route, session, ctx).await?;
    if !snap.approvals.is_empty() {
        // Out of band: the hold is a wait, not gateway work.
        let (Some(facts), Some(body)) = (ctx.request.facts.as_ref(), ctx.request.body.as_ref())
        else {
            return Err(Refusal::BodyRead);
        };
        let who = crate::approval::Requester {
            caller: ctx.caller.as_ref(),
            session: ctx.request.session.as_deref(),
            request_id: ctx.request.request_id.as_deref(),
        };
        let th = ctx.clock();
        let held = Box::pin(crate::approval::hold(shared, snap, route, who, facts, body)).await;
        ctx.phase("approval", th);
        ctx.decision.approval = held?;
    }
    circuit(shared, ctx)?;
    crate::exchange::request::act_as_caller(shared, ctx, route.upstream).await?;
    // A sampled request's body carries its trace context in `_meta`:
    // Pingora's own replay would send the body as the client wrote it, so
    // it goes the way that writes the body itself.
    let sampled = ctx.trace.as_deref().is_some_and(|t| t.sampled);
    Ok(match (up.http2, big || sampled) {
        (false, _) => Admit::Forward,
        (true, true) => Admit::ForwardPingora,
        (true, false) => Admit::Proxy,
    })
}

/// The legacy (HTTP+SSE) transport: its GET stream's `endpoint` event is
/// rewritten; a message URL names its session in the query, and only the
/// caller whose stream the endpoint event was sent on posts to it.
fn legacy(shared: &Shared, route: &Route, session: &Session, ctx: &mut Ctx) -> Result<(), Refusal> {
    if route.transport != RouteTransport::LegacySse {
        return Ok(());
    }
    let req = session.req_header();
    let up = ctx.rt.snapshot.upstream(route);
    if req.method == http::Method::GET {
        ctx.exchange.legacy = Some(Box::new(EndpointRewriter::new(&route.path, &up.base_path)));
    }
    if req.method == http::Method::POST {
        let named =
            crate::mcp::legacy::session_param(req.uri.path_and_query().map_or("", |p| p.as_str()))
                .map_err(|_| Refusal::Framing("the session is named twice"));
        if let (Some(c), Some(sid)) = (&ctx.caller, named?) {
            let key = legacy_key(&sid);
            if shared.sessions.check(&key, &c.subject, c.tenant.as_deref()) == Check::Foreign {
                return Err(Refusal::ForeignSession);
            }
        }
    }
    Ok(())
}

/// A POST: its body read and classified, then the decisions on what it
/// carries. `Ok(true)`: the body is larger than Pingora's replay buffer.
async fn call(
    shared: &Shared,
    snap: &std::sync::Arc<Snapshot>,
    route: &Route,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<bool, Refusal> {
    let body = super::body::read(session, ctx).await?;
    let t = Instant::now();
    let caps = JsonCaps {
        depth: snap.max_json_depth,
        array_len: snap.max_json_array_len,
        string_len: snap.max_json_string_len,
    };
    let facts = classify_capped(&body, caps)?;
    let req = session.req_header();
    let revision = effective_revision(header_bytes(req, &MCP_PROTOCOL_VERSION), &facts);
    // From here on, refusals are about a classified call: keep what
    // audit and the error's id need.
    let big = body.len() > PINGORA_REPLAY_LIMIT;
    let body = ctx.request.body.insert(body);
    let facts = ctx.request.facts.insert(facts);
    ctx.request.revision = revision;
    check_mirrored_headers(
        facts,
        revision,
        header_bytes(req, &MCP_METHOD),
        header_bytes(req, &MCP_NAME),
    )?;
    policy::unclassified(route, facts)?;
    let m = &shared.metrics.mcp_messages;
    for msg in &facts.messages {
        m.with_label_values(&[route.name.as_str(), "client", msg.method.as_label()])
            .inc();
    }
    // Batches left the protocol in 2025-06-18.
    if facts.batch {
        if let Some(r) = revision.filter(|r| *r >= Revision::V2025_06_18 && *r != Revision::Unknown)
        {
            return Err(Deny::Batch(r.as_label()).into());
        }
    }
    if let Some(c) = &ctx.caller {
        let tp = ctx.trace.as_deref().and_then(crate::trace::Trace::clock);
        let decision = policy::authorize(snap, route, c, facts, body);
        if let (Some(tr), Some(tp)) = (ctx.trace.as_deref_mut(), tp) {
            tr.phase("policy", tp);
        }
        let label = match &decision {
            Ok(()) => "allow",
            Err(Deny::Hidden { .. }) => "hidden",
            Err(_) => "denied",
        };
        shared
            .metrics
            .policy_decisions
            .with_label_values(&[route.name.as_str(), label])
            .inc();
        decision?;
        let first = facts.first();
        if first.id.is_some() && !facts.batch {
            let up = &snap.upstream(route).name;
            ctx.decision.list_filter =
                ListFilter::for_answer(&first.method, up, c, snap.clone()).map(Box::new);
        }
    }
    if !ctx.rt.limits.is_empty() {
        let tl = ctx.clock();
        let checked = limits(shared, session, ctx).await;
        ctx.phase("limits", tl);
        checked?;
    }
    ctx.outcome.gateway_time += t.elapsed();
    Ok(big)
}

/// Every rate limit for each message of the body, then the concurrency
/// caps for the call. Keys come from the authenticated caller (or the
/// socket address without identity), never from client headers.
async fn limits(shared: &Shared, session: &Session, ctx: &mut Ctx) -> Result<(), Refusal> {
    let rt = std::sync::Arc::clone(&ctx.rt);
    let (Some(route), Some(facts)) = (ctx.route(), ctx.request.facts.as_ref()) else {
        return Ok(());
    };
    let (subject, tenant, roles) = limit_owner(session, ctx.caller.as_ref());
    let mut input = crate::limits::LimitInput {
        tenant,
        subject: &subject,
        roles,
        route: &route.name,
        upstream: &rt.snapshot.upstream(route).name,
        method: "",
        target: None,
        model: None,
    };
    let m = &shared.metrics;
    for msg in facts.messages.iter().filter(|m| m.method != Method::None) {
        input.method = msg.method.name();
        input.target = msg.target.as_deref();
        rt.limits.check_rate(&input, m).await?;
    }
    if let Some(call) = facts
        .messages
        .iter()
        .find(|m| m.kind == crate::mcp::Kind::Request)
    {
        input.method = call.method.name();
        input.target = call.target.as_deref();
        let mut permits = Vec::new();
        rt.limits.acquire(&input, &mut permits, m)?;
        ctx.decision.permits = permits;
    }
    Ok(())
}
