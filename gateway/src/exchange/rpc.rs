//! The gateway as an MCP client of one upstream, for virtual servers: a
//! session opened (`initialize`, then `notifications/initialized`),
//! requests sent through the exchange steps (`request::prepare`, the
//! source's circuit breaker, `open`),
//! answers read whole — JSON or an event stream, the response picked out by
//! its id — or handed back to be streamed on. A source that speaks only
//! the legacy HTTP+SSE transport is spoken to by `legacy_sse`, one marked
//! `http2` through Pingora's client (`pingora_source`), behind the same
//! exchanges.

use bytes::BytesMut;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType, Result};
use serde_json::Value;

mod legacy_sse;
mod pingora_source;

use super::request::{self, Target};
use super::{ConnectRetry, Deps, Resend};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::mcp::sse::SseParser;
use crate::trace::Trace;
use crate::upstream;

/// The revision the gateway speaks to upstreams (2025 sessions; the
/// reference servers and SDKs of both eras accept it).
pub const PROTOCOL: &str = "2025-06-18";

const MCP_SESSION_ID: &str = "mcp-session-id";

/// One upstream session: opened for one client request, or resumed from
/// the client's sealed session id.
pub struct UpstreamSession {
    pub upstream: usize,
    id: Option<String>,
    resumed: bool,
    /// No session: each request speaks the stateless revision
    /// (2026-07-28) and mirrors its method and name in headers.
    stateless: Option<Mirror>,
    /// What the upstream declared in `initialize` (a session opened here).
    capabilities: Value,
}

/// What a stateless request mirrors in `Mcp-Method` and `Mcp-Name`.
pub struct Mirror {
    pub method: &'static str,
    pub name: Option<String>,
}

/// The stateless revision.
pub const STATELESS: &str = "2026-07-28";

impl UpstreamSession {
    /// A session opened before (its `id`; none for an upstream that gave
    /// none).
    pub fn resume(upstream: usize, id: Option<String>) -> Self {
        UpstreamSession {
            upstream,
            id,
            resumed: true,
            stateless: None,
            capabilities: Value::Null,
        }
    }

    /// No session: one request in the stateless revision.
    pub fn stateless(upstream: usize, mirror: Mirror) -> Self {
        UpstreamSession {
            upstream,
            id: None,
            resumed: false,
            stateless: Some(mirror),
            capabilities: Value::Null,
        }
    }

    /// The upstream's session id (none for an upstream without sessions).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// What the upstream declared when this session was opened (null for
    /// one resumed).
    pub fn capabilities(&self) -> &Value {
        &self.capabilities
    }

    /// Resumed, not opened for this request: the upstream may have
    /// forgotten it.
    pub fn resumed(&self) -> bool {
        self.resumed
    }
}

/// Open a session with upstream `upstream`, declaring `capabilities` (JSON;
/// none: `{}`) as the client's.
pub async fn open(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    capabilities: Option<&str>,
) -> Result<UpstreamSession> {
    let mut s = UpstreamSession {
        upstream,
        id: None,
        resumed: false,
        stateless: None,
        capabilities: Value::Null,
    };
    let capabilities: Value = capabilities
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": capabilities,
            "clientInfo": {"name": "sluice", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    let (head, answer) = send(deps, ctx, &s, init.to_string().into_bytes()).await?;
    s.id = head
        .headers
        .get(MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    let answer = read_whole(deps, ctx, &s, &head, answer, max).await?;
    let init = response_for(&answer, &Value::from(0))
        .ok_or_else(|| upstream_error("no answer to initialize"))?;
    s.capabilities = init["result"]["capabilities"].clone();
    let done = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec();
    let (head, answer) = send(deps, ctx, &s, done).await?;
    read_whole(deps, ctx, &s, &head, answer, max).await?;
    Ok(s)
}

/// Does upstream `upstream` speak the stateless revision? Learned from its
/// `server/discover` (a source that cannot be asked now counts as not, and
/// is asked again next time), and again after `sessions::RELEARN` or when a
/// stateless request to it is refused.
pub async fn speaks_stateless(deps: Deps<'_>, ctx: &mut Ctx, upstream: usize) -> bool {
    let rt = ctx.rt.clone();
    if rt.snapshot.upstreams[upstream].legacy_sse {
        // Sessions on an event stream: never the stateless revision.
        return false;
    }
    let name = &rt.snapshot.upstreams[upstream].name;
    if let Some(known) = deps.shared.upstream_sessions.stateless(name) {
        return known;
    }
    let s = UpstreamSession::stateless(
        upstream,
        Mirror {
            method: "server/discover",
            name: None,
        },
    );
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "server/discover",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": STATELESS,
            "io.modelcontextprotocol/clientInfo": {"name": "sluice", "version": env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    });
    let Ok((head, answer)) = send(deps, ctx, &s, body.to_string().into_bytes()).await else {
        return false;
    };
    let result = if head.status.is_success() {
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        read_whole(deps, ctx, &s, &head, answer, max)
            .await
            .ok()
            .and_then(|mut m| response_at(&m, &Value::from(0)).map(|at| m.swap_remove(at)))
            .map(|mut m| m["result"].take())
    } else {
        // A 2025 server refuses the method or the revision.
        None
    };
    let speaks = result.as_ref().is_some_and(|r| {
        r["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == STATELESS))
    });
    let capabilities = result
        .filter(|_| speaks)
        .map(|mut r| r["capabilities"].take());
    deps.shared
        .upstream_sessions
        .set_stateless(name, capabilities);
    speaks
}

/// Send one JSON-RPC body in the session; the answer's head and body.
pub async fn send(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    body: Vec<u8>,
) -> Result<(ResponseHeader, h1::Response)> {
    let wait = ctx.rt.snapshot.upstreams[s.upstream].first_byte_timeout;
    send_with(deps, ctx, s, ("POST", wait), body).await
}

/// The session's own event stream (`GET`): the answer to read as it comes
/// (each read waits at most the upstream's `stream_idle_timeout`); `None`
/// when the upstream has none (405) or the session has no id.
pub async fn listen(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
) -> Result<Option<h1::Response>> {
    if s.id.is_none() {
        return Ok(None);
    }
    let wait = ctx.rt.snapshot.upstreams[s.upstream].stream_idle_timeout;
    let (head, answer) = send_with(deps, ctx, s, ("GET", wait), Vec::new()).await?;
    if head.status == http::StatusCode::METHOD_NOT_ALLOWED {
        return Ok(None);
    }
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !head.status.is_success() || !sse {
        return Err(upstream_error("the upstream's event stream was refused"));
    }
    Ok(Some(answer))
}

/// A request whose answer is a long-lived event stream (`subscriptions/
/// listen`): the stream to read as it comes (each read waits at most the
/// upstream's `stream_idle_timeout`). An answer that is not a stream is a
/// refusal.
pub async fn stream(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    body: Vec<u8>,
) -> Result<h1::Response> {
    let wait = ctx.rt.snapshot.upstreams[s.upstream].stream_idle_timeout;
    let (head, answer) = send_with(deps, ctx, s, ("POST", wait), body).await?;
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !head.status.is_success() || !sse {
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        // Read to its end so that the connection is pooled again.
        let _ = read_body(deps, ctx, s, &head, answer, max).await;
        tracing::debug!(status = %head.status, "a source answered a stream's request without one");
        return Err(upstream_error("the upstream answered without a stream"));
    }
    Ok(answer)
}

/// End the session (`DELETE`); an upstream without sessions is not asked.
pub async fn close(deps: Deps<'_>, ctx: &mut Ctx, s: &UpstreamSession) -> Result<()> {
    if s.id.is_none() {
        return Ok(());
    }
    let wait = ctx.rt.snapshot.upstreams[s.upstream].first_byte_timeout;
    let (head, answer) = send_with(deps, ctx, s, ("DELETE", wait), Vec::new()).await?;
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    // 405: the upstream does not let clients end sessions; nothing to do.
    if head.status == http::StatusCode::METHOD_NOT_ALLOWED {
        return Ok(());
    }
    read_body(deps, ctx, s, &head, answer, max).await.map(drop)
}

async fn send_with(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    (method, read_timeout): (&'static str, std::time::Duration),
    body: Vec<u8>,
) -> Result<(ResponseHeader, h1::Response)> {
    as_caller(deps, ctx, s.upstream).await?;
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[s.upstream];
    // Each exchange with a source is a span of its own (sampled only).
    let span = ctx.trace.as_deref_mut().and_then(Trace::source_begin);
    let sent = if up.legacy_sse {
        legacy_sse::exchange(deps, ctx, s, (method, read_timeout), body).await
    } else {
        streamable(deps, ctx, s, (method, read_timeout), body).await
    };
    if let (Some(t), Some(span)) = (ctx.trace.as_deref_mut(), span) {
        let error = match &sent {
            Ok((head, _)) if head.status.is_success() => None,
            Ok((head, _)) => Some(format!("HTTP {}", head.status.as_u16())),
            Err(e) => Some(e.to_string()),
        };
        t.source_end(span, &up.name, method, error);
    }
    sent
}

/// One Streamable HTTP exchange in session `s`.
async fn streamable(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    (method, read_timeout): (&'static str, std::time::Duration),
    body: Vec<u8>,
) -> Result<(ResponseHeader, h1::Response)> {
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[s.upstream];
    let mut req = RequestHeader::build(method, b"/", Some(6))?;
    if method == "GET" {
        req.insert_header(http::header::ACCEPT, "text/event-stream")?;
    } else {
        req.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        req.insert_header(http::header::ACCEPT, "application/json, text/event-stream")?;
    }
    match &s.stateless {
        Some(mirror) => {
            req.insert_header("mcp-protocol-version", STATELESS)?;
            req.insert_header("mcp-method", mirror.method)?;
            if let Some(name) = &mirror.name {
                let value = crate::mcp::revision::encode_header_name(name);
                req.insert_header("mcp-name", value.as_ref())?;
            }
        }
        None => req.insert_header("mcp-protocol-version", PROTOCOL)?,
    }
    if let Some(id) = &s.id {
        req.insert_header(MCP_SESSION_ID, id.as_str())?;
    }
    let path = upstream::upstream_path(up, "", None);
    let target = Target {
        upstream: s.upstream,
        path: &path,
    };
    request::prepare(deps.shared, None, &mut req, target, ctx)?;
    let body = traced(ctx, body);
    super::frame(&mut req, (method != "GET").then_some(&body[..]))?;
    let sent = dispatch(deps, ctx, s.upstream, (&req, &body), read_timeout).await;
    if let (Ok((head, _)), Some(_)) = (&sent, &s.stateless) {
        // A source that stopped speaking the revision (a 2025 server wants
        // a session): learn again what it speaks.
        if matches!(head.status.as_u16(), 400 | 404) {
            deps.shared.upstream_sessions.forget_stateless(&up.name);
        }
    }
    sent
}

/// A sampled request's trace context in the `params._meta` of what goes
/// to the source (`federation::meta`), as on a plain route.
fn traced(ctx: &Ctx, body: Vec<u8>) -> Vec<u8> {
    let Some(trace) = ctx.trace.as_deref().filter(|t| t.sampled) else {
        return body;
    };
    let parent = trace.traceparent();
    std::str::from_utf8(&parent)
        .ok()
        .and_then(|p| crate::federation::meta::with_trace_context(&body, p, trace.state.as_deref()))
        .unwrap_or(body)
}

/// The caller's token exchanged for `upstream`'s, where it acts as the
/// caller; a failure is this source's error, named.
async fn as_caller(deps: Deps<'_>, ctx: &mut Ctx, upstream: usize) -> Result<()> {
    super::request::act_as_caller(deps.shared, ctx, upstream)
        .await
        .map_err(|e| {
            let status = if e.is_access_decision() { 403 } else { 502 };
            Error::explain(ErrorType::HTTPStatus(status), e.to_string())
        })
}

/// A plain HTTP request to `upstream` (an HTTP tool's): `path` after the
/// upstream URL's own, with the upstream's credentials, circuit breaker,
/// connect retries and timeouts, as for an MCP request.
pub async fn send_plain(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    (method, path, headers): (&str, &str, &[(String, String)]),
    body: Option<Vec<u8>>,
) -> Result<(ResponseHeader, h1::Response)> {
    as_caller(deps, ctx, upstream).await?;
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[upstream];
    let mut req = RequestHeader::build(method, b"/", Some(4 + headers.len()))?;
    req.insert_header(http::header::ACCEPT, "application/json, */*;q=0.5")?;
    if body.is_some() {
        req.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    }
    for (name, value) in headers {
        req.insert_header(name.clone(), value.as_str())?;
    }
    let path = upstream::upstream_path(up, path, None);
    request::prepare(
        deps.shared,
        None,
        &mut req,
        Target {
            upstream,
            path: &path,
        },
        ctx,
    )?;
    let body = body.unwrap_or_default();
    super::frame(&mut req, (method != "GET").then_some(&body[..]))?;
    dispatch(deps, ctx, upstream, (&req, &body), up.first_byte_timeout).await
}

/// Send a framed request to `upstream` through its circuit breaker, with
/// its connect retries; the breaker learns how it went.
async fn dispatch(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    (req, body): (&RequestHeader, &[u8]),
    read_timeout: std::time::Duration,
) -> Result<(ResponseHeader, h1::Response)> {
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[upstream];
    let peer = rt
        .peers
        .get(upstream)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream not resolved"))?;
    let retry = rt
        .health
        .get(upstream)
        .map_or(ConnectRetry::Never, |h| ConnectRetry::Budget(h));
    // The source's circuit breaker: an open circuit fails at once.
    let m = &deps.shared.metrics;
    let mut ticket = match rt.health.get(upstream).map(|h| h.admit(m)) {
        Some(Err(_)) => {
            return Err(
                Error::explain(ErrorType::ConnectRefused, "the upstream's circuit is open")
                    .into_up(),
            )
        }
        Some(Ok(t)) => t,
        None => None,
    };
    let answer = if up.http2 {
        // HTTP/2 where the source agrees: Pingora's client session.
        pingora_source::exchange(deps, (peer, up), req, body, read_timeout).await
    } else {
        super::open(
            deps,
            (peer, up),
            req,
            body,
            read_timeout,
            h1::SMALL_ROOM,
            (Resend::IfIdempotent, retry),
            &mut ctx.exchange.retries,
        )
        .await
        .map_err(super::Open::into_error)
    };
    if let Some(t) = ticket.as_mut() {
        t.record(
            answer
                .as_ref()
                .is_ok_and(|(h, _)| !h.status.is_server_error()),
            m,
        );
    }
    answer
}

/// The answer's body read to its end (at most `max` bytes), its connection
/// pooled again.
pub async fn read_body(
    deps: Deps<'_>,
    ctx: &Ctx,
    s: &UpstreamSession,
    head: &ResponseHeader,
    mut answer: h1::Response,
    max: usize,
) -> Result<bytes::Bytes> {
    let Some(buf) = read_capped(&mut answer, max).await? else {
        return Err(upstream_error(
            "the upstream's answer is larger than the gateway reads",
        ));
    };
    pool(deps, ctx, s.upstream, answer);
    if !head.status.is_success() {
        return Err(upstream_error("the upstream refused the request"));
    }
    Ok(buf.freeze())
}

/// The answer's body, read to its end; `None` as soon as it passes `max`
/// bytes (the rest is not read, so its connection is not to be pooled).
pub async fn read_capped(answer: &mut h1::Response, max: usize) -> Result<Option<BytesMut>> {
    let mut buf = BytesMut::new();
    let mut over = false;
    while answer
        .read(|piece| {
            over |= buf.len() + piece.len() > max;
            if !over {
                buf.extend_from_slice(piece);
            }
        })
        .await?
    {
        if over {
            return Ok(None);
        }
    }
    Ok(Some(buf))
}

/// An answer read to its end: its connection goes back to the pool.
pub fn pool(deps: Deps<'_>, ctx: &Ctx, upstream: usize, answer: h1::Response) {
    if let Some(stream) = answer.into_reusable() {
        let up = &ctx.rt.snapshot.upstreams[upstream];
        if let Some(peer) = ctx.rt.peers.get(upstream).and_then(Option::as_ref) {
            deps.shared
                .idle
                .put(peer.reuse_hash(), stream, up.pool_idle_timeout);
        }
    }
}

/// The answer read whole: the messages it carries, JSON or an event stream.
pub async fn read_whole(
    deps: Deps<'_>,
    ctx: &Ctx,
    s: &UpstreamSession,
    head: &ResponseHeader,
    answer: h1::Response,
    max: usize,
) -> Result<Vec<Value>> {
    let buf = read_body(deps, ctx, s, head, answer, max).await?;
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let mut out = Vec::new();
    if sse {
        let mut parser = SseParser::new(max);
        parser.feed(&buf, |e| {
            if !e.oversize {
                if let Ok(v) = serde_json::from_slice::<Value>(e.data) {
                    out.push(v);
                }
            }
        });
    } else if !buf.is_empty() {
        match serde_json::from_slice::<Value>(&buf) {
            Ok(Value::Array(items)) => out.extend(items),
            Ok(v) => out.push(v),
            Err(_) => return Err(upstream_error("the upstream's answer is not JSON")),
        }
    }
    Ok(out)
}

/// The result of the request `id` in `answer` (read whole): a JSON-RPC
/// error, or no answer to it, is a failure.
pub async fn result(
    deps: Deps<'_>,
    ctx: &Ctx,
    s: &UpstreamSession,
    (head, answer): (&ResponseHeader, h1::Response),
    id: &Value,
) -> Result<Value> {
    let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
    let mut messages = read_whole(deps, ctx, s, head, answer, max).await?;
    let at = response_at(&messages, id).ok_or_else(|| upstream_error("no answer"))?;
    match messages.swap_remove(at).get_mut("result").map(Value::take) {
        Some(result) => Ok(result),
        None => Err(upstream_error("an error answer")),
    }
}

/// The response among `messages` to the request `id`.
pub fn response_for<'a>(messages: &'a [Value], id: &Value) -> Option<&'a Value> {
    response_at(messages, id).map(|i| &messages[i])
}

/// Where among `messages` the response to the request `id` is.
pub fn response_at(messages: &[Value], id: &Value) -> Option<usize> {
    messages
        .iter()
        .position(|m| m.get("id") == Some(id) && m.get("method").is_none())
}

fn upstream_error(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, why).into_up()
}
