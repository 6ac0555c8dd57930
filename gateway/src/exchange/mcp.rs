//! The gateway's own exchange with an MCP upstream, once a request is
//! admitted: HTTP/1.1 upstreams through the gateway's own client (`h1`),
//! whatever the body's size; upstreams that may speak HTTP/2 through
//! Pingora's client session when the body outgrew Pingora's replay buffer
//! (smaller ones go through Pingora's proxy loop). The answer streams back
//! through the same watchers, timeouts and circuit breaker as the proxy
//! loop's phases, and the client's disconnect ends the exchange.

use bytes::BytesMut;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, Result};
use sluice_config::Upstream;

use crate::downstream::detach;
use crate::exchange::h1;
use crate::proxy::{on_response_chunk, Ctx, Gateway};
use crate::resilience::UpstreamHealth;
use crate::upstream;

/// A tool call (any body size), a GET stream or a DELETE to an HTTP/1.1
/// upstream.
pub async fn run(gw: &Gateway, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let rt = ctx.rt.clone();
    let route = ctx
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
    let body = ctx.body.clone();

    let mut req = session.req_header().clone();
    gw.prepare_upstream_request(session, &mut req, ctx)?;
    frame(&mut req, body.as_deref())?;
    gw.upstream_sending(&method, ctx);
    // Per read: a call waits for its answer; a GET stream may be idle.
    let read_timeout = if get {
        up.stream_idle_timeout
    } else {
        up.first_byte_timeout
    };
    let body = body.as_deref().unwrap_or_default();
    let health = rt.health.get(route.upstream).map(|h| &**h);
    let (mut head, mut answer) = exchange(
        gw,
        (peer, up, health),
        &mut ctx.retries,
        &req,
        body,
        read_timeout,
    )
    .await?;
    // Not kept for the life of a stream that may be held for hours.
    drop(req);
    gw.upstream_answered(get, &head, ctx);
    upstream::answer_version(&mut head, session);
    let t = std::time::Instant::now();
    gw.on_response_header(&mut head, ctx)?;
    ctx.gateway_time += t.elapsed();
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
                    match detach::hand_off(gw, session, ctx, answer, pool) {
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
            on_response_chunk(&gw.shared, &mut body, end, ctx)?;
            if body.is_some() || end {
                session.write_response_body(body, end).await?;
            }
            if end {
                break;
            }
        }
    }
    if let Some(stream) = answer.into_reusable() {
        gw.shared
            .idle
            .put(peer.reuse_hash(), stream, up.pool_idle_timeout);
    }
    Ok(())
}

/// The request as the own client writes it: HTTP/1.1, the body whole with
/// its length (the client's framing was read already), nothing that asks
/// the upstream to wait for a go-ahead.
fn frame(req: &mut RequestHeader, body: Option<&[u8]>) -> Result<()> {
    req.set_version(http::Version::HTTP_11);
    req.remove_header(&http::header::TRANSFER_ENCODING);
    req.remove_header(&http::header::EXPECT);
    if let Some(b) = body {
        req.insert_header(http::header::CONTENT_LENGTH, b.len().to_string())?;
    }
    Ok(())
}

/// Connect (retrying connect failures with backoff, within the upstream's
/// attempts and retry budget, as `fail_to_connect` does for Pingora's
/// loop), send, and read the answer's head. A pooled connection the
/// upstream had already closed is tried again on a fresh one for GET and
/// DELETE; a tool call is never sent twice once written.
async fn exchange(
    gw: &Gateway,
    (peer, up, health): (&HttpPeer, &Upstream, Option<&UpstreamHealth>),
    retries: &mut u32,
    req: &RequestHeader,
    body: &[u8],
    read_timeout: std::time::Duration,
) -> Result<(ResponseHeader, h1::Response)> {
    let resend = req.method.is_idempotent();
    let mut pooled = gw.shared.idle.take(peer.reuse_hash());
    loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(s) => s,
            None => match Box::pin(gw.transport.new_stream(peer)).await {
                Ok(s) => s,
                Err(e) => match health {
                    Some(h) if h.may_retry(*retries, &gw.shared.metrics) => {
                        *retries += 1;
                        tracing::debug!(upstream = %up.name, error = %e, "connect failed; retrying");
                        tokio::time::sleep(h.backoff(*retries)).await;
                        continue;
                    }
                    _ => return Err(e.into_up()),
                },
            },
        };
        let answer = match h1::send(&mut stream, req, body, up.write_timeout).await {
            Ok(()) => h1::receive(stream, read_timeout, h1::SMALL_ROOM).await,
            Err(_) if reused && resend => Ok(None),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Some(x)) => return Ok(x),
            Ok(None) if reused && resend => {
                tracing::debug!(upstream = %up.name, "pooled connection was closed; retrying on a fresh one");
            }
            Ok(None) => {
                return Err(Error::explain(
                    ErrorType::ConnectionClosed,
                    "the upstream closed the connection without answering",
                )
                .into_up())
            }
            Err(e) => return Err(e),
        }
    }
}

/// A body over Pingora's replay buffer to an upstream that may speak
/// HTTP/2: Pingora's client session, written whole.
pub async fn run_pingora(gw: &Gateway, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let route = ctx
        .route()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route"))?;
    let upstream = ctx.rt.snapshot.upstream(route);
    let peer = ctx
        .rt
        .peers
        .get(route.upstream)
        .and_then(Option::as_ref)
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream not resolved"))?
        .clone();
    let idle = upstream.pool_idle_timeout;
    let body = ctx.body.clone().unwrap_or_default();

    let mut req = session.req_header().clone();
    gw.prepare_upstream_request(session, &mut req, ctx)?;
    let (mut up, _reused) = gw.connector.get_http_session(&peer).await?;
    upstream::speak_version(&mut req, &up);
    up.set_read_timeout(peer.options.read_timeout);
    up.set_write_timeout(peer.options.write_timeout);
    gw.upstream_sending(&req.method, ctx);
    up.write_request_header(Box::new(req)).await?;
    up.write_request_body(body, true).await?;
    up.finish_request_body().await?;
    up.read_response_header().await?;
    let mut resp = up
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?
        .clone();
    gw.upstream_answered(false, &resp, ctx);
    upstream::answer_version(&mut resp, session);
    gw.on_response_header(&mut resp, ctx)?;
    let header_only = up.response_done();
    session
        .write_response_header(Box::new(resp), header_only)
        .await?;
    if !header_only {
        loop {
            let chunk = up.read_response_body().await?;
            let end = chunk.is_none() || up.response_done();
            let mut body = chunk;
            on_response_chunk(&gw.shared, &mut body, end, ctx)?;
            session.write_response_body(body, end).await?;
            if end {
                break;
            }
        }
    }
    gw.connector
        .release_http_session(up, &peer, Some(idle))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_goes_out_whole_as_http1() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.set_version(http::Version::HTTP_2);
        req.insert_header("transfer-encoding", "chunked").unwrap();
        req.insert_header("expect", "100-continue").unwrap();
        frame(&mut req, Some(b"{}")).unwrap();
        assert_eq!(req.version, http::Version::HTTP_11);
        assert!(req.headers.get("transfer-encoding").is_none());
        assert!(req.headers.get("expect").is_none());
        assert_eq!(req.headers.get("content-length").unwrap(), "2");

        let mut get = RequestHeader::build("GET", b"/mcp", None).unwrap();
        frame(&mut get, None).unwrap();
        assert!(get.headers.get("content-length").is_none());
    }
}
