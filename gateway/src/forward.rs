//! Forwarding of requests whose body is larger than Pingora's 64 KiB replay
//! buffer. The body was already read and decided on; here the gateway opens
//! (or reuses) the upstream connection itself, writes every byte, and streams
//! the response back through the same watchers as the normal path.

use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::proxy::{on_response_chunk, Ctx, Gateway};
use crate::upstream;

pub async fn run(gw: &Gateway, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
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
    ctx.upstream_sent = Some(std::time::Instant::now());
    up.write_request_header(Box::new(req)).await?;
    up.write_request_body(body, true).await?;
    up.finish_request_body().await?;
    up.read_response_header().await?;
    ctx.upstream_latency = ctx.upstream_sent.map(|t| t.elapsed());
    let mut resp = up
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?
        .clone();
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
            let t = std::time::Instant::now();
            on_response_chunk(&mut body, end, ctx);
            gw.learn_catalog(ctx);
            ctx.gateway_time += t.elapsed();
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
