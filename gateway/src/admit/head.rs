//! Checks on the request head, before anything else is read: the head's
//! size caps, MCP headers given twice, hop-by-hop headers, and framing
//! that two readers could take differently. Plus the small readers of
//! header values admission uses.

use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::refusal::Refusal;
use crate::upstream;

/// A request carrying both `Content-Length` and `Transfer-Encoding` is the
/// classic smuggling vector: refuse it outright. Pingora drops the
/// `Content-Length` of such a request before any filter runs, so look at the
/// raw header bytes, and only when `Transfer-Encoding` is there at all.
pub fn check_framing(session: &Session) -> Result<(), Refusal> {
    let h = &session.req_header().headers;
    if h.contains_key(http::header::TRANSFER_ENCODING) {
        let both = h.contains_key(http::header::CONTENT_LENGTH)
            || session
                .as_downstream()
                .as_http1()
                .is_some_and(|s| has_header_line(&s.get_headers_raw_bytes(), b"content-length"));
        if both {
            return Err(Refusal::Framing(
                "both Content-Length and Transfer-Encoding present",
            ));
        }
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let (Some(a), Some(b)) = (lengths.next(), lengths.next()) {
        if a != b {
            return Err(Refusal::Framing("conflicting Content-Length headers"));
        }
    }
    Ok(())
}

/// One pass over a request head: past the configured caps it is refused
/// before anything of it is forwarded (a long target with 414, the rest
/// with 431); an MCP header given twice is refused (the gateway reads the
/// first copy, an upstream might read another). `Ok(true)`: the client
/// sent hop-by-hop or forwarding headers the upstream request must lose.
pub fn check_head(
    req: &RequestHeader,
    limits: &sluice_config::HeadLimits,
) -> Result<bool, Refusal> {
    // "METHOD SP target SP HTTP/1.1"
    let line = req.method.as_str().len() + req.raw_path().len() + 10;
    if line > limits.request_line as usize {
        return Err(Refusal::HeadTooLarge("request line"));
    }
    if req.headers.len() > limits.headers as usize {
        return Err(Refusal::HeadTooLarge("header count"));
    }
    let mut head = line;
    let mut mcp_seen = 0u8;
    let mut hop = false;
    for (name, value) in &req.headers {
        // "name: value\r\n"
        let n = name.as_str().len() + value.len() + 4;
        if n > limits.header_line as usize {
            return Err(Refusal::HeadTooLarge("header line"));
        }
        head += n;
        match upstream::client_header_kind(name) {
            upstream::ClientHeader::Mcp(bit) => {
                if mcp_seen & bit != 0 {
                    return Err(Refusal::Framing("an MCP header is given more than once"));
                }
                mcp_seen |= bit;
            }
            upstream::ClientHeader::Hop => hop = true,
            upstream::ClientHeader::Other => {}
        }
    }
    if head > limits.head as usize {
        return Err(Refusal::HeadTooLarge("request head"));
    }
    Ok(hop)
}

/// Does the raw header block have a line starting with `name:` (any case)?
fn has_header_line(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').any(|line| {
        let line = line.trim_ascii_start();
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().first() == Some(&b':')
    })
}

/// The request's host: the target's authority, else `Host`.
pub fn host(req: &RequestHeader) -> &str {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| header_str(req, http::header::HOST))
        .unwrap_or("")
}

pub fn header_str(req: &RequestHeader, name: impl http::header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn header_bytes<'a>(req: &'a RequestHeader, name: &http::HeaderName) -> Option<&'a [u8]> {
    req.headers.get(name).map(|v| v.as_bytes())
}

/// Which configured listener accepted the connection.
pub fn listener_name<'a>(
    snap: &'a sluice_config::Snapshot,
    local: Option<&pingora::protocols::l4::socket::SocketAddr>,
) -> &'a str {
    let local = local.and_then(|a| a.as_inet());
    snap.listeners
        .iter()
        .find(|l| {
            local.is_some_and(|a| {
                a.port() == l.address.port()
                    && (l.address.ip().is_unspecified() || l.address.ip() == a.ip())
            })
        })
        .or(snap.listeners.first())
        .map_or("", |l| l.name.as_str())
}
