//! Sources marked `http2: true`: spoken to through Pingora's client
//! session, HTTP/2 where ALPN agrees (HTTP/1.1 where the server offers only
//! that), so a source that speaks only HTTP/2 is served. The answer's head
//! is the source's; its body is piped as it comes into the HTTP/1.1 reader
//! the rest of the gateway reads answers with (`h1::Response`, over an
//! in-memory connection), so lists, calls and held streams read it the
//! same way. The session goes back to Pingora's pool once its answer was
//! read to the end.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use sluice_config::Upstream;
use tokio::io::AsyncWriteExt;

use crate::conn::h1;
use crate::exchange::Deps;
use crate::upstream;

/// The in-memory connection's buffer: a source ahead of its reader waits.
const PIPE: usize = 64 * 1024;

/// Send `req` and `body` to the source; its answer's head, and its body to
/// read as it comes (each read waits at most `read_timeout`).
pub(super) async fn exchange(
    deps: Deps<'_>,
    (peer, up): (&HttpPeer, &Upstream),
    req: &RequestHeader,
    body: &[u8],
    read_timeout: Duration,
) -> Result<(ResponseHeader, h1::Response)> {
    let connector = &deps.upstreams.connector;
    let (mut session, _reused) = connector.get_http_session(peer).await?;
    let mut req = req.clone();
    upstream::speak_version(&mut req, &session);
    session.set_read_timeout(Some(read_timeout));
    session.set_write_timeout(Some(up.write_timeout));
    session.write_request_header(Box::new(req)).await?;
    if !body.is_empty() {
        session
            .write_request_body(Bytes::copy_from_slice(body), true)
            .await?;
    }
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let head = session
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response header"))?
        .clone();
    let (ours, mut theirs) = tokio::io::duplex(PIPE);
    // HTTP/1.0 without a length: the body ends with the connection.
    theirs
        .write_all(b"HTTP/1.0 200 Sluice\r\n\r\n")
        .await
        .map_err(|e| Error::because(ErrorType::InternalError, "an in-memory answer", e))?;
    let (peer, idle) = (peer.clone(), up.pool_idle_timeout);
    let connector = connector.clone();
    tokio::spawn(async move {
        let whole = loop {
            if session.response_done() {
                break true;
            }
            match session.read_response_body().await {
                Ok(Some(chunk)) => {
                    if theirs.write_all(&chunk).await.is_err() {
                        // The reader went before the end: not reusable.
                        break false;
                    }
                }
                Ok(None) => break true,
                Err(e) => {
                    tracing::debug!(error = %e, "a source's answer ended early");
                    break false;
                }
            }
        };
        // The reader sees the end of the body either way (a cut one fails
        // to parse or ends its stream).
        drop(theirs);
        if whole {
            connector
                .release_http_session(session, &peer, Some(idle))
                .await;
        }
    });
    let (_, answer) = h1::receive(Box::new(ours), read_timeout, PIPE)
        .await?
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "an in-memory answer"))?;
    Ok((head, answer))
}
