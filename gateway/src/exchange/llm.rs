//! The model exchange: try the call's targets in order — the next one on a
//! connect failure, an open circuit, 429 or 5xx, but only while nothing has
//! reached the client (the explicit difference from an MCP exchange, which
//! has one target and retries its connect instead) — then stream the answer
//! back chunk by chunk through the usage watcher. The same steps as every
//! exchange (`super`): the request prepared, `open`, `sending` (the
//! whole-call deadline), `answered` (the target's circuit breaker).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, Result};
use sluice_config::Upstream;

use super::request::{self, Target};
use super::{ConnectRetry, Deps, Open, Resend};
use crate::conn::direct::Direct;
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::llm::usage::UsageWatch;
use crate::llm::Outcome;
use crate::{answer, upstream};

/// Most chunks gathered into one write to the client.
const MAX_BURST: usize = 256;
/// The client-side buffer's size (the watcher holds as much), and how full
/// they get before a burst is written: it is sent before they would grow.
const OUT_CAPACITY: usize = crate::llm::usage::HELD_CAPACITY;
const MAX_BURST_BYTES: usize = 24 * 1024;

pub async fn run(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let mut call = ctx
        .decision
        .llm
        .take()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no model call"))?;
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let alias = snap
        .llm
        .alias(&call.req.model)
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "alias vanished"))?;
    let subject = ctx.caller.as_ref().map(|c| c.subject.to_string());
    // A model provider is often a third party: the client's address is not
    // its to know (an MCP upstream is told it).
    let client = None;
    let mut last_err: Option<Box<Error>> = None;
    let mut attempts = 0u32;
    let tries = call.order.len();
    for (n, &ti) in call.order.iter().enumerate() {
        let target = &alias.targets[ti];
        let up = &snap.upstreams[target.upstream];
        let Some(peer) = rt.peers.get(target.upstream).and_then(Option::as_ref) else {
            continue;
        };
        let last = n + 1 == tries;
        // The target's circuit breaker: an open circuit is skipped like a
        // target that does not connect.
        let health = rt.health.get(target.upstream);
        ctx.exchange.ticket = match health.map(|h| h.admit(&deps.shared.metrics)) {
            Some(Err(retry_after)) => {
                tracing::warn!(upstream = %up.name, "model upstream's circuit is open; trying the next target");
                fallback_metric(deps, &up.name, "circuit_open");
                last_err = Some(Error::explain(
                    ErrorType::ConnectRefused,
                    format!("circuit open for {}s", retry_after.as_secs().max(1)),
                ));
                continue;
            }
            Some(Ok(ticket)) => ticket,
            None => None,
        };
        attempts += 1;
        let metadata = up.llm_metadata.then(|| {
            let tenant = ctx.caller.as_ref().and_then(|c| c.tenant.as_deref());
            serde_json::json!({
                "end_user": subject,
                "tags": tenant.map(|t| vec![format!("tenant:{t}")]).unwrap_or_default(),
                "sluice_request_id": ctx.request.request_id,
            })
        });
        let body = call
            .req
            .body_for(&target.model, subject.as_deref(), metadata);
        let mut req = session.req_header().clone();
        prepare(
            deps,
            client,
            ctx,
            &mut req,
            target.upstream,
            &call.rest,
            body.len(),
        )?;
        super::sending(&req.method, up, ctx);
        let (mut resp, mut answer) = match open(deps, peer, up, req, body).await {
            Ok(x) => x,
            Err(Open::Connect(e)) => {
                tracing::warn!(upstream = %up.name, error = %e, "model upstream connect failed; trying the next target");
                fallback_metric(deps, &up.name, "connect");
                if let Some(t) = ctx.exchange.ticket.as_mut() {
                    t.record(false, &deps.shared.metrics);
                }
                last_err = Some(e);
                continue;
            }
            Err(Open::Failed(e)) => return Err(e),
        };
        super::answered(deps.shared, false, &resp, ctx);
        let status = resp.status.as_u16();
        if !last && (status == 429 || status >= 500) {
            tracing::warn!(upstream = %up.name, status, "model upstream refused; trying the next target");
            fallback_metric(deps, &up.name, if status == 429 { "429" } else { "5xx" });
            continue;
        }
        // From here on the client sees this answer: no more fallback.
        let sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let strip = call.req.injects_usage() && status < 400;
        if strip {
            resp.remove_header(&http::header::CONTENT_LENGTH);
        }
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        let mut watch = UsageWatch::new(call.req.api, sse, strip, max);
        if snap.llm.audit_text {
            watch = watch.capture_text();
        }
        upstream::answer_version(&mut resp, session);
        let header_only = answer.done();
        // HTTP/1.1 clients get the answer written directly (`direct`): the
        // head with the first burst, the last chunk with the last burst.
        let mut direct = if header_only {
            None
        } else {
            Direct::take(session)
        };
        match direct.as_mut() {
            Some(d) => {
                d.head(&mut resp)?;
                ctx.outcome.status = Some(status);
            }
            None => {
                session
                    .write_response_header(Box::new(resp), header_only)
                    .await?
            }
        }
        let mut outcome = Outcome {
            target: ti,
            status,
            usage: Default::default(),
            saw_usage: false,
            first_token_at: None,
            attempts,
            text: None,
        };
        if !header_only {
            // What goes to the client next: one buffer, taken back for the
            // next burst once the write has let go of it.
            let mut out = BytesMut::with_capacity(OUT_CAPACITY);
            loop {
                // Wait for the next piece, then take what else has already
                // arrived: one write to the client per burst, not per chunk.
                let mut next = answer.feed(&mut watch, &mut out).await;
                if let Err(e) = answer::check_deadline(ctx) {
                    next = Err(e);
                }
                let mut pieces = 0;
                let mut end;
                let t = std::time::Instant::now();
                loop {
                    match next {
                        Ok(more) => {
                            end = !more || answer.done();
                            pieces += usize::from(more);
                        }
                        Err(e) => {
                            record(&mut outcome, &watch);
                            call.outcome = Some(outcome);
                            ctx.decision.llm = Some(call);
                            if let Some(d) = direct {
                                d.cut().await;
                            }
                            return Err(e);
                        }
                    }
                    if end
                        || !answer.more_ready()
                        || pieces >= MAX_BURST
                        || out.len() + watch.held() >= MAX_BURST_BYTES
                    {
                        break;
                    }
                    // Both readers are cancel-safe: a read that would wait
                    // is dropped and nothing is lost.
                    match answer.feed(&mut watch, &mut out).now_or_never() {
                        Some(r) => next = r,
                        None => break,
                    }
                }
                if end {
                    watch.finish(&mut out);
                } else {
                    watch.flush(&mut out);
                }
                ctx.outcome.gateway_time += t.elapsed();
                if let Some(d) = direct.as_mut() {
                    d.write(&out, end).await?;
                    ctx.outcome.bytes_out += out.len() as u64;
                    out.clear();
                } else {
                    let body = (!out.is_empty()).then(|| out.split().freeze());
                    if body.is_some() || end {
                        session.write_response_body(body, end).await?;
                    }
                }
                if end {
                    break;
                }
            }
        }
        record(&mut outcome, &watch);
        call.outcome = Some(outcome);
        ctx.decision.llm = Some(call);
        answer.release(deps, peer, up.pool_idle_timeout).await;
        if let Some(d) = direct {
            d.give_back(session).await;
        }
        return Ok(());
    }
    ctx.decision.llm = Some(call);
    // Every target failed to connect: an upstream failure (502), not ours.
    Err(last_err
        .unwrap_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no model upstream reachable"))
        .into_up())
}

/// The upstream's answer being read: by the gateway's own HTTP/1.1 client,
/// or by Pingora's session where the upstream may speak HTTP/2.
enum Answer {
    Own(h1::Response),
    Pingora(Box<ClientSession>),
}

/// Send the request to one target and read the answer's head, on the own
/// client (`super::open`: a model call may be sent twice on a stale pooled
/// connection; a connect failure falls back to the next target instead of
/// retrying) or, where the upstream may speak HTTP/2, Pingora's session.
async fn open(
    deps: Deps<'_>,
    peer: &HttpPeer,
    up: &Upstream,
    req: RequestHeader,
    body: Bytes,
) -> std::result::Result<(ResponseHeader, Answer), Open> {
    if up.http2 {
        // Boxed: Pingora's session future is large (~10 KB) and would
        // otherwise be carried, and copied, by every HTTP/1.1 exchange too.
        return Box::pin(open_pingora(deps, peer, up, req, body)).await;
    }
    let mut retries = 0;
    let (head, resp) = super::open(
        deps,
        (peer, up),
        &req,
        &body,
        up.first_byte_timeout,
        h1::BURST_ROOM,
        (Resend::Always, ConnectRetry::Never),
        &mut retries,
    )
    .await?;
    Ok((head, Answer::Own(resp)))
}

/// The HTTP/2-capable path: Pingora's client session.
async fn open_pingora(
    deps: Deps<'_>,
    peer: &HttpPeer,
    up: &Upstream,
    mut req: RequestHeader,
    body: Bytes,
) -> std::result::Result<(ResponseHeader, Answer), Open> {
    let (mut conn, _reused) = deps
        .upstreams
        .connector
        .get_http_session(peer)
        .await
        .map_err(Open::Connect)?;
    upstream::speak_version(&mut req, &conn);
    conn.set_read_timeout(Some(up.first_byte_timeout));
    conn.set_write_timeout(Some(up.write_timeout));
    let head = async {
        conn.write_request_header(Box::new(req)).await?;
        conn.write_request_body(body, true).await?;
        conn.finish_request_body().await?;
        conn.read_response_header().await?;
        conn.response_header()
            .cloned()
            .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))
    }
    .await
    .map_err(Open::Failed)?;
    Ok((head, Answer::Pingora(Box::new(conn))))
}

impl Answer {
    /// Read the next piece of the answer into the watcher. `Ok(false)` at
    /// the end of the body. Feeding happens only once a read has completed,
    /// so the future can be dropped while it waits.
    async fn feed(&mut self, watch: &mut UsageWatch, out: &mut BytesMut) -> Result<bool> {
        match self {
            Answer::Own(resp) => resp.read(|piece| watch.feed(piece, out)).await,
            Answer::Pingora(conn) => {
                let piece = conn.read_response_body().await?;
                Ok(piece.map(|b| watch.feed(&b, out)).is_some())
            }
        }
    }

    fn done(&mut self) -> bool {
        match self {
            Answer::Own(resp) => resp.done(),
            Answer::Pingora(conn) => conn.response_done(),
        }
    }

    /// Whether another read may find bytes already waiting.
    fn more_ready(&self) -> bool {
        match self {
            Answer::Own(resp) => resp.more_ready(),
            Answer::Pingora(_) => true,
        }
    }

    /// Back to the pool if the connection can carry another request.
    async fn release(self, deps: Deps<'_>, peer: &HttpPeer, idle: Duration) {
        match self {
            Answer::Own(resp) => {
                if let Some(stream) = resp.into_reusable() {
                    deps.shared.idle.put(peer.reuse_hash(), stream, idle);
                }
            }
            Answer::Pingora(conn) => {
                // Boxed for the same reason as `open_pingora`.
                let connector = &deps.upstreams.connector;
                Box::pin(connector.release_http_session(*conn, peer, Some(idle))).await;
            }
        }
    }
}

fn record(o: &mut Outcome, w: &UsageWatch) {
    o.text.clone_from(&w.text);
    o.usage = w.usage;
    o.saw_usage = w.saw_usage;
    o.first_token_at = w.first_token_at;
}

fn fallback_metric(deps: Deps<'_>, upstream: &str, why: &str) {
    deps.shared
        .metrics
        .llm_fallbacks
        .with_label_values(&[upstream, why])
        .inc();
}

/// The upstream request for one target (`request::prepare`), with what a
/// model call adds: the body's new length, HTTP/1.1 on the wire for the own
/// client (`open_pingora` sets what its connection speaks), and no
/// compressed answer (its usage could not be read).
fn prepare(
    deps: Deps<'_>,
    client: Option<std::net::IpAddr>,
    ctx: &Ctx,
    req: &mut RequestHeader,
    upstream_idx: usize,
    rest: &str,
    len: usize,
) -> Result<()> {
    let up = &ctx.rt.snapshot.upstreams[upstream_idx];
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    let path = upstream::upstream_path(up, path, query);
    let target = Target {
        upstream: upstream_idx,
        path: &path,
    };
    request::prepare(deps.shared, client, req, target, ctx)?;
    req.set_version(http::Version::HTTP_11);
    req.remove_header(&http::header::TRANSFER_ENCODING);
    req.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    req.remove_header(&http::header::ACCEPT_ENCODING);
    Ok(())
}
