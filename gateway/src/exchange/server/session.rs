//! A virtual server's sessions: `initialize` opens a session with every
//! source the caller may use and seals their ids into the client's
//! (`federation::seal`); a later request resumes them on any replica; an
//! upstream that forgot one gets a new one. Also `server/discover` for
//! stateless clients, and cancellations passed on to the sources.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use sluice_config::Server;

use super::super::rpc::{self, UpstreamSession};
use super::super::Deps;
use super::{mark_complete, source_failed, stateless, tenant_may_use, write, MCP_SESSION_ID};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::federation::seal::SessionState;
use crate::mcp::RequestId;
use crate::refusal::Refusal;

/// The client's sealed session, if it sent one (a stateless request's is
/// ignored). One that does not open to this server and caller is unknown.
pub(super) fn client_session(
    session: &Session,
    ctx: &Ctx,
    server: &Server,
) -> std::result::Result<Option<SessionState>, Refusal> {
    if stateless(ctx) {
        return Ok(None);
    }
    let Some(v) = session.req_header().headers.get(MCP_SESSION_ID) else {
        return Ok(None);
    };
    let state = v
        .to_str()
        .ok()
        .and_then(|id| ctx.rt.session_keys.open(id))
        .ok_or(Refusal::ForeignSession)?;
    let (subject, tenant) = caller_names(ctx);
    let ours = state.server == server.name
        && state.subject == subject
        && state.tenant.as_deref() == tenant;
    if ours {
        Ok(Some(state))
    } else {
        Err(Refusal::ForeignSession)
    }
}

fn caller_names(ctx: &Ctx) -> (&str, Option<&str>) {
    ctx.caller
        .as_ref()
        .map_or(("", None), |c| (&*c.subject, c.tenant.as_deref()))
}

/// `initialize`: a session with every source the caller may use is opened
/// now, and the client's session id seals them, so that any replica serves
/// the session's later requests without opening them again. A source that
/// cannot be reached is opened per request later.
pub(super) async fn initialize(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    server: &Server,
    id: &RequestId,
) -> Result<()> {
    let mut upstreams = Vec::with_capacity(server.sources.len());
    for src in &server.sources {
        let name = ctx.rt.snapshot.upstreams[src.upstream].name.clone();
        let sid = if tenant_may_use(ctx, src.upstream) {
            match rpc::open(deps, ctx, src.upstream).await {
                Ok(s) => s.id().map(str::to_owned),
                Err(e) => {
                    source_failed(deps, ctx, src.upstream, &e);
                    None
                }
            }
        } else {
            None
        };
        upstreams.push((name, sid));
    }
    let (subject, tenant) = caller_names(ctx);
    let state = SessionState {
        server: server.name.clone(),
        subject: subject.to_owned(),
        tenant: tenant.map(str::to_owned),
        upstreams,
    };
    let sealed = ctx
        .rt
        .session_keys
        .seal(&state)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "session not sealed"))?;
    let result = json!({
        "protocolVersion": rpc::PROTOCOL,
        "capabilities": capabilities(),
        "serverInfo": {"name": server.name, "version": env!("CARGO_PKG_VERSION")},
    });
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.raw(),
        result
    );
    write(session, 200, Some(Bytes::from(body)), Some(&sealed)).await
}

fn capabilities() -> Value {
    json!({"tools": {}, "prompts": {}, "resources": {}, "completions": {}})
}

/// `server/discover`, what a stateless client asks instead of `initialize`.
pub(super) fn discover(server: &Server) -> Value {
    let info = json!({"name": server.name, "version": env!("CARGO_PKG_VERSION")});
    mark_complete(json!({
        "supportedVersions": ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
        "capabilities": capabilities(),
        "serverInfo": info,
        "_meta": {"io.modelcontextprotocol/serverInfo": info},
    }))
}

/// A client's `notifications/cancelled`, passed on in every source session
/// its sealed session carries: the request it names runs in one of them
/// (the ids are the client's own), the others do not know it and ignore it.
pub(super) async fn cancel(deps: Deps<'_>, ctx: &mut Ctx, sealed: Option<&SessionState>) {
    let Some(state) = sealed else {
        return;
    };
    let body = ctx.request.body.clone().unwrap_or_default();
    for (name, sid) in &state.upstreams {
        let (Some(sid), Some(i)) = (
            sid,
            ctx.rt
                .snapshot
                .upstreams
                .iter()
                .position(|u| u.name == *name),
        ) else {
            continue;
        };
        let s = UpstreamSession::resume(i, Some(sid.clone()));
        let sent = rpc::send(deps, ctx, &s, body.to_vec()).await;
        if let Ok((head, answer)) = sent {
            let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
            let _ = rpc::read_whole(deps, ctx, &s, &head, answer, max).await;
        }
    }
}

/// Source `upstream`'s session for this request: the one the client's
/// sealed session carries; else the caller's cached one (a stateless
/// client, or a source the sealed session could not open); else one opened
/// now and cached for the caller's next requests.
async fn source_session(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
) -> Result<UpstreamSession> {
    let name = &ctx.rt.snapshot.upstreams[upstream].name;
    let carried = sealed.and_then(|s| {
        s.upstreams
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, sid)| sid.clone())
    });
    if let Some(sid) = carried {
        return Ok(UpstreamSession::resume(upstream, Some(sid)));
    }
    let key = cache_key(ctx, upstream);
    if let Some(sid) = deps.shared.upstream_sessions.get(&key) {
        return Ok(UpstreamSession::resume(upstream, sid));
    }
    fresh(deps, ctx, upstream).await
}

/// A new session with `upstream`, cached for the caller.
async fn fresh(deps: Deps<'_>, ctx: &mut Ctx, upstream: usize) -> Result<UpstreamSession> {
    let s = rpc::open(deps, ctx, upstream).await?;
    let key = cache_key(ctx, upstream);
    deps.shared
        .upstream_sessions
        .put(key, s.id().map(str::to_owned));
    Ok(s)
}

/// Upstream sessions are the caller's own: the key names the upstream, the
/// subject and the tenant.
fn cache_key(ctx: &Ctx, upstream: usize) -> String {
    let (subject, tenant) = caller_names(ctx);
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    format!("{up}\0{subject}\0{}", tenant.unwrap_or(""))
}

/// Send `body` in source `upstream`'s session. An upstream that forgot a
/// resumed session (404: it ran nothing) gets a new one and the request
/// again, once.
pub(super) async fn send_in(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
    body: Vec<u8>,
) -> Result<(UpstreamSession, ResponseHeader, h1::Response)> {
    let s = source_session(deps, ctx, sealed, upstream).await?;
    let (head, answer) = rpc::send(deps, ctx, &s, body.clone()).await?;
    if head.status != http::StatusCode::NOT_FOUND || !s.resumed() {
        return Ok((s, head, answer));
    }
    drop(answer);
    tracing::debug!(upstream = %ctx.rt.snapshot.upstreams[upstream].name, "the upstream forgot its session; opening a new one");
    let s = fresh(deps, ctx, upstream).await?;
    let (head, answer) = rpc::send(deps, ctx, &s, body).await?;
    Ok((s, head, answer))
}

/// One request in source `upstream`'s session; its result (a JSON-RPC
/// error from the upstream is a failure of the source here).
pub(super) async fn request(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (sealed, upstream): (Option<&SessionState>, usize),
    body: Value,
) -> Result<Value> {
    let id = body["id"].clone();
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    let bytes = body.to_string().into_bytes();
    let (s, head, answer) = send_in(deps, ctx, sealed, upstream, bytes).await?;
    let messages = rpc::read_whole(deps, ctx, &s, &head, answer, max).await?;
    let msg = rpc::response_for(&messages, &id)
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no answer").into_up())?;
    msg.get("result")
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "an error answer").into_up())
}
