//! MCP exchanges the gateway drives itself, once a request is admitted:
//! HTTP/1.1 upstreams through the gateway's own client (`h1`), whatever the
//! body's size; upstreams that may speak HTTP/2 through Pingora's client
//! session when the body outgrew Pingora's replay buffer (smaller ones go
//! through Pingora's proxy loop, whose phases run the same steps). The
//! client's disconnect ends the exchange.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType, Result};

use super::request::{self, Target};
use super::{ConnectRetry, Deps, Resend};
use crate::conn::detach;
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::{answer, upstream};

/// A tool call (any body size), a GET stream or a DELETE to an HTTP/1.1
/// upstream.
pub async fn run(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let rt = ctx.rt.clone();
    let route = ctx
        .request
        .route
        .map(|i| &rt.snapshot.routes[i])
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
    let up = rt.snapshot.upstream(route);
    let peer = rt
        .peers
        .get(route.upstream)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream not resolved"))?;
    let method = session.req_header().method.clone();
    let get = method == http::Method::GET;
    let body = traced_body(ctx).or_else(|| ctx.request.body.clone());

    let mut req = session.req_header().clone();
    let target = Target {
        upstream: route.upstream,
        path: &ctx.request.upstream_path,
    };
    request::prepare(deps.shared, client_ip(session), &mut req, target, ctx)?;
    super::frame(&mut req, body.as_deref())?;
    super::sending(&method, up, ctx);
    // Per read: a call waits for its answer; a GET stream may be idle.
    let read_timeout = if get {
        up.stream_idle_timeout
    } else {
        up.first_byte_timeout
    };
    let body = body.as_deref().unwrap_or_default();
    let retry = rt
        .health
        .get(route.upstream)
        .map_or(ConnectRetry::Never, |h| ConnectRetry::Budget(h));
    let (mut head, mut answer) = super::open(
        deps,
        (peer, up),
        &req,
        body,
        read_timeout,
        h1::SMALL_ROOM,
        (Resend::IfIdempotent, retry),
        &mut ctx.exchange.retries,
    )
    .await
    .map_err(super::Open::into_error)?;
    // Not kept for the life of a stream that may be held for hours.
    drop(req);
    super::answered(deps.shared, get, &head, ctx);
    upstream::answer_version(&mut head, session);
    answer::head(deps.shared, &mut head, ctx);
    let header_only = answer.done();
    let mut detachable = !header_only && detach::wanted(session, &head, ctx);
    session
        .write_response_header(Box::new(head), header_only)
        .await?;
    if !header_only {
        // An event stream still open after `detach::HOLD` leaves Pingora's
        // session (nothing is armed until this is first polled).
        let hold = async { tokio::time::sleep(detach::HOLD).await };
        tokio::pin!(hold);
        // The client going away (or sending more than it should) ends the
        // exchange, as in Pingora's proxy loop; once the downstream has
        // said what it had to, it is not watched again.
        let mut watch_client = true;
        loop {
            let mut out = BytesMut::new();
            let more = tokio::select! {
                biased;
                r = answer.read(|piece| out.extend_from_slice(piece)) => r?,
                r = session.read_body_or_idle(true), if watch_client => match r {
                    Err(e) => return Err(e.into_down()),
                    Ok(_) => {
                        watch_client = false;
                        continue;
                    }
                },
                () = &mut hold, if detachable => {
                    detachable = false;
                    let pool = (peer.reuse_hash(), up.pool_idle_timeout);
                    match detach::hand_off((deps.shared, &deps.upstreams.reentry), session, ctx, answer, pool) {
                        Ok(()) => return Ok(()),
                        Err(back) => {
                            answer = *back;
                            continue;
                        }
                    }
                }
            };
            let end = !more;
            let mut body = (!out.is_empty()).then(|| out.freeze());
            answer::chunk(deps.shared, &mut body, end, ctx)?;
            if body.is_some() || end {
                session.write_response_body(body, end).await?;
            }
            if end {
                break;
            }
        }
    }
    if let Some(stream) = answer.into_reusable() {
        deps.shared
            .idle
            .put(peer.reuse_hash(), stream, up.pool_idle_timeout);
    }
    Ok(())
}

/// A body over Pingora's replay buffer to an upstream that may speak
/// HTTP/2: Pingora's client session, written whole.
pub async fn run_pingora(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let route = ctx
        .route()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
    let route_upstream = route.upstream;
    let rt = ctx.rt.clone();
    let upstream = rt.snapshot.upstream(route);
    let peer = rt
        .peers
        .get(route_upstream)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream not resolved"))?
        .clone();
    let idle = upstream.pool_idle_timeout;
    let traced = traced_body(ctx);
    let rewritten = traced.is_some();
    let body = traced
        .or_else(|| ctx.request.body.clone())
        .unwrap_or_default();

    let mut req = session.req_header().clone();
    let target = Target {
        upstream: route_upstream,
        path: &ctx.request.upstream_path,
    };
    request::prepare(deps.shared, client_ip(session), &mut req, target, ctx)?;
    if rewritten {
        req.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    }
    let connector = &deps.upstreams.connector;
    let (mut up, _reused) = connector.get_http_session(&peer).await?;
    upstream::speak_version(&mut req, &up);
    up.set_read_timeout(peer.options.read_timeout);
    up.set_write_timeout(peer.options.write_timeout);
    super::sending(&req.method, upstream, ctx);
    up.write_request_header(Box::new(req)).await?;
    up.write_request_body(body, true).await?;
    up.finish_request_body().await?;
    up.read_response_header().await?;
    let mut resp = up
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?
        .clone();
    super::answered(deps.shared, false, &resp, ctx);
    upstream::answer_version(&mut resp, session);
    answer::head(deps.shared, &mut resp, ctx);
    let header_only = up.response_done();
    session
        .write_response_header(Box::new(resp), header_only)
        .await?;
    if !header_only {
        loop {
            let chunk = up.read_response_body().await?;
            let end = chunk.is_none() || up.response_done();
            let mut body = chunk;
            answer::chunk(deps.shared, &mut body, end, ctx)?;
            session.write_response_body(body, end).await?;
            if end {
                break;
            }
        }
    }
    connector.release_http_session(up, &peer, Some(idle)).await;
    Ok(())
}

/// The client's address, for `X-Forwarded-For`.
pub fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The body with a sampled request's trace context in `params._meta`, as
/// MCP carries it beside the headers (the gateway's span is the parent
/// there too). An unsampled request's body goes as sent: no span of the
/// gateway's exists to name, and the headers carry the context.
fn traced_body(ctx: &Ctx) -> Option<Bytes> {
    let trace = ctx.trace.as_deref().filter(|t| t.sampled)?;
    let body = ctx.request.body.as_ref()?;
    let facts = ctx.request.facts.as_ref()?;
    if facts.batch || facts.first().kind != crate::mcp::Kind::Request {
        return None;
    }
    let parent = trace.traceparent();
    let parent = std::str::from_utf8(&parent).ok()?;
    crate::federation::meta::with_trace_context(body, parent, trace.state.as_deref())
        .map(Bytes::from)
}
