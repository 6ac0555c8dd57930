//! A streamed answer written to an HTTP/1.1 client directly rather than
//! through Pingora's body writer. Pingora sends a chunked answer's head,
//! each chunk and the last chunk in separate writes (its 1.4 KB write
//! buffer cannot hold the head with a burst, and the last chunk follows a
//! flush), so a streamed model answer costs three sends where one would
//! do. Here the head goes out with the first burst and the last chunk with
//! the end of the body. The connection then goes back to Pingora in a fresh
//! session for its next request (`give_back`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession as SessionV1;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tokio::io::AsyncWriteExt;

/// The client connection, out of Pingora's session while the answer is
/// written.
pub struct Direct {
    client: Client,
    /// Written with the next burst: the answer's head, once it is set.
    pending: BytesMut,
    method: http::Method,
}

/// A client connection taken out of Pingora's HTTP/1.1 session, and what
/// that session knew of its keep-alive. Shared with `detach`.
pub(crate) struct Client {
    pub stream: Stream,
    /// Seconds to keep it alive (0: no limit); `None`: close after this
    /// answer.
    pub keepalive: Option<u64>,
    pub reuses: Option<u32>,
}

impl Client {
    /// Take the connection of an HTTP/1.1 session; `None` (nothing taken)
    /// for anything else. Pingora is left a stand-in session that closes
    /// without a word.
    pub(crate) fn take(session: &mut Session) -> Option<Client> {
        let h1 = session.downstream_session.as_http1()?;
        let reuses = h1.get_keepalive_reuses_remaining();
        let keepalive = h1
            .will_keepalive()
            .then(|| session.downstream_session.get_keepalive())
            .flatten();
        let stand_in = ServerSession::new_http1(Box::new(std::io::Cursor::new(Vec::new())));
        match std::mem::replace(&mut *session.downstream_session, stand_in) {
            ServerSession::H1(s) => Some(Client {
                stream: s.into_inner(),
                keepalive,
                reuses,
            }),
            other => {
                *session.downstream_session = other;
                None
            }
        }
    }
}

impl Direct {
    /// Take the client connection of an HTTP/1.1 request read whole; `None`
    /// (nothing taken) for anything else. Pingora's session is left a
    /// stand-in until `give_back`.
    pub fn take(session: &mut Session) -> Option<Direct> {
        let req = session.req_header();
        let (method, version) = (req.method.clone(), req.version);
        if version != http::Version::HTTP_11 || !session.downstream_session.is_body_done() {
            return None;
        }
        Some(Direct {
            client: Client::take(session)?,
            pending: BytesMut::new(),
            method,
        })
    }

    /// The answer's head, sent with the first burst.
    pub fn head(&mut self, head: &mut ResponseHeader) -> Result<()> {
        self.pending = chunked_head(head, self.client.keepalive.is_some())?;
        Ok(())
    }

    /// One burst of the body (with the head before the first), and the last
    /// chunk after it if `end`: one write.
    pub async fn write(&mut self, body: &[u8], end: bool) -> Result<()> {
        let head = std::mem::take(&mut self.pending).freeze();
        write_chunk(&mut self.client.stream, head, body, end).await
    }

    /// The answer failed part-way: the client gets what it has not had of
    /// the head (so it sees the answer cut, as from Pingora's session), and
    /// the connection closes.
    pub async fn cut(mut self) {
        if !self.pending.is_empty() {
            let _ = self.client.stream.write_all(&self.pending).await;
        }
        let _ = self.client.stream.shutdown().await;
    }

    /// The answer is written: the connection goes back to Pingora in a
    /// fresh session that has "read" a body-less request of the same method
    /// (nothing more is read from the client), so that Pingora keeps it for
    /// the next request — or closes it, if it was not to be kept alive.
    pub async fn give_back(self, session: &mut Session) {
        let Client {
            stream,
            keepalive,
            reuses,
        } = self.client;
        let mut fresh = SessionV1::new(stream);
        let line = format!("{} / HTTP/1.1\r\n\r\n", self.method);
        fresh.set_pipelined_prefix(BytesMut::from(line.as_bytes()));
        if let Err(e) = fresh.read_request().await {
            // Not expected (the line is ours); the answer is out, the
            // connection just closes.
            tracing::warn!(error = %e, "client connection not handed back");
            return;
        }
        let mut fresh = ServerSession::H1(fresh);
        fresh.set_keepalive(keepalive);
        fresh.set_keepalive_reuses_remaining(reuses);
        *session.downstream_session = fresh;
    }
}

/// `before` (a head, or nothing), one chunk of `body` (none if it is empty)
/// and the last chunk if `end`, in one write, flushed. Shared with `detach`.
pub(crate) async fn write_chunk(
    client: &mut Stream,
    before: Bytes,
    body: &[u8],
    end: bool,
) -> Result<()> {
    let mut line = [0u8; 18];
    let line = size_line(&mut line, body.len());
    let tail = tail(body.len(), end);
    if before.is_empty() && body.is_empty() && tail.is_empty() {
        return Ok(());
    }
    let mut out = before.chain(line).chain(body).chain(tail);
    let written = async {
        client.write_all_buf(&mut out).await?;
        client.flush().await
    };
    written
        .await
        .map_err(|e| Error::because(ErrorType::WriteError, "writing to the client", e).into_down())
}

/// A chunk's size line (none for an empty burst: a zero-size chunk would
/// end the body), written into `buf`.
fn size_line(buf: &mut [u8; 18], len: usize) -> &[u8] {
    if len == 0 {
        return &[];
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut n = len;
    while n > 0 {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    &buf[i..]
}

/// What follows a burst of `len` bytes: the chunk's end and, if `end`, the
/// last chunk.
fn tail(len: usize, end: bool) -> &'static [u8] {
    match (len, end) {
        (0, false) => b"",
        (0, true) => b"0\r\n\r\n",
        (_, false) => b"\r\n",
        (_, true) => b"\r\n0\r\n\r\n",
    }
}

/// The head as the client gets it: chunked, with `Date` and `Connection`
/// as Pingora would have written them.
fn chunked_head(head: &mut ResponseHeader, keepalive: bool) -> Result<BytesMut> {
    head.set_version(http::Version::HTTP_11);
    head.remove_header(&http::header::CONTENT_LENGTH);
    head.insert_header(
        http::header::DATE,
        pingora::protocols::http::date::get_cached_date(),
    )?;
    let connection = if keepalive { "keep-alive" } else { "close" };
    head.insert_header(http::header::CONNECTION, connection)?;
    head.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    let mut buf = BytesMut::with_capacity(256);
    buf.put_slice(b"HTTP/1.1 ");
    buf.put_slice(head.status.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(head.get_reason_phrase().unwrap_or("").as_bytes());
    buf.put_slice(b"\r\n");
    head.header_to_h1_wire(&mut buf);
    buf.put_slice(b"\r\n");
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(pending: &[u8], body: &[u8], end: bool) -> Vec<u8> {
        let mut line = [0u8; 18];
        let line = size_line(&mut line, body.len());
        [pending, line, body, tail(body.len(), end)].concat()
    }

    #[test]
    fn the_head_goes_with_the_first_burst_and_the_end_with_the_last() {
        assert_eq!(
            wire(b"HEAD\r\n\r\n", b"data: 1\n\n", false),
            b"HEAD\r\n\r\n9\r\ndata: 1\n\n\r\n"
        );
        assert_eq!(wire(b"", &[b'x'; 300], true)[..5], *b"12c\r\n");
        assert!(wire(b"", &[b'x'; 300], true).ends_with(b"x\r\n0\r\n\r\n"));
        assert_eq!(wire(b"", b"", true), b"0\r\n\r\n");
        assert_eq!(wire(b"H", b"", true), b"H0\r\n\r\n", "a head-only end");
        assert!(
            wire(b"", b"", false).is_empty(),
            "no zero-size chunk mid-body"
        );
    }

    #[test]
    fn the_head_is_chunked_and_says_whether_the_connection_stays() {
        for keepalive in [true, false] {
            let mut head = ResponseHeader::build(200, None).unwrap();
            head.insert_header("Content-Type", "text/event-stream")
                .unwrap();
            head.insert_header("content-length", "12").unwrap();
            head.set_version(http::Version::HTTP_10);
            let wire = chunked_head(&mut head, keepalive).unwrap();
            let text = String::from_utf8(wire.to_vec()).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.ends_with("\r\n\r\n"), "{text}");
            let lower = text.to_ascii_lowercase();
            assert!(lower.contains("transfer-encoding: chunked\r\n"), "{text}");
            assert!(
                lower.contains("content-type: text/event-stream\r\n"),
                "{text}"
            );
            assert!(lower.contains("date: "), "{text}");
            assert!(!lower.contains("content-length"), "{text}");
            let connection = if keepalive { "keep-alive" } else { "close" };
            assert!(
                lower.contains(&format!("connection: {connection}\r\n")),
                "{text}"
            );
        }
    }
}
