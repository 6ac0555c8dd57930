//! The request body, read whole before anything goes upstream: refused
//! past its cap, counted against the ceiling on bodies held at once.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::head::header_str;
use crate::bodies::BodyHold;
use crate::ctx::Ctx;
use crate::refusal::{Refusal, MAX_DRAIN};

/// Room for a request body before its first bytes: the usual MCP message
/// fits; larger bodies grow as they arrive.
const FIRST_BODY_ROOM: u64 = 16 * 1024;

/// The request body under the snapshot's caps, counted in `ctx`.
pub async fn read(session: &mut Session, ctx: &mut Ctx) -> Result<Bytes, Refusal> {
    let snap = &ctx.rt.snapshot;
    read_body(
        session,
        snap.max_body_bytes,
        snap.client_read_timeout,
        &mut ctx.request.body_hold,
        snap.max_body_bytes_held,
    )
    .await
}

/// Read the whole request body, refusing it past `limit` bytes. Pingora's
/// replay buffer is enabled first so bodies up to its size need no copy.
pub async fn read_body(
    session: &mut Session,
    limit: u64,
    read_timeout: Duration,
    hold: &mut BodyHold,
    held_max: u64,
) -> Result<Bytes, Refusal> {
    let declared = header_str(session.req_header(), http::header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit) {
        return Err(Refusal::BodyTooLarge {
            limit,
            drain: n <= limit.saturating_add(MAX_DRAIN),
        });
    }
    session.enable_retry_buffering();
    session.set_read_timeout(Some(read_timeout));
    // Memory follows the bytes that came, not the bytes promised: a head
    // declaring megabytes and a body that trickles holds what it sent.
    let first = declared.unwrap_or(FIRST_BODY_ROOM).min(FIRST_BODY_ROOM);
    let mut buf = BytesMut::with_capacity(first as usize);
    hold.grow(buf.capacity() as u64, held_max)?;
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if (buf.len() + chunk.len()) as u64 > limit {
                    return Err(Refusal::BodyTooLarge { limit, drain: true });
                }
                // Every body being read counts against one ceiling.
                let before = buf.capacity();
                buf.extend_from_slice(&chunk);
                hold.grow(buf.capacity().saturating_sub(before) as u64, held_max)?;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "request body read failed");
                return Err(Refusal::BodyRead);
            }
        }
    }
    Ok(buf.freeze())
}
