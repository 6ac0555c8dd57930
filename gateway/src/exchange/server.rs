//! A virtual server's exchange: the gateway answers as the MCP server and
//! calls each source as an MCP client (`rpc`). `initialize` and `ping` are
//! answered here; `tools/list` merges every reachable source's tools
//! (`federation::tools::merge`) that the caller may see; `tools/call` goes
//! to the one source that serves the name, with the upstream's own name and
//! the arguments as forwarded — the policy and the limits decide on those.
//! A source that fails leaves its tools out of a list (a log line and
//! `sluice_upstream_errors_total`); the others keep serving.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use sluice_config::{Kind, Server};

use super::rpc::{self, UpstreamSession};
use super::Deps;
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::failure::Failure;
use crate::federation::cursor::{self, Position};
use crate::federation::seal::SessionState;
use crate::federation::tools::{call_arguments, merge};
use crate::federation::{Catalog, ItemKind};
use crate::mcp::{Method, RequestId};
use crate::policy::decide::{Decide, Verdict};
use crate::policy::Deny;
use crate::refusal::{self, Refusal};

/// Most pages read from one source for one list.
const MAX_PAGES: usize = 20;

pub async fn run(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let rt = ctx.rt.clone();
    let server = ctx
        .route()
        .and_then(|r| r.server)
        .map(|i| &rt.snapshot.servers[i])
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no server"))?;
    let (method, id) = {
        let first = ctx
            .request
            .facts
            .as_ref()
            .map(|f| f.first())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no message"))?;
        (first.method.clone(), first.id.clone())
    };
    // A stateless request's `Mcp-Session-Id`, if any, is ignored.
    let header = (!stateless(ctx))
        .then(|| session.req_header().headers.get(MCP_SESSION_ID))
        .flatten();
    let sealed = match header {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| own_session(ctx, server, v)) {
            Some(state) => Some(state),
            None => return refuse(deps, session, ctx, Refusal::ForeignSession).await,
        },
    };
    let Some(id) = id else {
        // Notifications (`initialized`, `cancelled`): nothing to answer.
        return write(session, 202, None, None).await;
    };
    let sealed = sealed.as_ref();
    match method {
        Method::Initialize => initialize(deps, session, ctx, server, &id).await,
        Method::ServerDiscover => {
            let info = json!({"name": server.name, "version": env!("CARGO_PKG_VERSION")});
            let result = json!({
                "supportedVersions": ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"],
                "capabilities": {"tools": {}},
                "serverInfo": info,
                "_meta": {"io.modelcontextprotocol/serverInfo": info},
            });
            answer(session, &id, mark_complete(result)).await
        }
        Method::Ping => {
            let result = json!({});
            let result = if stateless(ctx) {
                mark_complete(result)
            } else {
                result
            };
            answer(session, &id, result).await
        }
        Method::ToolsList => {
            let cursor = call_params(ctx)
                .1
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match list_tools(deps, ctx, (server, sealed), cursor.as_deref()).await {
                Ok(mut result) if stateless(ctx) => {
                    // Nothing here may be cached for long (an upstream's
                    // list can change), and a list the policy filtered for
                    // this caller is theirs alone.
                    result["ttlMs"] = json!(0);
                    let scope = if ctx.caller.is_some() {
                        "private"
                    } else {
                        "public"
                    };
                    result["cacheScope"] = json!(scope);
                    answer(session, &id, mark_complete(result)).await
                }
                Ok(result) => answer(session, &id, result).await,
                Err(r) => refuse(deps, session, ctx, r).await,
            }
        }
        Method::ToolsCall => call_tool(deps, session, ctx, (server, sealed), &id).await,
        _ => {
            let unknown = Deny::Unclassified {
                id: Some(id.clone()),
                method: method.name().into(),
            };
            refuse(deps, session, ctx, Refusal::Policy(unknown)).await
        }
    }
}

const MCP_SESSION_ID: &str = "mcp-session-id";

/// The client's session, if its sealed id opens to this server and caller.
fn own_session(ctx: &Ctx, server: &Server, id: &str) -> Option<SessionState> {
    let state = ctx.rt.session_keys.open(id)?;
    let (subject, tenant) = caller_names(ctx);
    (state.server == server.name && state.subject == subject && state.tenant.as_deref() == tenant)
        .then_some(state)
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
async fn initialize(
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
        "capabilities": {"tools": {}},
        "serverInfo": {"name": server.name, "version": env!("CARGO_PKG_VERSION")},
    });
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.raw(),
        result
    );
    write(session, 200, Some(Bytes::from(body)), Some(&sealed)).await
}

/// Source `upstream`'s session for this request: the one the client's
/// sealed session carries, else one opened now.
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
    match carried {
        Some(sid) => Ok(UpstreamSession::resume(upstream, sid)),
        None => rpc::open(deps, ctx, upstream).await,
    }
}

/// Send `body` in source `upstream`'s session. An upstream that forgot a
/// resumed session (404: it ran nothing) gets a new one and the request
/// again, once.
async fn send_in(
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
    let s = rpc::open(deps, ctx, upstream).await?;
    let (head, answer) = rpc::send(deps, ctx, &s, body).await?;
    Ok((s, head, answer))
}

/// One page of the merged list: the next page of every source not done
/// (its position in the client's cursor), the tools the caller may see,
/// merged; the next cursor carries every source's position. A source that
/// cannot be listed is left out of this listing.
async fn list_tools(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    cursor: Option<&str>,
) -> std::result::Result<Value, Refusal> {
    let rt = ctx.rt.clone();
    let mut at = match cursor {
        None => vec![Position::Start; server.sources.len()],
        Some(c) => cursor::decode(&rt.snapshot, server, c).map_err(Refusal::InvalidParams)?,
    };
    let max = rt.snapshot.max_inspected_response_bytes as usize;
    let mut lists: Vec<(usize, Vec<Value>)> = Vec::new();
    for (i, src) in server.sources.iter().enumerate() {
        let params = match &at[i] {
            Position::Done => continue,
            _ if !tenant_may_use(ctx, src.upstream) => {
                at[i] = Position::Done;
                continue;
            }
            Position::Start => json!({}),
            Position::At(c) => json!({ "cursor": c }),
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params});
        match request(deps, ctx, (sealed, src.upstream), body, max).await {
            Ok(result) => {
                at[i] = match result.get("nextCursor").and_then(Value::as_str) {
                    Some(next) => Position::At(next.to_owned()),
                    None => Position::Done,
                };
                let mut tools = result
                    .get("tools")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                tools.retain(|t| visible(ctx, src.upstream, t));
                lists.push((i, tools));
            }
            Err(e) => {
                source_failed(deps, ctx, src.upstream, &e);
                at[i] = Position::Done;
            }
        }
    }
    let refs: Vec<(usize, &[Value])> = lists.iter().map(|(i, t)| (*i, t.as_slice())).collect();
    let merged = merge(Catalog::new(server), &refs);
    for c in &merged.collisions {
        tracing::warn!(server = %server.name, name = %c.name, claimants = ?c.claimants, "tools share a name on a virtual server; both withheld");
        deps.shared
            .metrics
            .server_name_collisions
            .with_label_values(&[server.name.as_str()])
            .inc();
    }
    let mut result = json!({ "tools": merged.tools });
    if let Some(next) = cursor::encode(&rt.snapshot, server, &at) {
        result["nextCursor"] = Value::String(next);
    }
    Ok(result)
}

/// The whole tool list of one upstream, page by page.
async fn fetch_tools(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    sealed: Option<&SessionState>,
    upstream: usize,
) -> Result<Vec<Value>> {
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let body = json!({"jsonrpc": "2.0", "id": page, "method": "tools/list", "params": params});
        let result = request(deps, ctx, (sealed, upstream), body, max).await?;
        if let Some(list) = result.get("tools").and_then(Value::as_array) {
            tools.extend(list.iter().cloned());
        }
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(tools)
}

/// One request in an upstream session; its result (a JSON-RPC error from
/// the upstream is a failure of the source here).
async fn request(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (sealed, upstream): (Option<&SessionState>, usize),
    body: Value,
    max: usize,
) -> Result<Value> {
    let id = body["id"].clone();
    let bytes = body.to_string().into_bytes();
    let (s, head, answer) = send_in(deps, ctx, sealed, upstream, bytes).await?;
    let messages = rpc::read_whole(deps, ctx, &s, &head, answer, max).await?;
    let msg = rpc::response_for(&messages, &id)
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no answer").into_up())?;
    msg.get("result")
        .cloned()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "an error answer").into_up())
}

/// A tool call: to the one source that serves the name; the upstream's
/// name and the arguments as forwarded decided on; the answer streamed on.
async fn call_tool(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    id: &RequestId,
) -> Result<()> {
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let (name, params) = call_params(ctx);
    let Some((i, original)) = pick_source(deps, ctx, (server, sealed), &name).await else {
        return refuse(deps, session, ctx, hidden(id, &name)).await;
    };
    let src = &server.sources[i];
    let up_name = snap.upstreams[src.upstream].name.as_str();
    let sent_args = params.get("arguments");
    let args = match call_arguments(src.override_for(&original), sent_args) {
        Ok(a) => a,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    if let Some(c) = &ctx.caller {
        let mut parse = || args.clone();
        match snap
            .policy
            .decide(c.roles(), Kind::Tools, up_name, &original, &mut parse)
        {
            Verdict::Allow => {}
            Verdict::Hidden => return refuse(deps, session, ctx, hidden(id, &name)).await,
            Verdict::Denied(reason) => {
                let deny = Deny::Conditions {
                    id: Some(id.clone()),
                    reason,
                };
                return refuse(deps, session, ctx, Refusal::Policy(deny)).await;
            }
        }
    }
    if let Err(r) = limits(deps, session, ctx, up_name, &original).await {
        return refuse(deps, session, ctx, r).await;
    }
    let mut params = params.clone();
    params.insert("name".into(), Value::String(original.clone()));
    // The protocol keys of `_meta` describe the client's hop, not the
    // gateway's session with the upstream.
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    }
    match args {
        Some(a) => params.insert("arguments".into(), a),
        None => params.remove("arguments"),
    };
    let body = json!({"jsonrpc": "2.0", "id": serde_json::from_str::<Value>(id.raw()).unwrap_or(Value::Null), "method": "tools/call", "params": params});
    ctx.exchange.federated = Some((src.upstream, original.as_str().into()));
    super::sending(&http::Method::POST, &snap.upstreams[src.upstream], ctx);
    let bytes = body.to_string().into_bytes();
    let (s, head, mut answer) = send_in(deps, ctx, sealed, src.upstream, bytes).await?;
    super::answered(deps.shared, false, &head, ctx);
    if stateless(ctx) {
        return restream(deps, session, ctx, (&s, head, answer), id).await;
    }
    let mut resp = ResponseHeader::build(head.status, Some(4))?;
    if let Some(ct) = head.headers.get(http::header::CONTENT_TYPE) {
        resp.insert_header(http::header::CONTENT_TYPE, ct.clone())?;
    }
    let done = answer.done();
    session.write_response_header(Box::new(resp), done).await?;
    while !answer.done() {
        let mut out = bytes::BytesMut::new();
        let more = answer.read(|p| out.extend_from_slice(p)).await?;
        crate::answer::check_deadline(ctx)?;
        let end = !more || answer.done();
        if !out.is_empty() || end {
            session
                .write_response_body((!out.is_empty()).then(|| out.freeze()), end)
                .await?;
        }
        if !more {
            break;
        }
    }
    Ok(())
}

/// A request of the stateless revision (2026-07-28): no session, and its
/// results say `resultType`.
fn stateless(ctx: &Ctx) -> bool {
    ctx.request.revision.is_some_and(|r| r.is_stateless())
}

/// The answer of a 2025 upstream to a stateless client: each message
/// passed on as it comes, the call's result marked `resultType:
/// "complete"`.
async fn restream(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (s, head, mut answer): (&UpstreamSession, ResponseHeader, h1::Response),
    id: &RequestId,
) -> Result<()> {
    let id: Value = serde_json::from_str(id.raw()).unwrap_or(Value::Null);
    let mark = |m: &mut Value| {
        if m.get("id") == Some(&id) {
            if let Some(r) = m.get_mut("result").and_then(Value::as_object_mut) {
                r.entry("resultType").or_insert_with(|| json!("complete"));
            }
        }
    };
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    if !sse {
        let mut messages = rpc::read_whole(deps, ctx, s, &head, answer, max).await?;
        let msg = messages
            .iter_mut()
            .find(|m| m.get("id") == Some(&id))
            .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no answer").into_up())?;
        mark(msg);
        return write(session, 200, Some(Bytes::from(msg.to_string())), None).await;
    }
    let mut resp = ResponseHeader::build(200, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    session.write_response_header(Box::new(resp), false).await?;
    let mut parser = crate::mcp::sse::SseParser::new(max);
    loop {
        let mut raw = bytes::BytesMut::new();
        let more = answer.read(|p| raw.extend_from_slice(p)).await?;
        crate::answer::check_deadline(ctx)?;
        let mut out = String::new();
        parser.feed(&raw, |e| {
            if let (false, Ok(mut m)) = (e.oversize, serde_json::from_slice::<Value>(e.data)) {
                mark(&mut m);
                out.push_str("event: message\ndata: ");
                out.push_str(&m.to_string());
                out.push_str("\n\n");
            }
        });
        let end = !more || answer.done();
        if !out.is_empty() || end {
            let body = (!out.is_empty()).then(|| Bytes::from(out));
            session.write_response_body(body, end).await?;
        }
        if end {
            return Ok(());
        }
    }
}

/// `params.name` and the rest of `params` of the call, as sent.
fn call_params(ctx: &Ctx) -> (String, serde_json::Map<String, Value>) {
    let body = ctx.request.body.as_deref().unwrap_or_default();
    let params = crate::policy::strict::parse(body)
        .and_then(|v| v.get("params").cloned())
        .and_then(|p| match p {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    (name, params)
}

/// The one source that serves `name`: among the candidates the names
/// allow, the ones whose upstream lists the tool. None, or more than one
/// (a collision), is an unknown tool.
async fn pick_source(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    name: &str,
) -> Option<(usize, String)> {
    let catalog = Catalog::new(server);
    let candidates: Vec<(usize, String)> = catalog
        .resolve(ItemKind::Tool, name)
        .into_iter()
        .filter(|(i, _)| tenant_may_use(ctx, server.sources[*i].upstream))
        .map(|(i, o)| (i, o.into_owned()))
        .collect();
    if candidates.len() <= 1 {
        return candidates.into_iter().next();
    }
    let mut listed = Vec::new();
    for (i, original) in candidates {
        let upstream = server.sources[i].upstream;
        let has = fetch_tools(deps, ctx, sealed, upstream)
            .await
            .is_ok_and(|t| t.iter().any(|t| t["name"].as_str() == Some(&original)));
        if has {
            listed.push((i, original));
        }
    }
    if listed.len() > 1 {
        tracing::warn!(server = %server.name, name, "a called name is served by two sources; refused");
    }
    (listed.len() == 1).then(|| listed.remove(0))
}

/// Rate limits and concurrency caps, keyed by the source's upstream and
/// the tool's name there.
async fn limits(
    deps: Deps<'_>,
    session: &Session,
    ctx: &mut Ctx,
    upstream: &str,
    tool: &str,
) -> std::result::Result<(), Refusal> {
    let rt = ctx.rt.clone();
    if rt.limits.is_empty() {
        return Ok(());
    }
    let ip = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let (subject, tenant, roles) = match &ctx.caller {
        Some(c) => (&*c.subject, c.tenant.as_deref(), &c.roles[..]),
        None => (ip.as_str(), None, &[][..]),
    };
    let route = ctx.route().map_or("", |r| r.name.as_str());
    let input = crate::limits::LimitInput {
        tenant,
        subject,
        roles,
        route,
        upstream,
        method: "tools/call",
        target: Some(tool),
        model: None,
    };
    let m = &deps.shared.metrics;
    rt.limits.check_rate(&input, m).await?;
    let mut permits = Vec::new();
    rt.limits.acquire(&input, &mut permits, m)?;
    ctx.decision.permits = permits;
    Ok(())
}

fn tenant_may_use(ctx: &Ctx, upstream: usize) -> bool {
    let allowed = &ctx.rt.snapshot.upstreams[upstream].tenants;
    allowed.is_empty()
        || ctx
            .caller
            .as_ref()
            .and_then(|c| c.tenant.as_deref())
            .is_some_and(|t| allowed.iter().any(|a| a == t))
}

/// May the caller see this listed tool (some call to it could be allowed)?
fn visible(ctx: &Ctx, upstream: usize, tool: &Value) -> bool {
    let Some(c) = &ctx.caller else {
        return true;
    };
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    tool["name"].as_str().is_some_and(|n| {
        ctx.rt
            .snapshot
            .policy
            .visible(c.roles(), Kind::Tools, up, n)
    })
}

fn hidden(id: &RequestId, name: &str) -> Refusal {
    Refusal::Policy(Deny::Hidden {
        id: Some(id.clone()),
        kind: Kind::Tools,
        name: name.into(),
    })
}

fn source_failed(deps: Deps<'_>, ctx: &Ctx, upstream: usize, e: &Error) {
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    let kind = Failure::of(e);
    tracing::warn!(route = ctx.route_label(), upstream = %up, error = %e, "a virtual server's source failed; its items are left out");
    deps.shared
        .metrics
        .upstream_errors
        .with_label_values(&[ctx.route_label(), kind.label()])
        .inc();
}

async fn refuse(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx, r: Refusal) -> Result<()> {
    refusal::answer(deps.shared, session, ctx, &r).await;
    Ok(())
}

/// A result as the stateless revision gives it.
fn mark_complete(mut result: Value) -> Value {
    if let Some(r) = result.as_object_mut() {
        r.insert("resultType".into(), json!("complete"));
    }
    result
}

async fn answer(session: &mut Session, id: &RequestId, result: Value) -> Result<()> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.raw(),
        result
    );
    write(session, 200, Some(Bytes::from(body)), None).await
}

async fn write(
    session: &mut Session,
    status: u16,
    body: Option<Bytes>,
    session_id: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    if let Some(sid) = session_id {
        resp.insert_header(MCP_SESSION_ID, sid)?;
    }
    let len = body.as_ref().map_or(0, Bytes::len);
    if body.is_some() {
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    session
        .write_response_header(Box::new(resp), body.is_none())
        .await?;
    if let Some(b) = body {
        session.write_response_body(Some(b), true).await?;
    }
    Ok(())
}
