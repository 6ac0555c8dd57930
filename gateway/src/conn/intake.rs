//! Each HTTP/1.1 request's head, and the start of its body, read off a
//! client connection (cleartext, or TLS after Pingora's handshake) by the
//! gateway before Pingora parses them, then put back on the stream for
//! Pingora to read as usual (`L4Stream::rewind`, or `replay::Replayed`). Pingora times a
//! head out only per read (restarted by every byte) and, once a head is in,
//! holds its whole per-request session (~120 KB with its 64 KiB body
//! buffer) while a body trickles. Here a head has one deadline however
//! slowly it comes and a size cap, a keep-alive connection waits for its
//! next request without a session, and up to `PREFETCH` bytes of a body
//! wait in a buffer that grows with what arrived — counted against the
//! process's ceiling on held bodies. Nothing here decides what a request
//! means: framing is read only to know how much to wait for, and Pingora
//! parses the same bytes afterwards.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::BytesMut;
use memchr::memmem::Finder;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::conns::{Closed, Ticket, Trip};
use super::replay::Replayed;
use crate::bodies::BodyHold;
use crate::metrics::Metrics;

/// How long a kept-alive connection may wait for its next request.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);

/// Body bytes read ahead of Pingora. A body that has sent this much holds
/// memory in proportion to what it sent whatever Pingora buffers next.
pub const PREFETCH: usize = 64 * 1024;

/// HTTP/2's connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits in force for a connection, read from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct IntakeLimits {
    pub head_timeout: Duration,
    pub max_head_bytes: usize,
    /// The longest wait for each read of a body.
    pub body_read_timeout: Duration,
    /// `limits.max_body_bytes_held`.
    pub max_bodies_held: u64,
}

/// Which request on the connection is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The connection's first: its head deadline runs from the accept.
    First,
    /// A later one on a kept-alive connection: it may idle first.
    Next,
}

/// A request read, and who serves it.
pub enum Read {
    /// An HTTP/1.1 request whose head (and body start) wait on the stream.
    H1(Stream),
    /// A stream this reader leaves to Pingora as it is: HTTP/2 (over TLS
    /// by ALPN, or cleartext with its preface and first frame read).
    Other(Stream),
}

/// Read the next request of `stream` under the deadlines and caps, and put
/// it back for Pingora. While it waits the connection can be shed for a
/// newer one (`ticket`).
pub async fn next_request(
    stream: Stream,
    turn: Turn,
    ticket: &Ticket,
    limits: &IntakeLimits,
    metrics: &Metrics,
) -> Result<Read, Closed> {
    if stream.selected_alpn_proto() == Some(ALPN::H2) {
        // HTTP/2 over TLS: Pingora's connection loop, whole.
        ticket.waiting(false);
        return Ok(Read::Other(stream));
    }
    ticket.waiting(true);
    let mut hold = BodyHold::default();
    let outcome = if stream.as_any().is::<L4Stream>() {
        // Cleartext: the stream takes the bytes back itself.
        let Ok(mut l4) = stream.into_any().downcast::<L4Stream>() else {
            return Err(Closed::Gone);
        };
        // As Pingora's first head buffer: the usual request comes in one read.
        let mut buf = BytesMut::with_capacity(4096);
        match read(&mut *l4, &mut buf, &mut hold, turn, ticket, limits).await {
            Ok(h2) => {
                l4.rewind(&buf);
                Ok((h2, l4 as Stream))
            }
            Err(why) => Err(refuse(&mut *l4, &buf, why, turn, metrics).await),
        }
    } else {
        // TLS: what is read goes in front of the stream (`Replayed`),
        // after what Pingora left unread of the last request, if anything.
        let (mut buf, mut inner) = if stream.as_any().is::<Replayed>() {
            match stream.into_any().downcast::<Replayed>() {
                Ok(r) => r.into_parts(),
                Err(_) => return Err(Closed::Gone),
            }
        } else {
            (BytesMut::new(), stream)
        };
        buf.reserve(4096);
        match read(&mut inner, &mut buf, &mut hold, turn, ticket, limits).await {
            Ok(h2) => Ok((h2, Box::new(Replayed::new(buf, inner)) as Stream)),
            Err(why) => Err(refuse(&mut inner, &buf, why, turn, metrics).await),
        }
    };
    ticket.waiting(false);
    // The bytes read are the stream's now: Pingora reads them into its own
    // buffers (and the body into the gateway's, counted there).
    drop(hold);
    let (h2, stream) = outcome?;
    Ok(if h2 {
        Read::Other(stream)
    } else {
        Read::H1(stream)
    })
}

/// Answer a request the intake gave up on (where an answer is due), count
/// and log it; `why` back.
async fn refuse<S: AsyncWrite + Unpin + ?Sized>(
    client: &mut S,
    buf: &[u8],
    why: Closed,
    turn: Turn,
    metrics: &Metrics,
) -> Closed {
    let full;
    let answer: &[u8] = match why {
        Closed::HeadTooLarge => {
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        Closed::HeadTimeout | Closed::BodyTimeout => {
            b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        }
        Closed::BodiesFull => {
            // The request's id is in a body not yet read: `null`.
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":-32603,"message":"{}"}}}}"#,
                crate::bodies::BodiesFull
            );
            full = format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            full.as_bytes()
        }
        _ => b"",
    };
    // A cleartext HTTP/2 client would not read an HTTP/1.1 answer.
    let h2_client =
        turn == Turn::First && buf.starts_with(&H2_PREFACE[..buf.len().min(H2_PREFACE.len())]);
    if !answer.is_empty() && !h2_client {
        let written = async {
            client.write_all(answer).await?;
            client.flush().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), written).await;
    }
    if why == Closed::Gone && turn == Turn::Next && buf.is_empty() {
        // A kept-alive client closing between requests: ordinary.
        return why;
    }
    metrics
        .connections_closed
        .with_label_values(&[why.as_label()])
        .inc();
    if why == Closed::Idle {
        tracing::debug!("kept-alive client connection idle; closed");
    } else {
        tracing::info!(
            reason = why.as_label(),
            "client connection closed before its request was whole"
        );
    }
    why
}

/// Fill `buf` with a head and the start of its body; `Ok(true)` for an
/// HTTP/2 preface and first frame instead.
async fn read<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    l4: &mut S,
    buf: &mut BytesMut,
    hold: &mut BodyHold,
    turn: Turn,
    ticket: &Ticket,
    limits: &IntakeLimits,
) -> Result<bool, Closed> {
    // A new connection's head deadline runs from the accept; a kept-alive
    // one's from its first byte, and is only set if one read is not enough.
    let mut head_deadline_set = turn == Turn::First;
    if turn == Turn::First {
        ticket.deadline_in(limits.head_timeout);
    } else if buf.is_empty() {
        ticket.deadline_in(KEEPALIVE_IDLE);
        fill(l4, buf, ticket, Closed::Idle).await?;
    }
    let head_len = loop {
        if let Some(done) = head_complete(buf, turn == Turn::First) {
            match done {
                Head::H2 => return Ok(true),
                Head::H1(n) => break n,
            }
        }
        if buf.len() > limits.max_head_bytes {
            return Err(Closed::HeadTooLarge);
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().clamp(1024, limits.max_head_bytes));
        }
        if !head_deadline_set {
            head_deadline_set = true;
            ticket.deadline_in(limits.head_timeout);
        }
        fill(l4, buf, ticket, Closed::HeadTimeout).await?;
    };
    let Some(framing) = framing(&buf[..head_len]) else {
        return Ok(false);
    };
    if framing.expect_continue && buf.len() == head_len {
        // The client waits for a go-ahead before its body.
        // (The stream buffers writes: flushed, or the client waits on.)
        let go_ahead = async {
            l4.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            l4.flush().await
        };
        go_ahead.await.map_err(|_| Closed::Gone)?;
    }
    let mut chunks = ChunkScan::default();
    hold.grow(buf.capacity() as u64, limits.max_bodies_held)
        .map_err(|_| Closed::BodiesFull)?;
    loop {
        let body = &buf[head_len..];
        let whole = match framing.body {
            Body::Length(n) => body.len() as u64 >= n,
            Body::Chunked => chunks.ends_within(body),
        };
        if whole || body.len() >= PREFETCH {
            return Ok(false);
        }
        let before = buf.capacity();
        if before - buf.len() < 512 {
            buf.reserve(before.min(head_len + PREFETCH));
        }
        hold.grow(
            buf.capacity().saturating_sub(before) as u64,
            limits.max_bodies_held,
        )
        .map_err(|_| Closed::BodiesFull)?;
        ticket.deadline_in(limits.body_read_timeout);
        fill(l4, buf, ticket, Closed::BodyTimeout).await?;
    }
}

/// One read into `buf`, unless the wait's deadline passes first (`late`),
/// the connection is shed, or it ends.
async fn fill<S: AsyncRead + Unpin + ?Sized>(
    l4: &mut S,
    buf: &mut BytesMut,
    ticket: &Ticket,
    late: Closed,
) -> Result<(), Closed> {
    tokio::select! {
        biased;
        r = l4.read_buf(buf) => match r {
            Ok(0) | Err(_) => Err(Closed::Gone),
            Ok(_) => Ok(()),
        },
        trip = ticket.tripped() => Err(match trip {
            Trip::Shed => Closed::Shed,
            Trip::Deadline => late,
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// An HTTP/1 head, this many bytes long.
    H1(usize),
    /// The HTTP/2 preface and a whole first frame (the client's SETTINGS).
    H2,
}

/// `Some` once `buf` holds a whole head; an HTTP/2 preface counts only as
/// a connection's first bytes (`h2`).
fn head_complete(buf: &[u8], h2: bool) -> Option<Head> {
    let n = buf.len().min(H2_PREFACE.len());
    if h2 && n > 0 && buf[..n] == H2_PREFACE[..n] {
        let frame = buf.get(H2_PREFACE.len()..)?;
        let header = frame.get(..9)?;
        let len =
            (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
        return (frame.len() >= 9 + len).then_some(Head::H2);
    }
    // The first blank line: CRLF, or failing that a bare LF. (Were a head
    // to mix the two, the later end is taken; the gateway only waits for
    // more than Pingora would, and Pingora parses it.)
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    match CRLF.find(buf) {
        Some(i) => Some(Head::H1(i + 3)),
        None => LF.find(buf).map(|i| Head::H1(i + 2)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    body: Body,
    expect_continue: bool,
}

/// How the body after `head` is framed, when there is one to wait for:
/// exactly one `Content-Length` above zero, or `Transfer-Encoding: chunked`
/// alone. Anything else (no body, a head Pingora will refuse, ambiguous
/// framing the gateway refuses) is handed over at once. Only the three
/// header names are looked for: Pingora parses the head in full after.
fn framing(head: &[u8]) -> Option<Framing> {
    let mut length = None;
    let mut lengths = 0;
    let mut chunked = false;
    let mut encodings = 0;
    let mut expect_continue = false;
    let first = memchr::memchr(b'\n', head)? + 1;
    let mut start = first;
    for end in memchr::memchr_iter(b'\n', &head[first..]).map(|i| first + i) {
        let raw = &head[start..end];
        start = end + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        match line[0] {
            // A folded line: Pingora refuses the head.
            b' ' | b'\t' => return None,
            // Only these names are read.
            b'c' | b'C' | b't' | b'T' | b'e' | b'E' => {}
            _ => continue,
        }
        let colon = memchr::memchr(b':', line)?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            length = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encodings += 1;
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body = match (lengths, encodings) {
        (1, 0) => Body::Length(length.filter(|n| *n > 0)?),
        (0, 1) if chunked => Body::Chunked,
        _ => return None,
    };
    Some(Framing {
        body,
        expect_continue,
    })
}

/// Where a chunked body is read up to, so that each read scans only what
/// is new.
#[derive(Debug, Default)]
struct ChunkScan {
    /// Offset of the next chunk's size line.
    at: usize,
    /// In the trailers after the last chunk.
    trailers: bool,
}

impl ChunkScan {
    /// Whether `body` holds the whole chunked body. A malformed one counts
    /// as whole: Pingora reads it and refuses it.
    fn ends_within(&mut self, body: &[u8]) -> bool {
        loop {
            let Some(rest) = body.get(self.at..) else {
                return false;
            };
            let Some(eol) = memchr::memchr(b'\n', rest) else {
                return false;
            };
            let line = rest[..eol].strip_suffix(b"\r").unwrap_or(&rest[..eol]);
            if self.trailers {
                self.at += eol + 1;
                if line.is_empty() {
                    return true;
                }
                continue;
            }
            let digits = line
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            let size = std::str::from_utf8(&line[..digits])
                .ok()
                .and_then(|d| usize::from_str_radix(d, 16).ok());
            let Some(size) = size.filter(|_| digits > 0) else {
                return true;
            };
            if size == 0 {
                self.trailers = true;
                self.at += eol + 1;
                continue;
            }
            // The data and its CRLF; past the prefetch the caller stops anyway.
            let next = self.at + eol + 1 + size.min(PREFETCH + 2) + 2;
            if body.len() < next {
                return false;
            }
            self.at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_whole_at_their_blank_line_or_first_frame() {
        assert_eq!(head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", true), None);
        assert_eq!(
            head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", true),
            Some(Head::H1(27))
        );
        assert_eq!(
            head_complete(b"GET / HTTP/1.1\nHost: a\n\nbody", true),
            Some(Head::H1(24))
        );
        assert_eq!(
            head_complete(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true),
            None
        );
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0]);
        assert_eq!(head_complete(&h2, true), None);
        h2.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        assert_eq!(head_complete(&h2, true), Some(Head::H2));
        // Later on a kept-alive connection it is an HTTP/1 head (refused).
        assert_eq!(head_complete(&h2, false), Some(Head::H1(18)));
    }

    #[test]
    fn only_unambiguous_framing_is_waited_for() {
        let f = |head: &str| framing(head.as_bytes()).map(|f| f.body);
        assert_eq!(
            f("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Some(Body::Length(12))
        );
        assert_eq!(
            f("POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n"),
            Some(Body::Chunked)
        );
        for head in [
            "GET / HTTP/1.1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "not a request\r\n\r\n",
            "POST / HTTP/1.1\r\nX: 1\r\n  folded\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
        ] {
            assert_eq!(f(head), None, "{head}");
        }
        let expect =
            framing(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(expect.is_some_and(|f| f.expect_continue));
    }

    #[test]
    fn a_chunked_body_ends_at_its_last_chunk_and_trailers_however_it_arrives() {
        let body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..body.len() {
            let mut scan = ChunkScan::default();
            // Fed as it would arrive: a prefix, then the whole.
            assert!(!scan.ends_within(&body[..cut]), "ended early at {cut}");
            assert!(scan.ends_within(body), "not ended after a cut at {cut}");
        }
        let mut scan = ChunkScan::default();
        assert!(scan.ends_within(b"0\r\n\r\n"));
        // Broken framing is Pingora's to refuse: no waiting for it.
        let mut scan = ChunkScan::default();
        assert!(scan.ends_within(b"zz\r\n"));
    }
}
