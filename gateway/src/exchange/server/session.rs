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
use crate::federation::{caps, relay};
use crate::mcp::RequestId;
use crate::refusal::Refusal;

/// The client's sealed session, if it sent one (a stateless request's is
/// ignored). One that does not open to this server and caller is unknown.
pub(super) async fn client_session(
    deps: Deps<'_>,
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
        .and_then(|id| Some(ctx.rt.session_keys.open(id)?.tag_from(id)))
        .ok_or(Refusal::ForeignSession)?;
    let (subject, tenant) = ctx.caller_names();
    let ours = state.server == server.name
        && state.subject == subject
        && state.tenant.as_deref() == tenant
        // Ended by its client: unknown, not taken up again.
        && !deps.shared.ended_sessions.is_ended(&state.tag);
    if ours && !super::ended::elsewhere(deps, ctx, &state.tag).await {
        Ok(Some(state))
    } else {
        Err(Refusal::ForeignSession)
    }
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
    let declared = super::params(ctx).remove("capabilities");
    let capabilities = declared.as_ref().and_then(relay::relayed_capabilities);
    let mut upstreams = Vec::with_capacity(server.sources.len());
    // What each source opened here declared, merged for the client.
    let mut offered = Vec::with_capacity(server.sources.len());
    for src in &server.sources {
        let name = ctx.rt.snapshot.upstreams[src.upstream].name.clone();
        let sid = if !src.is_http() && tenant_may_use(ctx, src.upstream) {
            match rpc::open(deps, ctx, src.upstream, capabilities.as_deref()).await {
                Ok(s) => {
                    super::source_answered(deps, ctx, src.upstream);
                    offered.push(s.capabilities().clone());
                    s.id().map(str::to_owned)
                }
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
    let (subject, tenant) = ctx.caller_names();
    let state = SessionState {
        server: server.name.clone(),
        subject: subject.to_owned(),
        tenant: tenant.map(str::to_owned),
        upstreams,
        capabilities,
        tag: String::new(),
    };
    let sealed = ctx
        .rt
        .session_keys
        .seal(&state)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "session not sealed"))?;
    let result = json!({
        "protocolVersion": rpc::PROTOCOL,
        "capabilities": caps::merge(&offered),
        "serverInfo": {"name": server.name, "version": env!("CARGO_PKG_VERSION")},
    });
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.raw(),
        result
    );
    write(session, 200, Some(Bytes::from(body)), Some(&sealed)).await
}

/// `server/discover`, what a stateless client asks instead of `initialize`:
/// the capabilities of the sources that speak its revision, merged (what a
/// 2025 source can do is not known without a session).
pub(super) async fn discover(deps: Deps<'_>, ctx: &mut Ctx, server: &Server) -> Value {
    let mut offered = Vec::new();
    for src in &server.sources {
        if !src.is_http()
            && tenant_may_use(ctx, src.upstream)
            && rpc::speaks_stateless(deps, ctx, src.upstream).await
        {
            let name = &ctx.rt.snapshot.upstreams[src.upstream].name;
            let known = deps.shared.upstream_sessions.stateless_capabilities(name);
            offered.extend(known);
        }
    }
    let info = json!({"name": server.name, "version": env!("CARGO_PKG_VERSION")});
    mark_complete(json!({
        "supportedVersions": ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
        "capabilities": caps::merge(&offered),
        "serverInfo": info,
        "_meta": {"io.modelcontextprotocol/serverInfo": info},
    }))
}

/// `logging/setLevel`: passed on to every source the caller may use; a
/// source without logging refuses it, which changes nothing for the
/// others.
pub(super) async fn set_level(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
) -> Value {
    let params = Value::Object(super::params(ctx));
    for src in &server.sources {
        if src.is_http() || !tenant_may_use(ctx, src.upstream) {
            continue;
        }
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": params});
        if let Err(e) = request(deps, ctx, (sealed, src.upstream), body).await {
            let up = &ctx.rt.snapshot.upstreams[src.upstream].name;
            tracing::debug!(upstream = %up, error = %e, "a source did not take the logging level");
        }
    }
    super::complete_if_stateless(ctx, json!({}))
}

/// `DELETE` of the client's session: every source session it carries is
/// ended, and the sealed id is an unknown session from now on — on this
/// replica, and on every replica sharing the limits' store (`ended`).
pub(super) async fn close(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
) -> std::result::Result<(), Refusal> {
    let Some(state) = sealed else {
        return Err(Refusal::NoSession);
    };
    for i in carried_upstreams(ctx, state) {
        let Some(s) = known_session(deps, ctx, sealed, i) else {
            continue;
        };
        if let Err(e) = rpc::close(deps, ctx, &s).await {
            source_failed(deps, ctx, i, &e);
        }
    }
    deps.shared.ended_sessions.end(&state.tag);
    super::ended::share(deps, ctx, &state.tag).await;
    write(session, 200, None, None)
        .await
        .map_err(|e| Refusal::Upstream(crate::failure::Failure::of(&e)))
}

/// A client's answer to a request a source sent it (the id names the
/// source, `federation::relay`): to that source, in the client's session
/// with it, with the source's own id.
pub(super) async fn relay_answer(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    id: &RequestId,
) -> std::result::Result<(), Refusal> {
    let id: Value = serde_json::from_str(id.raw()).map_err(|_| Refusal::StrayAnswer)?;
    let snap = &ctx.rt.snapshot;
    let names = server
        .sources
        .iter()
        .map(|s| snap.upstreams[s.upstream].name.as_str());
    let (name, mark, original) = relay::untag(&id, names).ok_or(Refusal::StrayAnswer)?;
    // Only an id the gateway passed this client's session (or caller).
    let binding = super::relay_binding(ctx, sealed);
    if !ctx
        .rt
        .session_keys
        .marked(&[&binding, name, original], mark)
    {
        return Err(Refusal::StrayAnswer);
    }
    let upstream = server
        .sources
        .iter()
        .map(|s| s.upstream)
        .find(|&u| snap.upstreams[u].name == name && tenant_may_use(ctx, u))
        .ok_or(Refusal::StrayAnswer)?;
    let body = ctx.request.body.clone().unwrap_or_default();
    let answer = relay::answer_for_source(&body, original).ok_or(Refusal::StrayAnswer)?;
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    let sent = async {
        let (s, head, answer) = send_in(deps, ctx, sealed, upstream, answer).await?;
        rpc::read_body(deps, ctx, &s, &head, answer, max).await
    };
    if let Err(e) = sent.await {
        source_failed(deps, ctx, upstream, &e);
        return Err(Refusal::Upstream(crate::failure::Failure::of(&e)));
    }
    write(session, 202, None, None)
        .await
        .map_err(|e| Refusal::Upstream(crate::failure::Failure::of(&e)))
}

/// A client's `notifications/cancelled`, passed on in every source session
/// its sealed session carries: the request it names runs in one of them
/// (the ids are the client's own), the others do not know it and ignore it.
pub(super) async fn cancel(deps: Deps<'_>, ctx: &mut Ctx, sealed: Option<&SessionState>) {
    let Some(state) = sealed else {
        return;
    };
    let body = ctx.request.body.clone().unwrap_or_default();
    for i in carried_upstreams(ctx, state) {
        let Some(s) = known_session(deps, ctx, sealed, i).filter(|s| s.id().is_some()) else {
            continue;
        };
        let sent = rpc::send(deps, ctx, &s, body.to_vec()).await;
        if let Ok((head, answer)) = sent {
            let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
            let _ = rpc::read_whole(deps, ctx, &s, &head, answer, max).await;
        }
    }
}

/// Source `upstream`'s session for this request: the one the client's
/// sealed session carries (or the one that replaced it here after the
/// upstream forgot it); else the one opened here for the client's session
/// (a source its sealed session could not open), or the caller's (a
/// stateless client); else one opened now and cached for the next.
async fn source_session(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
) -> Result<UpstreamSession> {
    match known_session(deps, ctx, sealed, upstream) {
        Some(s) => Ok(s),
        None => fresh(deps, ctx, sealed, upstream).await,
    }
}

/// The session with `upstream` this request resumes, if there is one.
pub(super) fn known_session(
    deps: Deps<'_>,
    ctx: &Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
) -> Option<UpstreamSession> {
    let carried = carried(ctx, sealed, upstream);
    let key = cache_key(ctx, upstream, slot(sealed, carried.as_deref()).as_deref());
    let sid = deps
        .shared
        .upstream_sessions
        .get(&key)
        .or(carried.map(Some))?;
    Some(UpstreamSession::resume(upstream, sid))
}

/// The session with `upstream` the client's sealed session carries.
pub(super) fn carried(ctx: &Ctx, sealed: Option<&SessionState>, upstream: usize) -> Option<String> {
    let name = &ctx.rt.snapshot.upstreams[upstream].name;
    sealed.and_then(|s| {
        s.upstreams
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, sid)| sid.clone())
    })
}

/// Whose a cached source session is, beyond the caller: the carried
/// session it replaces, else the client's session (a source its sealed
/// session could not open is opened for that session alone); none for a
/// stateless client (the caller's requests share it).
fn slot(sealed: Option<&SessionState>, carried: Option<&str>) -> Option<String> {
    match (sealed, carried) {
        (_, Some(sid)) => Some(sid.to_owned()),
        (Some(state), None) => Some(format!("session:{}", state.tag)),
        (None, None) => None,
    }
}

/// The upstreams (by index) of the sources a sealed session carries.
fn carried_upstreams(ctx: &Ctx, state: &SessionState) -> Vec<usize> {
    let ups = &ctx.rt.snapshot.upstreams;
    state
        .upstreams
        .iter()
        .filter_map(|(name, _)| ups.iter().position(|u| u.name == *name))
        .collect()
}

/// A new session with `upstream` (declaring what the client declared),
/// cached for the caller — in place of the carried one, if any.
async fn fresh(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
) -> Result<UpstreamSession> {
    let capabilities = sealed.and_then(|s| s.capabilities.as_deref());
    let s = rpc::open(deps, ctx, upstream, capabilities).await?;
    let carried = carried(ctx, sealed, upstream);
    let key = cache_key(ctx, upstream, slot(sealed, carried.as_deref()).as_deref());
    deps.shared
        .upstream_sessions
        .put(key, s.id().map(str::to_owned));
    Ok(s)
}

/// Upstream sessions are the caller's own: the key names the upstream, the
/// subject and the tenant — and the client's session or the carried one it
/// replaces, when it is theirs alone (`slot`).
fn cache_key(ctx: &Ctx, upstream: usize, replacing: Option<&str>) -> String {
    let (subject, tenant) = ctx.caller_names();
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    let tenant = tenant.unwrap_or("");
    match replacing {
        Some(sid) => format!("{up}\0{subject}\0{tenant}\0{sid}"),
        None => format!("{up}\0{subject}\0{tenant}"),
    }
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
    let s = fresh(deps, ctx, sealed, upstream).await?;
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
    let mut body = body;
    // The session may be shared: an id of the gateway's own.
    let id = crate::federation::reply::fresh_id_value();
    body["id"] = id.clone();
    let bytes = body.to_string().into_bytes();
    let (s, head, answer) = send_in(deps, ctx, sealed, upstream, bytes).await?;
    rpc::result(deps, ctx, &s, (&head, answer), &id).await
}
