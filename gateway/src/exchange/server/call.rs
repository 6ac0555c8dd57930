//! A virtual server's `tools/call` and `prompts/get`: to the one source
//! that serves the name (the candidates the names allow; a collision
//! settled by the sources' lists), with the upstream's own name and — for a
//! tool — the arguments with fixed values set and defaults filled
//! (`federation::call` rewrites the request, the rest as sent). The policy
//! and the limits decide on exactly that; the answer streams back as the
//! source sends it, with the client's id (a stateless client reads a
//! result without `resultType` as complete).

use std::borrow::Cow;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use sluice_config::Server;

use super::super::rpc::{self, Mirror, UpstreamSession};
use super::super::Deps;
use super::definitions;
use super::http_tool;
use super::idempotent;
use super::session::send_in;
use super::{
    hidden, list, refuse, serves, source_failed, stateless, tenant_may_use, write, Items,
    RESOURCES, TEMPLATES,
};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::federation::call::{ref_renamed, CallParams};
use crate::federation::idempotency;
use crate::federation::reply::{self, Reply};
use crate::federation::seal::SessionState;
use crate::federation::tools::call_arguments;
use crate::federation::{Catalog, ItemKind};
use crate::mcp::RequestId;
use crate::policy::decide::{Decide, Verdict};
use crate::policy::strict;
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
    let body = ctx.request.body.clone().unwrap_or_default();
    let (name, sent_args) = match called(ctx, &body) {
        Ok(c) => c,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    let Some((i, original)) = pick_source(deps, ctx, (server, sealed), items, &name).await else {
        return refuse(deps, session, ctx, hidden(items, id, &name)).await;
    };
    if items.kind == ItemKind::Tool {
        // A state this route does not serve, or a quarantined definition,
        // is an unknown tool, before any policy.
        let state = server.sources[i].state_of(&original);
        if !serves(ctx, state) {
            return refuse(deps, session, ctx, hidden(items, id, &name)).await;
        }
        ctx.decision.deprecated = state == sluice_config::ToolState::Deprecated;
        let to = (server, sealed);
        if !callable(deps, ctx, to, (i, items), &original).await {
            return refuse(deps, session, ctx, hidden(items, id, &name)).await;
        }
    }
    let src = &server.sources[i];
    let up_name = snap.upstreams[src.upstream].name.as_str();
    let args = match arguments(items, src.override_for(&original), sent_args) {
        Ok(a) => a,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    if let Some(c) = &ctx.caller {
        // Conditions read the arguments as forwarded, strictly; arguments
        // that cannot be read one way hold no condition.
        let mut parse = || args.as_deref().and_then(|a| strict::parse(a.as_bytes()));
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
    if items.kind == ItemKind::Tool && memchr_key(&body) {
        // Claimed after the policy allowed the call, before limits,
        // approvals and the upstream: a repeat is answered from the store.
        let params = super::params(ctx);
        let key = match idempotency::key_of(&params) {
            Ok(k) => k.map(str::to_owned),
            Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
        };
        if let Some(key) = key {
            let forwarded = match args.as_deref().map(|a| strict::parse(a.as_bytes())) {
                Some(None) => {
                    let why = "arguments cannot be read one way";
                    return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await;
                }
                Some(Some(v)) => Some(v),
                None => None,
            };
            let claimed =
                idempotent::claim(deps, ctx, (up_name, &original), (&key, forwarded.as_ref()));
            match claimed.await {
                Ok(None) => {}
                Ok(Some(result)) => return replay(session, id, &result).await,
                Err(r) => return refuse(deps, session, ctx, r).await,
            }
        }
    }
    if let Err(r) = limits(deps, session, ctx, (up_name, items.call), &original).await {
        return refuse(deps, session, ctx, r).await;
    }
    if items.kind == ItemKind::Tool && !snap.approvals.is_empty() {
        // Held as on a plain route: the rule names the source's upstream and
        // the tool's own name, the approver sees the forwarded arguments.
        let who = crate::approval::Requester {
            caller: ctx.caller.as_ref(),
            session: None,
            request_id: ctx.request.request_id.as_deref(),
        };
        let held = crate::approval::hold_call(
            deps.shared,
            snap,
            (up_name, &original),
            args.as_deref(),
            who,
            &body,
        );
        match Box::pin(held).await {
            Ok(approval) => ctx.decision.approval = approval,
            Err(deny) => return refuse(deps, session, ctx, Refusal::Approval(deny)).await,
        }
    }
    if let Some(tool) = src
        .http_tool(&original)
        .filter(|_| items.kind == ItemKind::Tool)
    {
        let to = (src.upstream, tool);
        let done = http_tool::call(deps, session, ctx, to, args.as_deref(), id).await;
        idempotent::settle(deps, ctx, id.raw()).await;
        return done;
    }
    if stateless(ctx) && rpc::speaks_stateless(deps, ctx, src.upstream).await {
        // The source speaks the client's revision: the request goes as the
        // client sent it where nothing is renamed or set, else rewritten
        // with `_meta` whole; the answer comes back as the source sends it.
        let unchanged = matches!(args, Some(Cow::Borrowed(_)) | None);
        let forwarded = if original == name && unchanged {
            Ok(body.to_vec())
        } else {
            CallParams::read(&body).and_then(|p| {
                let p = p.keeping_meta();
                p.forward(id.raw(), items.call, &original, args.as_deref())
            })
        };
        let mirror = Mirror {
            method: items.call,
            name: Some(original.clone()),
        };
        let to = (Via::Direct(mirror), src.upstream, original.as_str());
        let done = exchange(deps, session, ctx, to, forwarded, id).await;
        idempotent::settle(deps, ctx, id.raw()).await;
        return done;
    }
    let sent = sent_id(sealed, id);
    let forwarded = CallParams::read(&body)
        .and_then(|p| p.forward(&sent, items.call, &original, args.as_deref()));
    let to = (Via::session(sealed, &sent), src.upstream, original.as_str());
    let done = exchange(deps, session, ctx, to, forwarded, id).await;
    idempotent::settle(deps, ctx, id.raw()).await;
    done
}

/// Does the body name an idempotency key (before it is parsed for one)?
fn memchr_key(body: &[u8]) -> bool {
    memchr::memmem::find(body, idempotency::META_KEY.as_bytes()).is_some()
}

/// A repeated keyed call: the stored result, with this request's id.
async fn replay(session: &mut Session, id: &RequestId, result: &str) -> Result<()> {
    let mut body = Vec::with_capacity(result.len() + 48);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    body.extend_from_slice(id.raw().as_bytes());
    body.extend_from_slice(br#","result":"#);
    body.extend_from_slice(result.as_bytes());
    body.push(b'}');
    write(session, 200, Some(Bytes::from(body)), None).await
}

/// `resources/read` (and `subscribe`, `unsubscribe`: `method`): to the one
/// source whose filter serves the URI and whose list has it, or else whose
/// template matches it (a URI two sources serve goes to neither); the URI
/// in normal form, decided on by the resource scopes of that source.
pub(super) async fn read(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    (method, id): (&str, &RequestId),
) -> Result<()> {
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let body = ctx.request.body.clone().unwrap_or_default();
    // The URI where admission read it; the params are read again only to
    // rewrite the request.
    let Some(uri) = target(ctx) else {
        let r = Refusal::InvalidParams("the uri is not a string");
        return refuse(deps, session, ctx, r).await;
    };
    if let Err(why) = sluice_config::uri::check_uri(&uri) {
        let deny = Deny::UriNotNormal {
            id: Some(id.clone()),
            why,
        };
        return refuse(deps, session, ctx, Refusal::Policy(deny)).await;
    }
    let Some(i) = listing_source(deps, ctx, (server, sealed), &uri).await else {
        return refuse(deps, session, ctx, hidden(RESOURCES, id, &uri)).await;
    };
    let src = &server.sources[i];
    let up_name = snap.upstreams[src.upstream].name.as_str();
    if let Some(c) = &ctx.caller {
        let verdict = snap
            .policy
            .decide(c.roles(), RESOURCES.scope, up_name, &uri, &mut || None);
        if verdict != Verdict::Allow {
            return refuse(deps, session, ctx, hidden(RESOURCES, id, &uri)).await;
        }
    }
    if let Err(r) = limits(deps, session, ctx, (up_name, method), &uri).await {
        return refuse(deps, session, ctx, r).await;
    }
    if method == RESOURCES.call
        && stateless(ctx)
        && rpc::speaks_stateless(deps, ctx, src.upstream).await
    {
        let mirror = Mirror {
            method: RESOURCES.call,
            name: Some(uri.clone()),
        };
        let to = (Via::Direct(mirror), src.upstream, uri.as_str());
        return exchange(deps, session, ctx, to, Ok(body.to_vec()), id).await;
    }
    let sent = sent_id(sealed, id);
    let forwarded = CallParams::read(&body).and_then(|p| p.forward_as_sent(&sent, method));
    let to = (Via::session(sealed, &sent), src.upstream, uri.as_str());
    exchange(deps, session, ctx, to, forwarded, id).await
}

/// The one source whose filter serves `uri` and whose list has it, or
/// else (no source lists it) whose resource template matches it, or else
/// (no template either) the one source whose filter admits it; a URI two
/// sources serve is served by neither.
pub(super) async fn listing_source(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    uri: &str,
) -> Option<usize> {
    let catalog = Catalog::new(server);
    let admitted: Vec<usize> = (0..server.sources.len())
        .filter(|&i| {
            !server.sources[i].is_http()
                && tenant_may_use(ctx, server.sources[i].upstream)
                && catalog.admits(i, ItemKind::Resource, uri)
        })
        .collect();
    for (items, field) in [(RESOURCES, "uri"), (TEMPLATES, "uriTemplate")] {
        let mut serving = Vec::new();
        for &i in &admitted {
            let upstream = server.sources[i].upstream;
            let serves = list::whole(deps, ctx, (sealed, upstream), items)
                .await
                .is_ok_and(|r| {
                    r.iter().any(|r| match r[field].as_str() {
                        Some(t) if items.kind == ItemKind::Template => {
                            crate::federation::template::matches(t, uri)
                        }
                        listed => listed == Some(uri),
                    })
                });
            if serves {
                serving.push(i);
            }
        }
        match serving.len() {
            0 => continue,
            1 => return Some(serving[0]),
            _ => {
                tracing::warn!(server = %server.name, uri, "a URI is served by two sources; refused");
                return None;
            }
        }
    }
    // Listed nowhere (a resource a server reads or watches without listing
    // it): the one source whose filter alone admits it.
    (admitted.len() == 1).then(|| admitted[0])
}

/// `completion/complete`: a prompt reference goes to the source that serves
/// the prompt's name (renamed to the upstream's own), a resource reference
/// to the one that lists the URI; a reference the caller may not see gets
/// no completions, as for one that does not exist.
pub(super) async fn complete(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    id: &RequestId,
) -> Result<()> {
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let body = ctx.request.body.clone().unwrap_or_default();
    let params = match CallParams::read(&body) {
        Ok(p) => p,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    #[derive(serde::Deserialize)]
    struct Ref {
        #[serde(rename = "type")]
        kind: String,
        name: Option<String>,
        uri: Option<String>,
    }
    let reference = params.get("ref");
    let parsed = reference.and_then(|r| serde_json::from_str::<Ref>(r).ok());
    let (Some(raw_ref), Some(r)) = (reference, parsed) else {
        let why = Refusal::InvalidParams("ref is not a prompt or resource reference");
        return refuse(deps, session, ctx, why).await;
    };
    let none = Refusal::Policy(Deny::HiddenCompletion {
        id: Some(id.clone()),
        stateless: stateless(ctx),
    });
    let (i, target, forwarded) = match (r.kind.as_str(), r.name, r.uri) {
        ("ref/prompt", Some(name), _) => {
            let Some((i, original)) =
                pick_source(deps, ctx, (server, sealed), super::PROMPTS, &name).await
            else {
                return refuse(deps, session, ctx, none).await;
            };
            let renamed = match ref_renamed(raw_ref, &original) {
                Ok(r) => r,
                Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
            };
            let call = "completion/complete";
            let sent = sent_id(sealed, id);
            let fwd = params.forward_replacing(&sent, call, Some(("ref", &renamed)));
            (i, (super::PROMPTS.scope, original), (fwd, sent))
        }
        ("ref/resource", _, Some(uri)) => {
            let Some(i) = listing_source(deps, ctx, (server, sealed), &uri).await else {
                return refuse(deps, session, ctx, none).await;
            };
            let sent = sent_id(sealed, id);
            let fwd = params.forward_as_sent(&sent, "completion/complete");
            (i, (RESOURCES.scope, uri), (fwd, sent))
        }
        _ => {
            let why = Refusal::InvalidParams("ref is not a prompt or resource reference");
            return refuse(deps, session, ctx, why).await;
        }
    };
    let src = &server.sources[i];
    let up_name = snap.upstreams[src.upstream].name.as_str();
    let (scope, name) = target;
    if let Some(c) = &ctx.caller {
        if !snap.policy.visible(c.roles(), scope, up_name, &name) {
            return refuse(deps, session, ctx, none).await;
        }
    }
    let (forwarded, sent) = forwarded;
    let to = (Via::session(sealed, &sent), src.upstream, name.as_str());
    exchange(deps, session, ctx, to, forwarded, id).await
}

/// The id the request goes with: the client's own in its session's source
/// session (a cancellation names it); for a stateless client, whose
/// caller's requests share one, a fresh one, so that two requests in
/// flight there never carry one id.
pub(super) fn sent_id(sealed: Option<&SessionState>, id: &RequestId) -> String {
    match sealed {
        Some(_) => id.raw().to_owned(),
        None => reply::fresh_id(),
    }
}

/// How a request reaches its source.
pub(super) enum Via<'a> {
    /// In a source session (the client's own, or one its caller's requests
    /// share), sent with id `sent`; the answer comes back with the client's.
    Session {
        sealed: Option<&'a SessionState>,
        sent: &'a str,
    },
    /// No session: a stateless request to a source that speaks the
    /// stateless revision, the method and name mirrored in headers, the
    /// answer passed on as it comes.
    Direct(Mirror),
}

impl<'a> Via<'a> {
    pub(super) fn session(sealed: Option<&'a SessionState>, sent: &'a str) -> Self {
        Via::Session { sealed, sent }
    }
}

/// The decided request (or why it could not be written) to the source's
/// upstream, for `target` there, and the answer back to the client.
pub(super) async fn exchange(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (via, upstream, target): (Via<'_>, usize, &str),
    forwarded: std::result::Result<Vec<u8>, &'static str>,
    id: &RequestId,
) -> Result<()> {
    let forwarded = match forwarded {
        Ok(f) => f,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    ctx.exchange.federated = Some((upstream, target.into()));
    let rt = ctx.rt.clone();
    super::super::sending(&http::Method::POST, &rt.snapshot.upstreams[upstream], ctx);
    let (sealed, sent) = match via {
        Via::Session { sealed, sent } => (sealed, sent),
        Via::Direct(mirror) => {
            let s = UpstreamSession::stateless(upstream, mirror);
            let (head, answer) = rpc::send(deps, ctx, &s, forwarded).await?;
            super::super::answered(deps.shared, false, &head, ctx);
            return pass_on(deps, session, ctx, (upstream, head, answer)).await;
        }
    };
    let (s, head, answer) = send_in(deps, ctx, sealed, upstream, forwarded).await?;
    super::super::answered(deps.shared, false, &head, ctx);
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let reply = Reply {
        sent,
        client: id.raw(),
        mark: stateless(ctx),
    };
    if head.status.is_success() && (sse || !reply.is_identity()) {
        let binding = super::relay_binding(ctx, sealed);
        return restream(deps, session, ctx, (&s, head, answer), (&reply, &binding)).await;
    }
    pass_on(deps, session, ctx, (upstream, head, answer)).await
}

/// The tool, prompt or resource a request names, where admission read it
/// (`mcp::Message::target`).
fn target(ctx: &Ctx) -> Option<String> {
    let first = ctx.request.facts.as_ref()?.first();
    first.target.as_deref().map(str::to_owned)
}

/// The name a client called and its arguments as sent (raw JSON), where
/// admission read them (`mcp::Message::target`, `arguments`).
fn called<'b>(
    ctx: &Ctx,
    body: &'b [u8],
) -> std::result::Result<(String, Option<&'b str>), &'static str> {
    let first = ctx
        .request
        .facts
        .as_ref()
        .map(|f| f.first())
        .ok_or("no message")?;
    let name = target(ctx).unwrap_or_default();
    let args = match first.arguments.clone() {
        Some(at) => Some(
            body.get(at)
                .and_then(|a| std::str::from_utf8(a).ok())
                .ok_or("arguments cannot be read one way")?,
        ),
        None => None,
    };
    Ok((name, args))
}

/// The arguments as forwarded, as JSON text: a tool's with its fixed and
/// default values set (read strictly: there must be one way to read what
/// they are set over); otherwise the client's, as sent (borrowed).
fn arguments<'a>(
    items: Items,
    o: Option<&sluice_config::ToolOverride>,
    sent: Option<&'a str>,
) -> std::result::Result<Option<Cow<'a, str>>, &'static str> {
    let set = o.filter(|o| !o.fixed.is_empty() || !o.defaults.is_empty());
    match (items.kind, set) {
        (ItemKind::Tool, Some(o)) => {
            let parsed = match sent {
                Some(raw) => {
                    Some(strict::parse(raw.as_bytes()).ok_or("arguments cannot be read one way")?)
                }
                None => None,
            };
            let set = call_arguments(Some(o), parsed.as_ref())?;
            Ok(set.map(|v| Cow::Owned(v.to_string())))
        }
        _ => Ok(sent.map(Cow::Borrowed)),
    }
}

/// The source's answer as it comes, head and chunks.
async fn pass_on(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (upstream, head, mut answer): (usize, ResponseHeader, h1::Response),
) -> Result<()> {
    let mut resp = ResponseHeader::build(head.status, Some(4))?;
    // The body passes as sent: its type and length with it.
    for name in [http::header::CONTENT_TYPE, http::header::CONTENT_LENGTH] {
        if let Some(v) = head.headers.get(&name) {
            resp.insert_header(name, v.clone())?;
        }
    }
    let done = answer.done();
    session.write_response_header(Box::new(resp), done).await?;
    while !answer.done() {
        let mut out = bytes::BytesMut::new();
        let more = answer.read(|p| out.extend_from_slice(p)).await?;
        crate::answer::check_deadline(ctx)?;
        let end = !more || answer.done();
        if let Some(p) = ctx.exchange.idempotent.as_mut() {
            p.feed(&out);
        }
        if !out.is_empty() || end {
            session
                .write_response_body((!out.is_empty()).then(|| out.freeze()), end)
                .await?;
        }
        if !more {
            break;
        }
    }
    rpc::pool(deps, ctx, upstream, answer);
    Ok(())
}

/// A source's answer read message by message and passed on as each comes:
/// a request the source sends the client gets an id naming the source
/// (`federation::relay`); the response gets the client's id back and, for
/// a stateless client, its result marked complete (`federation::reply`);
/// the rest as sent. A message larger than the gateway reads ends the
/// stream with an error for the call.
async fn restream(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (s, head, mut answer): (&UpstreamSession, ResponseHeader, h1::Response),
    (reply, binding): (&Reply<'_>, &str),
) -> Result<()> {
    let raw_id = reply.client;
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    if !sse {
        let whole = rpc::read_body(deps, ctx, s, &head, answer, max).await?;
        let body = reply.rewrite(&whole).map_or(whole, Bytes::from);
        return write(session, head.status.as_u16(), Some(body), None).await;
    }
    let rt = ctx.rt.clone();
    let source = rt.snapshot.upstreams[s.upstream].name.as_str();
    let mut resp = ResponseHeader::build(head.status, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    session.write_response_header(Box::new(resp), false).await?;
    let mut parser = crate::mcp::sse::SseParser::new(max);
    let mut oversize = false;
    loop {
        let mut raw = bytes::BytesMut::new();
        let more = answer.read(|p| raw.extend_from_slice(p)).await?;
        crate::answer::check_deadline(ctx)?;
        let mut out = Vec::new();
        parser.feed(&raw, |e| {
            if e.oversize || oversize {
                oversize = true;
                return;
            }
            let mark = |up: &str, id: &str| rt.session_keys.mark(&[binding, up, id]);
            let tagged = crate::federation::relay::tag_request(e.data, source, mark);
            let data = tagged.as_deref().unwrap_or(e.data);
            let rewritten = match tagged {
                Some(_) => None,
                None => reply.rewrite(data),
            };
            crate::mcp::sse::write_event(&mut out, rewritten.as_deref().unwrap_or(data));
        });
        if oversize {
            let e = pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "a message of the source is larger than the gateway reads",
            )
            .into_up();
            source_failed(deps, ctx, s.upstream, &e);
            let msg = r#"a message of the source is larger than the gateway reads"#;
            out.extend_from_slice(
                format!(
                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{raw_id},\"error\":{{\"code\":-32603,\"message\":\"{msg}\"}}}}\n\n"
                )
                .as_bytes(),
            );
        }
        let end = !more || answer.done() || oversize;
        if let Some(p) = ctx.exchange.idempotent.as_mut() {
            p.feed(&out);
        }
        if !out.is_empty() || end {
            let body = (!out.is_empty()).then(|| Bytes::from(out));
            session.write_response_body(body, end).await?;
        }
        if end {
            if !oversize {
                rpc::pool(deps, ctx, s.upstream, answer);
            }
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
        let src = &server.sources[i];
        let has = if src.is_http() {
            src.http_tool(&original).is_some()
        } else {
            list::whole(deps, ctx, (sealed, src.upstream), items)
                .await
                .is_ok_and(|t| t.iter().any(|t| t["name"].as_str() == Some(&original)))
        };
        if has {
            listed.push((i, original));
        }
    }
    if listed.len() > 1 {
        tracing::warn!(server = %server.name, name, "a called name is served by two sources; refused");
    }
    (listed.len() == 1).then(|| listed.remove(0))
}

/// May a call reach source `i`'s tool `tool` (a pinned or screened
/// source's tool must have been listed, and judged servable)? A tool not
/// listed on this process yet is listed first.
async fn callable(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    (i, items): (usize, Items),
    tool: &str,
) -> bool {
    let src = &server.sources[i];
    let rt = ctx.rt.clone();
    let upstream = rt.snapshot.upstreams[src.upstream].name.as_str();
    let defs = &deps.shared.definitions;
    if let Some(ok) = defs.admits(&rt.snapshot, (src, upstream), tool) {
        return ok;
    }
    let listed = match src.is_http() {
        true => Ok(http_tool::listed(src)),
        false => list::whole(deps, ctx, (sealed, src.upstream), items).await,
    };
    if let Ok(mut all) = listed {
        definitions::vet(deps, ctx, src, &mut all);
    }
    defs.admits(&rt.snapshot, (src, upstream), tool)
        .unwrap_or(false)
}

/// Rate limits and concurrency caps, keyed by the source's upstream, the
/// method and the item's name there.
pub(super) async fn limits(
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
    // A legacy client's message runs on an in-memory connection: its
    // address is the one admission saw.
    let client = crate::exchange::mcp::client_ip(session).or(ctx.request.client);
    let (subject, tenant, roles) = crate::limits::owner(client, ctx.caller.as_ref());
    let route = ctx.route().map_or("", |r| r.name.as_str());
    let input = crate::limits::LimitInput {
        tenant,
        subject: &subject,
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
    ctx.decision.permits.extend(permits);
    Ok(())
}
