//! Upstream exchanges, once a request is admitted. Every exchange — an MCP
//! call through Pingora's proxy loop (whose phases call in here), an MCP
//! call through the gateway's own client (`mcp`), a model call with its
//! fallbacks (`llm`), a held stream (`conn::detach`) — runs the same
//! sequence, written once in this module and `crate::answer`:
//!
//! 1. `request::prepare` — the upstream request: path, `Host`, hop headers
//!    gone, the upstream's own credential and the caller's assertion;
//! 2. `open` — a pooled connection or a new one, connect failures retried
//!    within the upstream's retry budget, the request sent, the answer's
//!    head read; a pooled connection the upstream had closed is tried again
//!    once on a fresh one, if the request may be sent twice (`Resend`);
//! 3. `sending` / `answered` — the whole-call deadline starts; the circuit
//!    breaker hears a 5xx (or a stream that started);
//! 4. `answer::head`, `answer::chunk` — the watchers;
//! 5. `Shared::failed` / `Shared::record` (`crate::record`) — the end.
//!
//! A new kind of upstream exchange is a new caller of these steps, not a
//! copy of them: see ARCHITECTURE.md. The gateway's own HTTP/1.1 client
//! and its idle pool live with the other connection code in `crate::conn`.

pub mod llm;
pub mod mcp;
pub mod request;
pub mod rpc;
pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::connectors::http::Connector;
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, Result};
use sluice_config::Upstream;

use crate::conn::front::ReentrySlot;
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::resilience::UpstreamHealth;
use crate::state::Shared;

/// The clients every exchange uses, and the way back in for a connection
/// whose held stream ends (`conn::detach`).
pub struct Upstreams {
    /// Pingora's client: upstreams that may speak HTTP/2.
    /// Shared with the tasks that read sources' answers (`rpc`).
    pub connector: Arc<Connector>,
    /// How the gateway's own HTTP/1.1 client (`h1`) connects; its idle
    /// connections are kept in `Shared::idle`.
    pub transport: TransportConnector,
    pub reentry: ReentrySlot,
}

impl Upstreams {
    pub fn new(reentry: ReentrySlot) -> Upstreams {
        Upstreams {
            connector: Arc::new(Connector::new(None)),
            transport: TransportConnector::new(None),
            reentry,
        }
    }
}

/// What an exchange takes: the shared state and the clients (not the
/// `ProxyHttp` implementation).
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub shared: &'a Arc<Shared>,
    pub upstreams: &'a Upstreams,
}

/// The request goes upstream now: the clock of a POST's whole-call
/// deadline starts.
pub fn sending(method: &http::Method, up: &Upstream, ctx: &mut Ctx) {
    let now = Instant::now();
    ctx.exchange.sent = Some(now);
    if method == http::Method::POST {
        ctx.exchange.deadline = up.total_timeout.map(|t| now + t);
    }
}

/// The upstream's answer head came. A 5xx is a failure now; a GET stream
/// that started is a success now (it may run for hours); a call's success
/// is known at its end.
pub fn answered(shared: &Shared, get: bool, resp: &ResponseHeader, ctx: &mut Ctx) {
    let x = &mut ctx.exchange;
    x.latency = x.sent.map(|t| t.elapsed());
    let failed = resp.status.is_server_error();
    if failed || get {
        if let Some(t) = x.ticket.as_mut() {
            t.record(!failed, &shared.metrics);
        }
    }
}

/// May a request be sent a second time, on a fresh connection, when the
/// pooled one it was written to turns out closed without a byte of
/// answer? The one rule for every exchange on the own client; the caller
/// says which applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resend {
    /// Only an idempotent method (GET, DELETE): a tool call is never sent
    /// twice once written, since the upstream may have acted on it.
    IfIdempotent,
    /// Any request: a model call has no effect beyond its answer.
    Always,
}

/// How connect failures are retried: within the upstream's attempts and
/// retry budget (with backoff), or not at all (the caller falls back to
/// another target instead).
#[derive(Clone, Copy)]
pub enum ConnectRetry<'a> {
    Budget(&'a UpstreamHealth),
    Never,
}

/// Why an exchange did not get an answer's head.
pub enum Open {
    /// No connection could be made: nothing was sent.
    Connect(Box<Error>),
    /// Sent (or partly), and then it failed.
    Failed(Box<Error>),
}

impl Open {
    pub fn into_error(self) -> Box<Error> {
        match self {
            Open::Connect(e) | Open::Failed(e) => e,
        }
    }
}

/// Send a request on the own HTTP/1.1 client and read the answer's head:
/// a pooled connection first, else a new one (connect failures retried as
/// `retry` says; `retries` counts them); a pooled connection that turns out
/// closed is tried again once on a fresh one, as `resend` allows.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    deps: Deps<'_>,
    (peer, up): (&HttpPeer, &Upstream),
    req: &RequestHeader,
    body: &[u8],
    read_timeout: Duration,
    room: usize,
    (resend, retry): (Resend, ConnectRetry<'_>),
    retries: &mut u32,
) -> std::result::Result<(ResponseHeader, h1::Response), Open> {
    let resend = match resend {
        Resend::Always => true,
        Resend::IfIdempotent => req.method.is_idempotent(),
    };
    let mut pooled = deps.shared.idle.take(peer.reuse_hash());
    loop {
        let reused = pooled.is_some();
        let mut stream = match pooled.take() {
            Some(s) => s,
            None => connect(deps, peer, up, retry, retries).await?,
        };
        let answer = match h1::send(&mut stream, req, body, up.write_timeout).await {
            Ok(()) => h1::receive(stream, read_timeout, room).await,
            Err(_) if reused && resend => Ok(None),
            Err(e) => Err(e),
        };
        match answer {
            Ok(Some(x)) => return Ok(x),
            Ok(None) if reused && resend => {
                tracing::debug!(upstream = %up.name, "pooled connection was closed; retrying on a fresh one");
            }
            Ok(None) => {
                return Err(Open::Failed(
                    Error::explain(
                        ErrorType::ConnectionClosed,
                        "the upstream closed the connection without answering",
                    )
                    .into_up(),
                ))
            }
            Err(e) => return Err(Open::Failed(e)),
        }
    }
}

/// A new connection (a large future: TCP and TLS connect, boxed so that
/// only the exchanges that connect carry it).
async fn connect(
    deps: Deps<'_>,
    peer: &HttpPeer,
    up: &Upstream,
    retry: ConnectRetry<'_>,
    retries: &mut u32,
) -> std::result::Result<Stream, Open> {
    loop {
        match Box::pin(deps.upstreams.transport.new_stream(peer)).await {
            Ok(s) => return Ok(s),
            Err(e) => match retry {
                ConnectRetry::Budget(h) if h.may_retry(*retries, &deps.shared.metrics) => {
                    *retries += 1;
                    tracing::debug!(upstream = %up.name, error = %e, "connect failed; retrying");
                    tokio::time::sleep(h.backoff(*retries)).await;
                }
                _ => return Err(Open::Connect(e.into_up())),
            },
        }
    }
}

/// The request as the own client writes it: HTTP/1.1, the body whole with
/// its length (the client's framing was read already), nothing that asks
/// the upstream to wait for a go-ahead.
pub fn frame(req: &mut RequestHeader, body: Option<&[u8]>) -> Result<()> {
    req.set_version(http::Version::HTTP_11);
    req.remove_header(&http::header::TRANSFER_ENCODING);
    req.remove_header(&http::header::EXPECT);
    if let Some(b) = body {
        // Most requests go with the client's body and its length already
        // said: inserting again would cost a header-map insert, often one
        // that grows the map.
        if !says_length(req, b.len()) {
            req.insert_header(http::header::CONTENT_LENGTH, b.len().to_string())?;
        }
    }
    Ok(())
}

/// Does `req` carry exactly one `Content-Length`, written as `len` is in
/// decimal (no sign, no leading zeros)?
fn says_length(req: &RequestHeader, len: usize) -> bool {
    let mut all = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return false;
    };
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    v.as_bytes() == &digits[at..]
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

    #[test]
    fn a_length_said_otherwise_than_plainly_is_written_anew() {
        let body = vec![b'x'; 1024];
        for (sent, kept) in [
            (&["1024"][..], true),
            (&["01024"], false),
            (&["+1024"], false),
            (&["1023"], false),
            (&["1024", "1024"], false),
        ] {
            let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
            for v in sent {
                req.append_header("content-length", *v).unwrap();
            }
            assert_eq!(says_length(&req, body.len()), kept, "{sent:?}");
            frame(&mut req, Some(&body)).unwrap();
            let out: Vec<_> = req.headers.get_all("content-length").iter().collect();
            assert_eq!(out, ["1024"], "{sent:?}");
        }
        let mut zero = RequestHeader::build("POST", b"/mcp", None).unwrap();
        zero.append_header("content-length", "0").unwrap();
        assert!(says_length(&zero, 0));
    }
}
