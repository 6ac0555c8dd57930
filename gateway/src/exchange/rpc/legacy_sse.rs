//! The gateway as a client of the legacy HTTP+SSE transport (2024-11-05),
//! for virtual servers' sources marked `transport: legacy_sse`. `initialize`
//! opens the source's event stream (`GET` its URL); its first event names
//! where messages are posted, which must be on the upstream's own origin.
//! A request is posted there and its answer taken off the stream by id
//! (`federation::source_streams`); what the source sends unasked waits for
//! the session's own stream (`GET`). To the rest of the gateway each
//! exchange is a Streamable HTTP one — a head and a body, `h1::Response`,
//! read from an in-memory connection — so sessions, re-opening a forgotten
//! one, relays and listening work unchanged. A stream lives on the replica
//! that opened it: another replica, not knowing its id, answers as an
//! upstream that forgot the session (404), and a new one is opened there.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{dispatch, pool, read_capped, traced, UpstreamSession};
use crate::conn::h1;
use crate::ctx::Ctx;
use crate::exchange::request::{self, Target};
use crate::exchange::{frame, Deps};
use crate::federation::legacy::Refused;
use crate::federation::source_streams::{id_key, Delivery, SourceStream};
use crate::mcp::sse::{write_event, SseParser};
use crate::upstream;

/// An event on the source's stream may be this large at most.
const MAX_EVENT: usize = 4 * 1024 * 1024;
/// What the answer to a posted message may say (it is read and dropped).
const MAX_POST_ANSWER: usize = 64 * 1024;

/// One exchange in source session `s`, as the Streamable HTTP exchange
/// `method` would be.
pub(super) async fn exchange(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    (method, read_timeout): (&'static str, Duration),
    body: Vec<u8>,
) -> Result<(ResponseHeader, h1::Response)> {
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[s.upstream];
    let owner = ctx.caller_key();
    let known = s
        .id()
        .and_then(|id| deps.shared.source_streams.get(id, &up.name, &owner));
    match method {
        "GET" => match known {
            None => answer(404, None, b"").await,
            Some(stream) => match stream.take_unasked() {
                // One stream of the session's own at a time.
                None => answer(409, None, b"").await,
                Some(rx) => unasked_stream(stream, rx).await,
            },
        },
        "DELETE" => {
            if let Some(id) = s.id() {
                deps.shared.source_streams.remove(id, &up.name, &owner);
            }
            answer(200, None, b"").await
        }
        _ => {
            let message: Value = serde_json::from_slice(&body).map_err(|e| {
                Error::because(ErrorType::InternalError, "a message to a source", e)
            })?;
            let opening = message.get("method").and_then(Value::as_str) == Some("initialize");
            let (id, stream) = match (known, s.id()) {
                (Some(stream), Some(id)) => (id.to_owned(), stream),
                (None, None) if opening => open(deps, ctx, s.upstream, owner).await?,
                // Unknown here (another replica's, or ended): forgotten.
                _ => return answer(404, None, b"").await,
            };
            let waiting = match (message.get("id"), message.get("method")) {
                (Some(rid), Some(_)) => Some((id_key(rid), stream.expect(id_key(rid)))),
                _ => None,
            };
            let posted = post(deps, ctx, s.upstream, &stream.endpoint, body).await;
            let status = match posted {
                Ok(status) => status,
                Err(e) => {
                    if let Some((key, _)) = &waiting {
                        stream.forget(key);
                    }
                    return Err(e);
                }
            };
            if !(200..300).contains(&status) {
                if let Some((key, _)) = &waiting {
                    stream.forget(key);
                }
                // As the source said it (a 404: it forgot the session).
                return answer(status, None, b"").await;
            }
            let Some((key, rx)) = waiting else {
                return answer(202, None, b"").await;
            };
            let session = opening.then_some(id.as_str());
            match tokio::time::timeout(read_timeout, rx).await {
                Ok(Ok(reply)) => answer(200, session, &reply).await,
                Ok(Err(_)) => Err(Error::explain(
                    ErrorType::ConnectionClosed,
                    "the source's event stream ended before its answer",
                )
                .into_up()),
                Err(_) => {
                    stream.forget(&key);
                    Err(
                        Error::explain(ErrorType::ReadTimedout, "waiting for the source's answer")
                            .into_up(),
                    )
                }
            }
        }
    }
}

/// Open the source's event stream and learn where its messages go.
async fn open(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    owner: String,
) -> Result<(String, Arc<SourceStream>)> {
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[upstream];
    let mut req = RequestHeader::build("GET", b"/", Some(4))?;
    req.insert_header(http::header::ACCEPT, "text/event-stream")?;
    let path = upstream::upstream_path(up, "", None);
    let target = Target {
        upstream,
        path: &path,
    };
    request::prepare(deps.shared, None, &mut req, target, ctx)?;
    frame(&mut req, None)?;
    let (head, mut answer) =
        dispatch(deps, ctx, upstream, (&req, &[]), up.stream_idle_timeout).await?;
    let sse = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !head.status.is_success() || !sse {
        return Err(refused("the source's event stream was refused"));
    }
    // The first event names the message URL; messages the same read
    // brought after it are delivered once the stream is kept.
    let mut parser = SseParser::new(MAX_EVENT);
    let mut endpoint = None;
    let mut early = Vec::new();
    let found = tokio::time::timeout(up.first_byte_timeout, async {
        while endpoint.is_none() {
            let more = answer
                .read(|piece| {
                    parser.feed(piece, |ev| match (&endpoint, ev.event) {
                        (None, b"endpoint") => endpoint = Some(ev.data.to_vec()),
                        _ if is_message(ev.event) && !ev.oversize => {
                            early.push(Bytes::copy_from_slice(ev.data))
                        }
                        _ => {}
                    })
                })
                .await?;
            if !more && endpoint.is_none() {
                return Err(refused(
                    "the source's event stream ended before naming its message URL",
                ));
            }
        }
        Ok(())
    })
    .await;
    match found {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "waiting for the source's message URL",
            )
            .into_up())
        }
    }
    let endpoint = endpoint
        .as_deref()
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| message_path(up, e.trim()))
        .ok_or_else(|| refused("the source named a message URL off its own origin"))?;
    let stream = SourceStream::new(up.name.clone(), owner, endpoint);
    let (id, stream) = deps
        .shared
        .source_streams
        .insert(stream)
        .map_err(|r| match r {
            Refused::Full => Error::explain(
                ErrorType::InternalError,
                "this replica holds as many legacy source streams as it may",
            ),
            Refused::NoRandom => Error::explain(ErrorType::InternalError, "no random session id"),
        })?;
    for m in early {
        stream.deliver(m);
    }
    let reader = tokio::spawn(read_stream(answer, parser, stream.clone()));
    stream.set_reader(reader.abort_handle());
    Ok((id, stream))
}

fn is_message(event: &[u8]) -> bool {
    event.is_empty() || event == b"message"
}

/// The source's stream read as it comes: each message delivered (a batch
/// one by one) until the stream ends, which ends the session here.
async fn read_stream(mut answer: h1::Response, mut parser: SseParser, stream: Arc<SourceStream>) {
    let mut messages = Vec::new();
    loop {
        let read = answer
            .read_held(|piece| {
                parser.feed(piece, |ev| {
                    if is_message(ev.event) && !ev.oversize {
                        messages.push(Bytes::copy_from_slice(ev.data));
                    }
                })
            })
            .await;
        for m in messages.drain(..) {
            for one in split_batch(m) {
                if stream.deliver(one) == Delivery::Dropped {
                    tracing::warn!(upstream = %stream.upstream, "a legacy source's unasked message dropped: its session's stream is not read");
                }
            }
        }
        match read {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    stream.end();
}

/// A batch's messages, one by one; anything else as it is.
fn split_batch(m: Bytes) -> Vec<Bytes> {
    if m.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return vec![m];
    }
    match serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(&m) {
        Ok(items) => items
            .iter()
            .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
            .collect(),
        Err(_) => vec![m],
    }
}

/// The message URL the stream named, as a path and query on the
/// upstream's own origin; `None` for one anywhere else.
fn message_path(up: &sluice_config::Upstream, named: &str) -> Option<String> {
    if named.starts_with('/') && !named.starts_with("//") {
        return Some(named.to_owned());
    }
    let url = reqwest::Url::parse(named).ok()?;
    let scheme = match up.scheme {
        sluice_config::Scheme::Http => "http",
        sluice_config::Scheme::Https => "https",
    };
    let same = url.scheme() == scheme
        && url.host_str().map(|h| h.trim_matches(['[', ']'])) == Some(up.host.as_str())
        && url.port_or_known_default() == Some(up.port)
        && url.username().is_empty()
        && url.password().is_none();
    same.then(|| match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    })
}

/// Post one message to the source's message URL: the status it answered.
async fn post(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    endpoint: &str,
    body: Vec<u8>,
) -> Result<u16> {
    let rt = ctx.rt.clone();
    let up = &rt.snapshot.upstreams[upstream];
    let mut req = RequestHeader::build("POST", b"/", Some(4))?;
    req.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    let target = Target {
        upstream,
        path: endpoint,
    };
    request::prepare(deps.shared, None, &mut req, target, ctx)?;
    let body = traced(ctx, body);
    frame(&mut req, Some(&body))?;
    let (head, mut answer) =
        dispatch(deps, ctx, upstream, (&req, &body), up.first_byte_timeout).await?;
    if read_capped(&mut answer, MAX_POST_ANSWER).await?.is_some() {
        pool(deps, ctx, upstream, answer);
    }
    Ok(head.status.as_u16())
}

/// An answer as an upstream would have written it, read back through the
/// HTTP/1.1 reader (never pooled: it says `connection: close`).
async fn answer(
    status: u16,
    session: Option<&str>,
    body: &[u8],
) -> Result<(ResponseHeader, h1::Response)> {
    let mut raw = format!(
        "HTTP/1.1 {status} Sluice\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(id) = session {
        raw.extend_from_slice(format!("mcp-session-id: {id}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    let (ours, mut theirs) = tokio::io::duplex(raw.len());
    theirs
        .write_all(&raw)
        .await
        .map_err(|e| Error::because(ErrorType::InternalError, "an in-memory answer", e))?;
    drop(theirs);
    read_back(ours, Duration::from_secs(5), raw.len()).await
}

/// The session's own stream: what the source sent unasked, as events, for
/// as long as the reader and the source's stream last; what comes after
/// the reader went is kept for the next.
async fn unasked_stream(
    stream: Arc<SourceStream>,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<(ResponseHeader, h1::Response)> {
    const PIPE: usize = 64 * 1024;
    let (ours, mut theirs) = tokio::io::duplex(PIPE);
    // HTTP/1.0: the body ends with the connection.
    theirs
        .write_all(b"HTTP/1.0 200 Sluice\r\ncontent-type: text/event-stream\r\n\r\n")
        .await
        .map_err(|e| Error::because(ErrorType::InternalError, "an in-memory stream", e))?;
    tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(m) = rx.recv().await {
            out.clear();
            write_event(&mut out, &m);
            if theirs.write_all(&out).await.is_err() {
                // The reader went; the message it missed is lost with it.
                stream.give_back_unasked(rx);
                return;
            }
        }
    });
    // Each read waits as long as a held stream may idle.
    read_back(ours, Duration::from_secs(24 * 3600), 16 * 1024).await
}

async fn read_back(
    ours: tokio::io::DuplexStream,
    wait: Duration,
    room: usize,
) -> Result<(ResponseHeader, h1::Response)> {
    h1::receive(Box::new(ours), wait, room.max(1024))
        .await?
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "an in-memory answer").into_up())
}

fn refused(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(502), why).into_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> sluice_config::Upstream {
        let yaml = format!(
            "listeners: [{{ name: main, address: \"127.0.0.1:0\" }}]\n\
             upstreams: [{{ name: s, url: \"{url}\", transport: legacy_sse }}]\n\
             routes: [{{ name: r, path: /r, server: v }}]\n\
             servers: [{{ name: v, sources: [{{ upstream: s }}] }}]\n"
        );
        let snap = sluice_config::load(&yaml, 1).expect("config");
        snap.upstreams[0].clone()
    }

    #[test]
    fn the_message_url_stays_on_the_sources_origin() {
        let up = upstream("http://10.0.0.5:8080/sse");
        for (named, path) in [
            ("/message?sessionId=a", Some("/message?sessionId=a")),
            ("http://10.0.0.5:8080/m?x=1", Some("/m?x=1")),
            ("http://10.0.0.6:8080/m", None),
            ("http://10.0.0.5:9090/m", None),
            ("https://10.0.0.5:8080/m", None),
            ("//evil.example/m", None),
            ("http://user@10.0.0.5:8080/m", None),
            ("message", None),
        ] {
            assert_eq!(message_path(&up, named).as_deref(), path, "{named}");
        }
    }

    #[test]
    fn a_batch_is_delivered_message_by_message() {
        let b = Bytes::from_static(br#" [{"id":1,"result":{}}, {"method":"x"}]"#);
        let parts = split_batch(b);
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0][..], br#"{"id":1,"result":{}}"#);
        let one = Bytes::from_static(br#"{"id":1}"#);
        assert_eq!(split_batch(one.clone()), vec![one]);
    }
}
