//! A virtual server's `tools/call` and `prompts/get`: to the one source
//! that serves the name (the candidates the names allow; a collision
//! settled by the sources' lists), with the upstream's own name and — for a
//! tool — the arguments with fixed values set and defaults filled. The
//! policy and the limits decide on exactly that; the answer streams back
//! (restreamed message by message for a stateless client).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use sluice_config::Server;

use super::super::rpc::{self, UpstreamSession};
use super::super::Deps;
use super::session::send_in;
use super::{hidden, list, params, refuse, stateless, tenant_may_use, write, Items};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::federation::seal::SessionState;
use crate::federation::tools::call_arguments;
use crate::federation::{Catalog, ItemKind};
use crate::mcp::RequestId;
use crate::policy::decide::{Decide, Verdict};
use crate::policy::Deny;
use crate::refusal::Refusal;

pub(super) async fn run(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    items: Items,
    id: &RequestId,
) -> Result<()> {
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let params = params(ctx);
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some((i, original)) = pick_source(deps, ctx, (server, sealed), items, &name).await else {
        return refuse(deps, session, ctx, hidden(items, id, &name)).await;
    };
    let src = &server.sources[i];
    let up_name = snap.upstreams[src.upstream].name.as_str();
    let sent_args = params.get("arguments");
    let args = if items.kind == ItemKind::Tool {
        match call_arguments(src.override_for(&original), sent_args) {
            Ok(a) => a,
            Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
        }
    } else {
        sent_args.cloned()
    };
    if let Some(c) = &ctx.caller {
        let mut parse = || args.clone();
        match snap
            .policy
            .decide(c.roles(), items.scope, up_name, &original, &mut parse)
        {
            Verdict::Allow => {}
            Verdict::Hidden => return refuse(deps, session, ctx, hidden(items, id, &name)).await,
            Verdict::Denied(reason) => {
                let deny = Deny::Conditions {
                    id: Some(id.clone()),
                    reason,
                };
                return refuse(deps, session, ctx, Refusal::Policy(deny)).await;
            }
        }
    }
    if let Err(r) = limits(deps, session, ctx, (up_name, items.call), &original).await {
        return refuse(deps, session, ctx, r).await;
    }
    let body = forwarded(id, items, params, &original, args);
    ctx.exchange.federated = Some((src.upstream, original.as_str().into()));
    super::super::sending(&http::Method::POST, &snap.upstreams[src.upstream], ctx);
    let bytes = body.to_string().into_bytes();
    let (s, head, answer) = send_in(deps, ctx, sealed, src.upstream, bytes).await?;
    super::super::answered(deps.shared, false, &head, ctx);
    if stateless(ctx) {
        return restream(deps, session, ctx, (&s, head, answer), id).await;
    }
    pass_on(session, ctx, head, answer).await
}

/// The request as the source gets it: the upstream's own name, the
/// arguments as decided on, and none of the protocol keys of `_meta` (they
/// describe the client's hop, not the gateway's session with the source).
fn forwarded(
    id: &RequestId,
    items: Items,
    mut params: serde_json::Map<String, Value>,
    original: &str,
    args: Option<Value>,
) -> Value {
    params.insert("name".into(), Value::String(original.to_owned()));
    match args {
        Some(a) => params.insert("arguments".into(), a),
        None => params.remove("arguments"),
    };
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
    }
    let id: Value = serde_json::from_str(id.raw()).unwrap_or(Value::Null);
    json!({"jsonrpc": "2.0", "id": id, "method": items.call, "params": params})
}

/// The source's answer as it comes, head and chunks.
async fn pass_on(
    session: &mut Session,
    ctx: &mut Ctx,
    head: ResponseHeader,
    mut answer: h1::Response,
) -> Result<()> {
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

/// The answer of a 2025 source to a stateless client: each message passed
/// on as it comes, the result marked `resultType: "complete"`.
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

/// The one source that serves `name`: among the candidates the names
/// allow, the ones whose upstream lists it. None, or more than one (a
/// collision), is an unknown name.
async fn pick_source(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    items: Items,
    name: &str,
) -> Option<(usize, String)> {
    let candidates: Vec<(usize, String)> = Catalog::new(server)
        .resolve(items.kind, name)
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
        let has = list::whole(deps, ctx, (sealed, upstream), items)
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

/// Rate limits and concurrency caps, keyed by the source's upstream, the
/// method and the item's name there.
async fn limits(
    deps: Deps<'_>,
    session: &Session,
    ctx: &mut Ctx,
    (upstream, method): (&str, &str),
    target: &str,
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
        method,
        target: Some(target),
        model: None,
    };
    let m = &deps.shared.metrics;
    rt.limits.check_rate(&input, m).await?;
    let mut permits = Vec::new();
    rt.limits.acquire(&input, &mut permits, m)?;
    ctx.decision.permits = permits;
    Ok(())
}
