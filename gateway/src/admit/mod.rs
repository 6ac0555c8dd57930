//! Admission: whether a request may go upstream, decided on exactly what
//! will be forwarded, before any upstream is touched. The steps, cheapest
//! first so that a refusal costs least: the route and the head
//! (`head`), Host and Origin, the caller (`access`), the transport's own
//! admission — MCP (`mcp`: body, classification, policy, limits,
//! approvals) or a model call (`llm`) — and the upstream's circuit.
//! Decisions live in their own modules and return their own errors;
//! admission turns them into `Refusal`s.

pub mod body;
pub mod head;
mod llm;
mod mcp;

use std::time::Instant;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use sluice_config::{Route, RouteTransport, Snapshot};

use crate::ctx::Ctx;
use crate::mcp::jsonrpc::{check_mirrored_headers, effective_revision};
use crate::policy::hosts::HostCheck;
use crate::policy::{self, Caller};
use crate::refusal::Refusal;
use crate::sessions::Check;
use crate::state::Shared;
use crate::{access, audit, upstream};
use head::{header_str, listener_name};

const MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");

/// Where an admitted request goes.
pub enum Admit {
    /// Let Pingora proxy it (body, if any, is in its replay buffer): for
    /// upstreams that may speak HTTP/2.
    Proxy,
    /// The gateway runs the exchange itself (`exchange::mcp::run`):
    /// HTTP/1.1 upstreams.
    Forward,
    /// Body too large for Pingora's replay buffer (or rewritten with a
    /// sampled trace's context), upstream that may speak HTTP/2: Pingora's
    /// client session, driven by `exchange::mcp`.
    ForwardPingora,
    /// Answered by the gateway itself (well-known documents).
    Local(&'static str, String),
    /// A model call: the gateway runs the exchange itself.
    Llm,
    /// A virtual server's request: the gateway answers as the MCP server
    /// (`exchange::server`).
    Server,
}

/// Decide whether the request may go upstream, reading and classifying
/// its body.
pub async fn admit(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<Admit, Refusal> {
    let t = Instant::now();
    let snap = ctx.rt.snapshot.clone();
    let listener = listener_name(&snap, session.server_addr());
    if let Some(doc) = well_known(shared, &snap, listener, session.req_header()) {
        return Ok(doc);
    }
    if let Some(tracer) = shared.tracer.get() {
        ctx.trace = Some(Box::new(tracer.begin(&session.req_header().headers)));
    }
    let admitted = decide(shared, &snap, listener, session, ctx, t).await;
    ctx.phase("admission", Some(ctx.request.started));
    admitted
}

/// Route, caller, then the transport's own admission.
async fn decide(
    shared: &Shared,
    snap: &std::sync::Arc<Snapshot>,
    listener: &str,
    session: &mut Session,
    ctx: &mut Ctx,
    t: Instant,
) -> Result<Admit, Refusal> {
    ctx.request.client = crate::exchange::mcp::client_ip(session);
    let route = route(snap, listener, session, ctx)?;
    caller(shared, snap, route, session.req_header(), ctx)?;
    let req = session.req_header();
    ctx.request.method_is_delete = req.method == http::Method::DELETE;
    ctx.request.session = header_str(req, &MCP_SESSION_ID).map(Into::into);
    if snap.identity.enabled || shared.audit.is_some() {
        ctx.request.request_id = Some(audit::new_event_id());
    }
    ctx.outcome.gateway_time += t.elapsed();
    if route.transport == RouteTransport::Llm {
        return Box::pin(llm::admit(shared, session, ctx)).await;
    }
    if route.server.is_some() {
        return server(session, ctx).await;
    }
    mcp::admit(shared, snap, route, session, ctx).await
}

/// The route, and the head checks that come with it: a path in normal
/// form, the head within its caps, the framing unambiguous, Host and
/// Origin allowed, an upstream to send to.
fn route<'s>(
    snap: &'s Snapshot,
    listener: &str,
    session: &Session,
    ctx: &mut Ctx,
) -> Result<&'s Route, Refusal> {
    let req = session.req_header();
    let path = req.uri.path();
    // The route is matched on the path's text; an upstream that resolves
    // `..` or decodes `%2F` would serve another one.
    sluice_config::uri::check_request_path(path).map_err(Refusal::PathNotNormal)?;
    ctx.request.client_hop_headers = head::check_head(req, &snap.head_limits)?;
    let (route_idx, rest) = snap.route_for(listener, path).ok_or(Refusal::NoRoute)?;
    ctx.request.route = Some(route_idx);
    let route = &snap.routes[route_idx];
    let up = snap.upstream(route);
    ctx.request.upstream_path = upstream::upstream_path(up, rest, req.uri.query());
    head::check_framing(session)?;
    let host = head::host(req);
    let origin = header_str(req, http::header::ORIGIN);
    if !route.hosts.allows(host, None) {
        return Err(Refusal::BadHost);
    }
    if !route.hosts.allows(host, origin) {
        return Err(Refusal::BadOrigin);
    }
    Ok(route)
}

/// Who is calling, and whether they may use this route at all: their
/// tenant's upstreams only, a credential for them where the upstream acts
/// per user, their own sessions only. Then the upstream must be resolved.
fn caller(
    shared: &Shared,
    snap: &Snapshot,
    route: &Route,
    req: &RequestHeader,
    ctx: &mut Ctx,
) -> Result<(), Refusal> {
    let host = head::host(req);
    let caller = access::caller(snap, route, ctx.rt.auth.as_deref(), &req.headers, host)?;
    // A virtual server's sources are checked one by one (`exchange::server`).
    if let (Some(c), None) = (&caller, route.server) {
        may_use(shared, snap, route, req, ctx, c)?;
    }
    // Kept only where an upstream exchanges it for its own.
    if caller.as_ref().is_some_and(|c| !c.anonymous)
        && ctx.rt.exchangers.iter().any(Option::is_some)
    {
        ctx.request.subject_token = crate::token_exchange::bearer(&req.headers).map(Into::into);
    }
    ctx.caller = caller;
    if ctx
        .rt
        .peers
        .get(route.upstream)
        .and_then(Option::as_ref)
        .is_none()
    {
        return Err(Refusal::Upstream(crate::failure::Failure::NoRoute));
    }
    Ok(())
}

fn may_use(
    shared: &Shared,
    snap: &Snapshot,
    route: &Route,
    req: &RequestHeader,
    ctx: &Ctx,
    c: &Caller,
) -> Result<(), Refusal> {
    // Another tenant's upstream does not exist, as far as this caller knows.
    if !policy::tenant_may_use(snap.upstream(route), Some(c)) {
        return Err(Refusal::NoRoute);
    }
    let per_user = ctx
        .rt
        .user_credentials
        .get(route.upstream)
        .and_then(Option::as_ref);
    if per_user.is_some_and(|u| u.get(&c.subject).is_none()) {
        return Err(Refusal::NoUserCredential(snap.upstream(route).name.clone()));
    }
    if let Some(sid) = header_str(req, &MCP_SESSION_ID) {
        if shared.sessions.check(sid, &c.subject, c.tenant.as_deref()) == Check::Foreign {
            return Err(Refusal::ForeignSession);
        }
    }
    Ok(())
}

/// A virtual server's request: one JSON-RPC message in a POST (or a GET or
/// DELETE of the session), read whole
/// and classified; which source serves it, and whether the caller may, is
/// decided per call by `exchange::server` on the upstream's own names.
async fn server(session: &mut Session, ctx: &mut Ctx) -> Result<Admit, Refusal> {
    // DELETE ends the client's session, GET listens to it
    // (`exchange::server`).
    if ctx.request.method_is_delete || session.req_header().method == http::Method::GET {
        return Ok(Admit::Server);
    }
    if session.req_header().method != http::Method::POST {
        return Err(Refusal::MethodNotAllowed);
    }
    let body = body::read(session, ctx).await?;
    let snap = &ctx.rt.snapshot;
    let caps = crate::mcp::JsonCaps {
        depth: snap.max_json_depth,
        array_len: snap.max_json_array_len,
        string_len: snap.max_json_string_len,
    };
    let facts = crate::mcp::classify_capped(&body, caps)?;
    if facts.batch {
        return Err(policy::Deny::BatchedList.into());
    }
    // The revision, and the headers a stateless request mirrors.
    let req = session.req_header();
    let header = |name: &str| req.headers.get(name).map(|v| v.as_bytes());
    let revision = effective_revision(header("mcp-protocol-version"), &facts);
    check_mirrored_headers(&facts, revision, header("mcp-method"), header("mcp-name"))?;
    ctx.request.revision = revision;
    ctx.request.body = Some(body);
    ctx.request.facts = Some(facts);
    Ok(Admit::Server)
}

/// The upstream's circuit breaker: an open circuit answers at once.
fn circuit(shared: &Shared, ctx: &mut Ctx) -> Result<(), Refusal> {
    let Some(route) = ctx.route() else {
        return Ok(());
    };
    let Some(h) = ctx.rt.health.get(route.upstream) else {
        return Ok(());
    };
    match h.admit(&shared.metrics) {
        Ok(ticket) => {
            ctx.exchange.ticket = ticket;
            Ok(())
        }
        Err(retry_after) => Err(Refusal::CircuitOpen {
            upstream: h.name.clone(),
            retry_after,
        }),
    }
}

/// `/.well-known/…` documents the gateway serves itself.
fn well_known(
    shared: &Shared,
    snap: &Snapshot,
    listener: &str,
    req: &RequestHeader,
) -> Option<Admit> {
    let path = req.uri.path();
    if path == access::JWKS_PATH {
        return Some(Admit::Local("application/json", shared.signer.jwks_json()));
    }
    let rest = path.strip_prefix(access::METADATA_PATH)?;
    if !snap.identity.enabled {
        return None;
    }
    let (idx, _) = snap.route_for(listener, if rest.is_empty() { "/" } else { rest })?;
    let host = header_str(req, http::header::HOST).unwrap_or("localhost");
    Some(Admit::Local(
        "application/json",
        access::metadata(snap, &snap.routes[idx], host),
    ))
}

/// Whom limits count (`limits::owner`), from the session's client address.
fn limit_owner<'a>(
    session: &Session,
    caller: Option<&'a Caller>,
) -> (std::borrow::Cow<'a, str>, Option<&'a str>, &'a [Box<str>]) {
    crate::limits::owner(crate::exchange::mcp::client_ip(session), caller)
}
