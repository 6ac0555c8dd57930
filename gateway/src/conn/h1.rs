//! The gateway's own HTTP/1.1 client, for tool calls and model calls to
//! HTTP/1.1 upstreams: the request written in one go, the response head
//! parsed with httparse, the body decoded (chunked, sized or to the close)
//! straight out of one read buffer, a burst per read. Pingora's client
//! session reads a streamed answer one chunk per call and holds a fixed
//! 64 KiB body buffer per response; this one reads what the socket has,
//! hands every data piece of it to the caller in one pass, and starts its
//! buffer small so that a held stream costs little. Idle connections are
//! kept in the gateway's own pool (`pool`).

use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{header, HeaderName, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::http_req_header_to_wire;
use pingora::protocols::Stream;
use pingora::{Error, ErrorType, Result};
use pingora_timeout::timeout as fast_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The read buffer a held stream starts with: a tool call's answer and
/// its head fit, and an idle stream keeps no more than this.
pub const SMALL_ROOM: usize = 4 * 1024;
/// The most room a read is given: a burst of a streamed answer fits. A read
/// that fills its room doubles it, up to this.
pub const BURST_ROOM: usize = 16 * 1024;
/// Largest response head (status line, headers, skipped 1xx heads).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (extensions included) or trailer line.
const MAX_LINE: usize = 4096;

/// Write the request head and body in one write.
pub async fn send(
    stream: &mut Stream,
    req: &RequestHeader,
    body: &[u8],
    limit: Duration,
) -> Result<()> {
    let mut wire = http_req_header_to_wire(req).ok_or_else(|| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "request line not writable as HTTP/1.1",
        )
    })?;
    wire.extend_from_slice(body);
    let write = async {
        stream.write_all(&wire).await?;
        stream.flush().await
    };
    match fast_timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            Err(Error::because(ErrorType::WriteError, "writing the upstream request", e).into_up())
        }
        Err(_) => {
            Err(Error::explain(ErrorType::WriteTimedout, "writing the upstream request").into_up())
        }
    }
}

/// A response being read: its head is parsed, its body comes by `read`.
pub struct Response {
    stream: Stream,
    buf: BytesMut,
    body: Body,
    read_timeout: Duration,
    keepalive: bool,
    /// The last read filled the room it was given: more may be waiting.
    full: bool,
    /// Body bytes that came with the head, not yet decoded.
    pending: bool,
}

/// Read the response head (skipping interim 1xx heads). `Ok(None)` when
/// the connection closed or was reset before a single byte came: a pooled
/// connection the upstream had already let go of, worth one more try on a
/// fresh one. (A timeout is not: the upstream may be working on it.)
pub async fn receive(
    mut stream: Stream,
    read_timeout: Duration,
    room: usize,
) -> Result<Option<(ResponseHeader, Response)>> {
    let mut buf = BytesMut::with_capacity(room);
    let mut fresh = true;
    let mut filled = false;
    loop {
        if !buf.is_empty() {
            if let Some((head, len)) = parse_head(&buf)? {
                buf.advance(len);
                let code = head.status.as_u16();
                if (100..200).contains(&code) {
                    if code == 101 {
                        return Err(upstream_header("the upstream switched protocols unasked"));
                    }
                    continue;
                }
                let (body, reusable) = framing(&head)?;
                let keepalive = reusable && keepalive(&head);
                let resp = Response {
                    stream,
                    buf,
                    body,
                    read_timeout,
                    keepalive,
                    full: filled,
                    pending: true,
                };
                return Ok(Some((head, resp)));
            }
            if buf.len() > MAX_HEAD {
                return Err(upstream_header("the upstream's response head is too large"));
            }
        }
        match read(&mut stream, &mut buf, read_timeout).await {
            Ok(0) if fresh => return Ok(None),
            Ok(0) => return Err(closed("before the end of the response head")),
            Ok(_) => {
                fresh = false;
                filled = buf.len() == buf.capacity();
            }
            // Closed (or reset) before a single byte: see above.
            Err(e) if fresh && e.etype() == &ErrorType::ReadError => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

impl Response {
    /// Wait for the next bytes and hand each data piece among them to
    /// `sink`. `Ok(false)` once the body has ended. The wait can be dropped
    /// at any point: bytes are consumed only once a read has completed.
    pub async fn read(&mut self, mut sink: impl FnMut(&[u8])) -> Result<bool> {
        if self.done() {
            return Ok(false);
        }
        if std::mem::take(&mut self.pending) && !self.buf.is_empty() {
            self.decode(&mut sink)?;
            return Ok(!self.done());
        }
        if self.full && self.buf.capacity() < BURST_ROOM {
            let want = (self.buf.capacity() * 2).min(BURST_ROOM);
            self.buf.reserve(want - self.buf.len());
        }
        let n = read(&mut self.stream, &mut self.buf, self.read_timeout).await?;
        self.full = self.buf.len() == self.buf.capacity();
        if n == 0 {
            // Decoding to the close takes every byte as it comes: nothing
            // is left over at the end.
            return match self.body {
                Body::Close => {
                    self.body = Body::Done;
                    Ok(false)
                }
                _ => Err(closed("before the end of the response body")),
            };
        }
        self.decode(&mut sink)?;
        Ok(!self.done())
    }

    /// As `read`, for a stream that may idle for hours: while nothing is
    /// buffered, the wait holds no read buffer — a one-byte peek waits for
    /// the next bytes where the transport can peek (plain TCP), and the
    /// buffer is taken again only once they are there.
    pub async fn read_held(&mut self, sink: impl FnMut(&[u8])) -> Result<bool> {
        if !self.done() && !self.pending && !self.full && self.buf.is_empty() {
            self.buf = BytesMut::new();
            let mut one = [0u8; 1];
            // Bytes waiting, a transport that cannot peek, or a failed peek
            // (closed, reset) all go on to the read, which says which.
            let peek = self.stream.try_peek(&mut one);
            if fast_timeout(self.read_timeout, peek).await.is_err() {
                return Err(
                    Error::explain(ErrorType::ReadTimedout, "reading the upstream answer")
                        .into_up(),
                );
            }
            // Pingora's peek reads the byte and puts it back, and the next
            // read returns that one byte alone. Read it and then whatever
            // else is waiting, so a held stream never falls to one byte per
            // read (and one chunk per byte) while its upstream is ahead.
            self.buf.reserve(SMALL_ROOM);
            let n = read(&mut self.stream, &mut self.buf, self.read_timeout).await?;
            if n > 0 {
                use futures::FutureExt;
                if let Some(Ok(more)) = self.stream.read_buf(&mut self.buf).now_or_never() {
                    self.full = more > 0 && self.buf.len() == self.buf.capacity();
                }
                self.pending = true;
            }
        }
        self.read(sink).await
    }

    fn decode(&mut self, sink: &mut impl FnMut(&[u8])) -> Result<()> {
        let used = self.body.decode(&self.buf, sink)?;
        self.buf.advance(used);
        if self.buf.is_empty() {
            // Back to the start of the buffer for the next read.
            self.buf.clear();
        }
        Ok(())
    }

    pub fn done(&self) -> bool {
        matches!(self.body, Body::Done)
    }

    /// Whether the last read filled its room, so more may already wait.
    pub fn more_ready(&self) -> bool {
        self.full
    }

    /// The connection, if it can carry another request: the body was read
    /// to its end, nothing came after it, and both sides keep it alive.
    pub fn into_reusable(self) -> Option<Stream> {
        (self.done() && self.keepalive && self.buf.is_empty()).then_some(self.stream)
    }
}

/// One read into `buf`, with room made first if little is left.
async fn read(stream: &mut Stream, buf: &mut BytesMut, limit: Duration) -> Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(SMALL_ROOM);
    }
    match fast_timeout(limit, stream.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => {
            Err(Error::because(ErrorType::ReadError, "reading the upstream answer", e).into_up())
        }
        Err(_) => {
            Err(Error::explain(ErrorType::ReadTimedout, "reading the upstream answer").into_up())
        }
    }
}

fn closed(when: &'static str) -> Box<Error> {
    Error::explain(
        ErrorType::ConnectionClosed,
        format!("the upstream closed the connection {when}"),
    )
    .into_up()
}

fn upstream_header(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InvalidHTTPHeader, why).into_up()
}

/// A complete head at the start of `buf`, and its length.
fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHeader, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Error::because(
                ErrorType::InvalidHTTPHeader,
                "the upstream's response head",
                e,
            )
            .into_up())
        }
    };
    let code = r.code.unwrap_or(0);
    let mut head = ResponseHeader::build_no_case(code, Some(r.headers.len()))?;
    head.set_version(if r.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    });
    for h in r.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| {
            Error::because(ErrorType::InvalidHTTPHeader, "a response header name", e).into_up()
        })?;
        let value = http::HeaderValue::from_bytes(h.value).map_err(|e| {
            Error::because(ErrorType::InvalidHTTPHeader, "a response header value", e).into_up()
        })?;
        head.append_header(name, value)?;
    }
    Ok(Some((head, len)))
}

/// How the body is delimited (RFC 9112 §6.3), and whether the framing
/// leaves the connection fit for reuse.
fn framing(head: &ResponseHeader) -> Result<(Body, bool)> {
    let code = head.status.as_u16();
    if code == 204 || code == 304 {
        return Ok((Body::Done, true));
    }
    let h = &head.headers;
    if h.contains_key(header::TRANSFER_ENCODING) {
        let last = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .rfind(|t| !t.is_empty());
        let chunked = last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        // With a Content-Length beside it, or on HTTP/1.0, the connection
        // closes after this answer (RFC 9112 §6.1).
        let clean =
            chunked && !h.contains_key(header::CONTENT_LENGTH) && head.version == Version::HTTP_11;
        return Ok((
            if chunked {
                Body::Chunked(Chunk::Size)
            } else {
                Body::Close
            },
            clean,
        ));
    }
    let mut length: Option<u64> = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for t in v.as_bytes().split(|&b| b == b',') {
            let n = std::str::from_utf8(t.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| upstream_header("the upstream sent an invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(upstream_header(
                    "the upstream sent conflicting Content-Lengths",
                ));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Body::Done, true),
        Some(n) => (Body::Length(n), true),
        None => (Body::Close, false),
    })
}

/// HTTP/1.1 stays open unless told to close; HTTP/1.0 only when asked.
fn keepalive(head: &ResponseHeader) -> bool {
    let mut close = false;
    let mut keep = false;
    for v in head.headers.get_all(header::CONNECTION) {
        for t in v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= t.eq_ignore_ascii_case(b"close");
            keep |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (head.version == Version::HTTP_11 || keep)
}

/// Where the body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Chunked(Chunk),
    /// Bytes still to come.
    Length(u64),
    /// Everything until the upstream closes.
    Close,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// Bytes of chunk data still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty one.
    Trailer,
}

impl Body {
    /// Decode from `input`, handing each data piece to `sink`; returns how
    /// many bytes were consumed. What is left is an incomplete framing line
    /// (or, once done, bytes past the end of the body).
    fn decode(&mut self, input: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<usize> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self {
                Body::Done => return Ok(at),
                Body::Close => {
                    if !rest.is_empty() {
                        sink(rest);
                    }
                    return Ok(input.len());
                }
                Body::Length(left) => {
                    let take = piece(rest, left, sink);
                    at += take;
                    if *left == 0 {
                        *self = Body::Done;
                    }
                    if at == input.len() {
                        return Ok(at);
                    }
                }
                Body::Chunked(state) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    match state {
                        Chunk::Data(left) => {
                            at += piece(rest, left, sink);
                            if *left == 0 {
                                *state = Chunk::DataEnd;
                            }
                        }
                        Chunk::DataEnd => {
                            if rest.len() < 2 {
                                if rest[0] != b'\r' {
                                    return Err(chunk_error("no CRLF after chunk data"));
                                }
                                return Ok(at);
                            }
                            if &rest[..2] != b"\r\n" {
                                return Err(chunk_error("no CRLF after chunk data"));
                            }
                            at += 2;
                            *state = Chunk::Size;
                        }
                        Chunk::Size => {
                            let Some((line, len)) = line(rest)? else {
                                return Ok(at);
                            };
                            at += len;
                            let size = chunk_size(line)?;
                            if size == 0 {
                                *state = Chunk::Trailer;
                                continue;
                            }
                            // The usual case: the whole chunk and its CRLF
                            // are here; hand it over in one step.
                            let whole = usize::try_from(size)
                                .ok()
                                .and_then(|n| input.get(at..at.checked_add(n)?.checked_add(2)?));
                            match whole {
                                Some([data @ .., b'\r', b'\n']) => {
                                    sink(data);
                                    at += data.len() + 2;
                                }
                                _ => *state = Chunk::Data(size),
                            }
                        }
                        Chunk::Trailer => {
                            let Some((line, len)) = line(rest)? else {
                                return Ok(at);
                            };
                            at += len;
                            if line.is_empty() {
                                *self = Body::Done;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Hand up to `left` bytes of `rest` to `sink`; returns how many.
fn piece(rest: &[u8], left: &mut u64, sink: &mut impl FnMut(&[u8])) -> usize {
    let take = usize::try_from(*left).map_or(rest.len(), |l| l.min(rest.len()));
    if take > 0 {
        sink(&rest[..take]);
    }
    *left -= take as u64;
    take
}

/// The CRLF-ended line at the start of `rest` (without its CRLF) and its
/// length with it; `None` while it is incomplete.
fn line(rest: &[u8]) -> Result<Option<(&[u8], usize)>> {
    match memchr::memchr(b'\n', rest) {
        Some(nl) if nl > MAX_LINE => Err(chunk_error("chunk line too long")),
        Some(nl) => match rest[..nl].strip_suffix(b"\r") {
            Some(line) => Ok(Some((line, nl + 1))),
            None => Err(chunk_error("chunk line not ended by CRLF")),
        },
        None if rest.len() > MAX_LINE => Err(chunk_error("chunk line too long")),
        None => Ok(None),
    }
}

/// The hex size of a chunk-size line; extensions after `;` are ignored.
fn chunk_size(line: &[u8]) -> Result<u64> {
    let mut size = 0u64;
    let mut digits = 0;
    for &b in line {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => break,
        };
        size = (size << 4) | u64::from(d);
        digits += 1;
    }
    let after = line[digits..].trim_ascii_start();
    // 15 hex digits stay within u64 and allow any body worth streaming.
    if digits == 0 || digits > 15 || !(after.is_empty() || after[0] == b';') {
        return Err(chunk_error("invalid chunk size"));
    }
    Ok(size)
}

fn chunk_error(why: &'static str) -> Box<Error> {
    Error::explain(
        ErrorType::InvalidHTTPHeader,
        format!("the upstream's chunked body: {why}"),
    )
    .into_up()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> ResponseHeader {
        parse_head(raw.as_bytes()).unwrap().unwrap().0
    }

    /// Decode `wire` fed in pieces split at `cut`, as reads would bring it.
    fn decode_split(body: Body, wire: &[u8], cut: usize) -> (Vec<u8>, Body, usize) {
        let mut state = body;
        let mut out = Vec::new();
        let mut held = Vec::new();
        for part in [&wire[..cut], &wire[cut..]] {
            held.extend_from_slice(part);
            let used = state
                .decode(&held, &mut |p| out.extend_from_slice(p))
                .unwrap();
            held.drain(..used);
        }
        (out, state, held.len())
    }

    #[tokio::test]
    async fn a_held_read_waits_without_its_buffer_and_loses_no_byte() {
        use futures::FutureExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut upstream, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
        upstream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        let (_, mut resp) = receive(stream, Duration::from_secs(30), SMALL_ROOM)
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"first") {
            assert!(resp.read_held(|p| got.extend_from_slice(p)).await.unwrap());
        }
        // Nothing to read: the wait starts, and holds no buffer.
        assert!(resp.read_held(|_| {}).now_or_never().is_none());
        assert_eq!(resp.buf.capacity(), 0);

        upstream
            .write_all(b"6\r\nsecond\r\n0\r\n\r\n")
            .await
            .unwrap();
        got.clear();
        while resp.read_held(|p| got.extend_from_slice(p)).await.unwrap() {}
        assert_eq!(got, b"second", "the peeked byte is read once");
        assert!(resp.into_reusable().is_some(), "nothing left over");
    }

    #[tokio::test]
    async fn a_held_read_takes_all_that_waits_not_the_peeked_byte_alone() {
        use futures::FutureExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut upstream, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(tcp));
        // One big chunk, of which the first bytes come at once.
        let size = 4 * SMALL_ROOM;
        let head = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{size:x}\r\n");
        upstream.write_all(head.as_bytes()).await.unwrap();
        upstream.write_all(&[b'x'; 100]).await.unwrap();
        let (_, mut resp) = receive(stream, Duration::from_secs(30), SMALL_ROOM)
            .await
            .unwrap()
            .unwrap();
        let mut got = 0;
        while got < 100 {
            assert!(resp.read_held(|p| got += p.len()).await.unwrap());
        }
        // Mid-chunk and idle: the next wait is a peek. Meanwhile the rest
        // of the chunk arrives, far more than one read's room.
        assert!(resp.read_held(|_| {}).now_or_never().is_none());
        upstream.write_all(&vec![b'x'; size - 100]).await.unwrap();
        upstream.write_all(b"\r\n0\r\n\r\n").await.unwrap();
        upstream.flush().await.unwrap();
        let mut reads = 0;
        while resp.read_held(|p| got += p.len()).await.unwrap() {
            reads += 1;
        }
        assert_eq!(got, size);
        // Pingora's peek hands back one byte; reading that alone each time
        // moved the rest one byte per read.
        assert!(reads <= 16, "{reads} reads for {} bytes", size - 100);
    }

    #[test]
    fn chunked_bodies_decode_the_same_at_every_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..=wire.len() {
            let (out, state, left) = decode_split(Body::Chunked(Chunk::Size), wire, cut);
            assert_eq!(out, b"hello, world", "split at {cut}");
            assert_eq!(state, Body::Done, "split at {cut}");
            assert_eq!(left, 0, "split at {cut}");
        }
    }

    #[test]
    fn sized_bodies_stop_at_their_length_and_leave_the_rest() {
        for cut in 0..=9 {
            let (out, state, left) = decode_split(Body::Length(5), b"hellomore", cut);
            assert_eq!(
                (out.as_slice(), state, left),
                (&b"hello"[..], Body::Done, 4),
                "split at {cut}"
            );
        }
    }

    #[test]
    fn bytes_after_the_last_chunk_are_left_over() {
        let (out, state, left) =
            decode_split(Body::Chunked(Chunk::Size), b"1\r\na\r\n0\r\n\r\nHTTP", 3);
        assert_eq!((out.as_slice(), state, left), (&b"a"[..], Body::Done, 4));
    }

    #[test]
    fn broken_chunk_framing_is_refused() {
        for bad in [
            &b"g\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloXY",
            b"1234567890abcdef0\r\n",
            b"5 x\r\n",
            b"\r\n",
        ] {
            let mut state = Body::Chunked(Chunk::Size);
            let r = state.decode(bad, &mut |_| {});
            let e = r.expect_err(&format!("{:?} accepted", String::from_utf8_lossy(bad)));
            assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader);
            assert_eq!(e.esource(), &pingora::ErrorSource::Upstream);
        }
        let mut state = Body::Chunked(Chunk::Size);
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(state.decode(&long[..1], &mut |_| {}).is_ok());
        assert!(
            state.decode(&long, &mut |_| {}).is_err(),
            "an endless size line is refused"
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |raw: &str| framing(&head(raw)).unwrap();
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            (Body::Chunked(Chunk::Size), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            (Body::Chunked(Chunk::Size), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            (Body::Chunked(Chunk::Size), false),
            "chunked wins over a length, and the connection is not reused"
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (Body::Close, false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            (Body::Length(12), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n"),
            (Body::Length(12), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            (Body::Done, true)
        );
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            (Body::Done, true)
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\n\r\n"), (Body::Close, false));
        for bad in [
            "Content-Length: 1, 2",
            "Content-Length: -1",
            "Content-Length: +1",
            "Content-Length: ",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n");
            assert!(framing(&head(&raw)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn keepalive_follows_the_version_and_connection_header() {
        assert!(keepalive(&head("HTTP/1.1 200 OK\r\n\r\n")));
        assert!(!keepalive(&head(
            "HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"
        )));
        assert!(!keepalive(&head("HTTP/1.0 200 OK\r\n\r\n")));
        assert!(keepalive(&head(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"
        )));
    }

    #[test]
    fn heads_parse_whole_or_not_at_all() {
        let raw = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Type: application/json\r\n\r\n{}";
        for end in 0..raw.len() - 2 {
            assert!(
                parse_head(&raw[..end]).unwrap().is_none(),
                "partial head at {end}"
            );
        }
        let (h, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 2);
        assert_eq!(h.status.as_u16(), 429);
        assert_eq!(h.headers["retry-after"], "3");
        let e = parse_head(b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n").unwrap_err();
        assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader);
    }
}
