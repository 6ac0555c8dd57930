//! The legacy HTTP+SSE transport (2024-11-05) on a virtual server. A `GET`
//! without a session opens the client's stream, whose first event names
//! the message URL (`<route>/message?sessionId=…`, `federation::legacy`).
//! A message posted there is answered 202 at once (the connection closed,
//! so the client's next message never waits behind this one) and then run
//! as a Streamable HTTP request in the client's sealed session, on an
//! in-memory connection: every decision is the one a Streamable HTTP client
//! gets. What that answers — JSON or a stream, with the requests a source
//! sends the client — goes on the client's stream. A stream lives on the
//! replica that opened it: a load balancer keeps a stream's messages there
//! (by its `sessionId`).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::super::Deps;
use super::refuse;
use crate::ctx::Ctx;
use crate::federation::legacy::Refused;
use crate::limits::Limited;
use crate::mcp::sse::{write_event, SseParser};
use crate::refusal::Refusal;

/// Where a legacy client posts its messages, under the route's path.
pub(super) const MESSAGE_PATH: &str = "/message";

/// Is the request's path the route's message URL?
pub(super) fn is_message(req: &pingora::http::RequestHeader, ctx: &Ctx) -> bool {
    let route = ctx.route().map_or("", |r| r.path.trim_end_matches('/'));
    req.uri.path().strip_prefix(route) == Some(MESSAGE_PATH)
}

/// The in-memory connection's buffer each way.
const PIPE: usize = 64 * 1024;

/// The client's stream: the `endpoint` event, then its messages' answers
/// as they come, until the client goes.
pub(super) async fn open(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let streams = &deps.shared.legacy_streams;
    let (id, mut rx) = match streams.open(ctx.caller_key()) {
        Ok(opened) => opened,
        Err(Refused::Full) => {
            let limit = "legacy_streams".to_owned();
            tracing::warn!("a legacy stream refused: the replica holds as many as it may");
            let r = Refusal::Limited(Limited::Concurrency { limit });
            return refuse(deps, session, ctx, r).await;
        }
        Err(Refused::NoRandom) => {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no random session id",
            ))
        }
    };
    let route = ctx
        .route()
        .map_or("", |r| r.path.as_str())
        .trim_end_matches('/');
    let endpoint = format!("event: endpoint\ndata: {route}{MESSAGE_PATH}?sessionId={id}\n\n");
    let streamed = relay(deps, session, ctx, (&id, endpoint), &mut rx).await;
    streams.close(&id);
    streamed
}

/// The client's stream: its messages' answers, and — once `initialize`
/// gave it a session — the sources' own streams (a `GET` in the session,
/// run as the messages are).
async fn relay(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (id, endpoint): (&str, String),
    rx: &mut mpsc::Receiver<Bytes>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(200, Some(2))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(endpoint)), false)
        .await?;
    let streams = &deps.shared.legacy_streams;
    let Some(to_client) = streams.sender(id) else {
        return session.write_response_body(None, true).await;
    };
    let mut watch_client = true;
    let mut listening: Option<Inner<'_>> = None;
    let mut ctx = Some(ctx);
    loop {
        tokio::select! {
            sent = rx.recv() => match sent {
                Some(events) => {
                    session.write_response_body(Some(events), false).await?;
                    if listening.is_none() {
                        if let (Some(sealed), Some(c)) = (streams.sealed(id), ctx.take()) {
                            let pipe = Pipe { events_only: true, on_session: &|_| {} };
                            let to = &to_client;
                            listening = Some(Box::pin(async move {
                                run_inner(deps, c, ("GET", Some(&sealed)), to, pipe).await
                            }));
                        }
                    }
                }
                // Ended here (a client that stopped reading).
                None => return session.write_response_body(None, true).await,
            },
            ended = async { listening.as_mut().expect("listening").await }, if listening.is_some() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "a legacy client's source streams ended");
                }
                // Not started again: the sources' streams have ended.
                listening = Some(Box::pin(std::future::pending()));
            },
            r = session.read_body_or_idle(true), if watch_client => match r {
                Err(e) => return Err(e.into_down()),
                Ok(_) => watch_client = false,
            },
        }
    }
}

/// A message posted to the stream its URL names: 202, then its answer on
/// that stream.
pub(super) async fn post(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let query = session.req_header().uri.query().unwrap_or("");
    let named = crate::mcp::legacy::session_param(&format!("?{query}"));
    let Ok(Some(id)) = named else {
        return refuse(deps, session, ctx, Refusal::NoSession).await;
    };
    let streams = &deps.shared.legacy_streams;
    // Another's stream is unknown, as one that never was.
    let Some(stream) = streams.posted(&id, &ctx.caller_key()) else {
        return refuse(deps, session, ctx, Refusal::ForeignSession).await;
    };
    let mut resp = ResponseHeader::build(202, Some(2))?;
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), true).await?;
    // Sent now, not when the message's answer is done.
    session.finish_body().await?;
    let on_session = |sealed: &str| streams.seal(&id, sealed.to_owned());
    let pipe = Pipe {
        events_only: false,
        on_session: &on_session,
    };
    let to = ("POST", stream.sealed.as_deref());
    let answered = match run_inner(deps, ctx, to, &stream.to_client, pipe).await {
        Ok(ran) => ran,
        Err(e) => {
            // The client was told 202: its request's error goes on the stream.
            tracing::warn!(route = ctx.route_label(), error = %e, "a legacy client's message failed");
            let answered = match ctx.first_id() {
                Some(id) => {
                    let error = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"the gateway could not complete the request"}}}}"#,
                        id.raw()
                    );
                    let mut out = Vec::new();
                    write_event(&mut out, error.as_bytes());
                    stream.to_client.try_send(Bytes::from(out)).is_ok()
                }
                None => true,
            };
            answered
        }
    };
    if !answered {
        tracing::warn!(
            route = ctx.route_label(),
            "a legacy client reads too slowly; its stream is ended"
        );
        let m = &deps.shared.metrics;
        m.upstream_errors
            .with_label_values(&[ctx.route_label(), "legacy_backlog"])
            .inc();
        streams.close(&id);
    }
    Ok(())
}

/// What an in-memory answer's reader passes on.
struct Pipe<'a> {
    /// Only an event stream's messages (a refused `GET` says nothing to
    /// the client).
    events_only: bool,
    /// Told the `mcp-session-id` the answer sets, before its messages go.
    on_session: &'a (dyn Fn(&str) + Sync),
}

/// Run a request (`method`, in the session `sealed`) as a Streamable HTTP
/// client's, on an in-memory connection, its body the message admission
/// read; whether every message of its answer reached the client's backlog.
/// A request run in memory: whether its answer reached the client.
type Inner<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool>> + Send + 'a>>;

fn run_inner<'a>(
    deps: Deps<'a>,
    ctx: &'a mut Ctx,
    (method, sealed): (&'a str, Option<&'a str>),
    to_client: &'a mpsc::Sender<Bytes>,
    pipe: Pipe<'a>,
) -> Inner<'a> {
    // Boxed and named: the exchange runs itself (`super::run`), and a
    // future that contains itself has to be.
    Box::pin(async move {
        let (inner_io, mut peer) = tokio::io::duplex(PIPE);
        let route = ctx.route().map_or("/", |r| r.path.as_str()).to_owned();
        // HTTP/1.0: the answer's body ends with the connection, chunked or not.
        let mut head = format!(
            "{method} {route} HTTP/1.0\r\nhost: sluice\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: 0\r\n"
        );
        if let Some(sealed) = sealed {
            head.push_str(&format!("mcp-session-id: {sealed}\r\n"));
        }
        head.push_str("\r\n");
        peer.write_all(head.as_bytes())
            .await
            .map_err(|e| Error::because(ErrorType::InternalError, "in-memory request", e))?;
        let mut inner = Session::new_h1(Box::new(inner_io));
        if !inner.read_request().await? {
            return Err(Error::explain(
                ErrorType::InternalError,
                "in-memory request",
            ));
        }
        let max = ctx.rt.snapshot.max_inspected_response_bytes as usize;
        let run = async {
            let r = super::run(deps, &mut inner, ctx).await;
            // The answer ends with the connection.
            drop(inner);
            r
        };
        let (ran, read) = tokio::join!(run, read_answer(peer, max, to_client, pipe));
        ran?;
        Ok(read)
    })
}

/// The in-memory answer read as it comes: each message onto the client's
/// stream. Whether all fitted its backlog.
async fn read_answer(
    mut peer: tokio::io::DuplexStream,
    max: usize,
    to_client: &mpsc::Sender<Bytes>,
    pipe: Pipe<'_>,
) -> bool {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut is_sse: Option<bool> = None;
    let mut parser = SseParser::new(max);
    let mut fitted = true;
    let send = |data: &[u8], fitted: &mut bool| {
        let mut out = Vec::with_capacity(data.len() + 24);
        write_event(&mut out, data);
        if to_client.try_send(Bytes::from(out)).is_err() {
            *fitted = false;
        }
    };
    loop {
        let n = peer.read(&mut chunk).await.unwrap_or(0);
        let done = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if is_sse.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let header = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                    };
                    let sse =
                        header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
                    if let Some(sid) = header("mcp-session-id") {
                        (pipe.on_session)(sid);
                    }
                    is_sse = Some(sse);
                    buf.drain(..len);
                }
                Ok(httparse::Status::Partial) if !done => continue,
                _ => return fitted,
            }
        }
        let Some(sse) = is_sse else {
            continue;
        };
        if sse {
            parser.feed(&buf, |e| {
                if !e.oversize && !e.data.is_empty() {
                    send(e.data, &mut fitted);
                }
            });
            buf.clear();
        } else if buf.len() > max {
            // Answers are capped where they are made; this is a guard.
            return false;
        }
        if done {
            if !sse && !pipe.events_only && !buf.is_empty() {
                send(&buf, &mut fitted);
            }
            return fitted;
        }
    }
}
