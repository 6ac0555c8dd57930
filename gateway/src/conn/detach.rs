//! Held event streams served outside Pingora's per-request session. An
//! SSE answer to an HTTP/1.1 client (a GET stream, or a tool call that
//! reports progress) may stay open for hours with nothing to say; in
//! Pingora's session it keeps the session, its request-head buffer and
//! Pingora's per-request and per-connection futures (~30 KB) alive all that
//! time. A stream still open after `HOLD` (100 ms) is taken out of that
//! session and goes on in a small task of its own: the same watchers, the
//! same chunked framing Pingora started, the same end-of-request record,
//! and no read buffer while it idles (`h1::Response::read_held`). When it
//! ends cleanly, a keep-alive connection goes back to the front service
//! (`front::Front`) for its next request, as if it had never left. Short answers never
//! leave.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::direct::{write_chunk, Client};
use super::front::{Reentry, ReentrySlot};
use super::h1;
use crate::answer;
use crate::ctx::Ctx;
use crate::record::Done;
use crate::state::Shared;

/// Where a finished stream's upstream connection goes back to: the pool
/// key and the upstream's idle timeout.
pub(crate) type PoolSlot = (u64, Duration);

/// How long an event stream stays in Pingora's session before it leaves:
/// long enough that a call answered at once never pays for the move
/// (a task, a few writes), short enough that a burst of new streams does
/// not pile up in Pingora's larger state.
pub const HOLD: Duration = Duration::from_millis(100);

/// Whether this answer may leave Pingora's session if it is held: an event
/// stream, chunked (as Pingora will write it too), to an HTTP/1.1 client
/// whose request was read whole. HTTP/2 multiplexes its streams on one
/// connection, which stays Pingora's.
pub(crate) fn wanted(session: &mut Session, head: &ResponseHeader, ctx: &Ctx) -> bool {
    head.status == http::StatusCode::OK
        && ctx.exchange.inspector.is_sse()
        && head
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
        && session.req_header().version == http::Version::HTTP_11
        && session.downstream_session.as_http1().is_some()
        && session.downstream_session.is_body_done()
}

/// Take the client connection out of Pingora's session (`direct::Client`;
/// the answer's head and first chunks written) and run the rest of the
/// stream in a task of its own, with the request's state; the `ctx` left
/// behind says its state was `taken`, so that `logging` does not record
/// the request twice. On `Err` nothing was taken and the caller goes on
/// serving the stream.
pub(crate) fn hand_off(
    (shared, reentry): (&Arc<Shared>, &ReentrySlot),
    session: &mut Session,
    ctx: &mut Ctx,
    answer: h1::Response,
    pool: PoolSlot,
) -> std::result::Result<(), Box<h1::Response>> {
    let Some(reentry) = reentry.get().cloned() else {
        return Err(Box::new(answer));
    };
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let method = session.req_header().method.clone();
    let sent = session.body_bytes_sent() as u64;
    let Some(client) = Client::take(session) else {
        return Err(Box::new(answer));
    };
    ctx.outcome.bytes_out += sent;
    let mut own = Ctx::new(ctx.rt.clone());
    own.outcome.taken = true;
    let ctx = std::mem::replace(ctx, own);
    let held = Held {
        shared: shared.clone(),
        method,
        status,
        keepalive: client.keepalive.is_some(),
        pool,
        reentry,
        connection: super::front::current_connection(),
    };
    shared.metrics.streams_detached.inc();
    tokio::spawn(held.serve(client.stream, answer, ctx));
    Ok(())
}

/// What a detached stream's task keeps besides the connections and `Ctx`.
struct Held {
    shared: Arc<Shared>,
    method: http::Method,
    /// The answer's status, as Pingora wrote it.
    status: u16,
    keepalive: bool,
    pool: PoolSlot,
    reentry: Reentry,
    /// The connection's ticket: it stays counted while its stream is held.
    connection: Option<Arc<super::conns::Ticket>>,
}

impl Held {
    async fn serve(self, mut client: Stream, mut answer: h1::Response, mut ctx: Ctx) {
        let shared = &*self.shared;
        let result = stream(shared, &mut client, &mut answer, &mut ctx).await;
        let e = result.err();
        if let Some(e) = &e {
            shared.failed(e, &mut ctx);
            if e.esource() == &pingora::ErrorSource::Upstream {
                // Close the answer properly, with an error for each waiting call.
                if let Some(events) = shared.cut_short(&mut ctx) {
                    let _ = write_chunk(&mut client, Bytes::new(), &events, true).await;
                }
            }
        } else if let Some(upstream) = answer.into_reusable() {
            shared.idle.put(self.pool.0, upstream, self.pool.1);
        }
        let done = Done {
            status: self.status,
            method: self.method.as_str(),
            version: http::Version::HTTP_11,
        };
        shared.record(&done, e.as_deref(), &mut ctx);
        shared.metrics.streams_detached.dec();
        // The request's state (its concurrency slots) goes before the
        // connection serves another request.
        drop(ctx);
        let keepalive = self.keepalive && !*self.reentry.shutdown.borrow();
        match self.reentry.front.upgrade() {
            Some(front) if keepalive && e.is_none() => {
                drop(self.shared);
                front
                    .come_back(client, self.connection, &self.reentry.shutdown)
                    .await;
            }
            _ => {
                let _ = client.shutdown().await;
            }
        }
    }
}

/// Each piece of the answer as the upstream sends it (what Pingora had
/// buffered goes first), until it ends or the client goes away.
async fn stream(
    shared: &Shared,
    client: &mut Stream,
    answer: &mut h1::Response,
    ctx: &mut Ctx,
) -> Result<()> {
    client.flush().await.map_err(|e| {
        Error::because(ErrorType::WriteError, "flushing to the client", e).into_down()
    })?;
    let mut probe = [0u8; 1];
    loop {
        let mut out = BytesMut::new();
        let more = tokio::select! {
            biased;
            r = answer.read_held(|piece| out.extend_from_slice(piece)) => r?,
            // The client says nothing more once its request is read: a read
            // that returns is the client leaving (or talking out of turn).
            r = client.read(&mut probe) => {
                let why = match r {
                    Ok(0) => "the client closed the stream",
                    Ok(_) => "the client sent data after its request",
                    Err(_) => "the client connection failed",
                };
                return Err(Error::explain(ErrorType::ConnectionClosed, why).into_down());
            }
        };
        let end = !more;
        let mut body = (!out.is_empty()).then(|| out.freeze());
        answer::chunk(shared, &mut body, end, ctx)?;
        let body = body.as_deref().unwrap_or_default();
        write_chunk(client, Bytes::new(), body, end).await?;
        ctx.outcome.bytes_out += body.len() as u64;
        if end {
            return Ok(());
        }
    }
}
