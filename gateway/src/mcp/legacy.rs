//! The 2024-11-05 HTTP+SSE transport: the upstream's `endpoint` event names
//! the URL clients post to. Rewritten so clients post back through the
//! gateway, on the route that opened the stream.

use bytes::{Bytes, BytesMut};

/// The first event of a legacy stream can only be forwarded once it is whole.
const MAX_HELD: usize = 64 * 1024;

#[derive(Debug)]
pub struct EndpointRewriter {
    /// The route's path prefix on the gateway (`/legacy`).
    route_prefix: String,
    /// The upstream URL's base path (`` or `/v1`).
    upstream_base: String,
    held: BytesMut,
    done: bool,
    /// The session id the endpoint event named, until the caller binds it.
    session: Option<String>,
}

impl EndpointRewriter {
    pub fn new(route_prefix: &str, upstream_base: &str) -> Self {
        Self {
            route_prefix: route_prefix.trim_end_matches('/').to_owned(),
            upstream_base: upstream_base.trim_end_matches('/').to_owned(),
            held: BytesMut::new(),
            done: false,
            session: None,
        }
    }

    /// Pass a body chunk; returns what to send the client now.
    pub fn process(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if self.done {
            return chunk;
        }
        if let Some(c) = chunk {
            self.held.extend_from_slice(&c);
        }
        let mut out = BytesMut::new();
        // Forward whole events until the endpoint event has been rewritten.
        while let Some(len) = event_len(&self.held) {
            let event = self.held.split_to(len);
            match self.rewrite(&event) {
                Some(rewritten) => {
                    self.session = rewritten
                        .split_once("data: ")
                        .and_then(|(_, url)| session_param(url.trim_end()).ok().flatten());
                    out.extend_from_slice(rewritten.as_bytes());
                    self.done = true;
                    break;
                }
                None => out.extend_from_slice(&event),
            }
        }
        if self.done || end || self.held.len() > MAX_HELD {
            if !self.done && !end {
                tracing::warn!("legacy SSE stream sent no endpoint event in its first 64 KiB");
            }
            self.done = true;
            out.extend_from_slice(&self.held.split());
        }
        (!out.is_empty() || end).then(|| out.freeze())
    }

    /// The rewritten text of `event` if it is the endpoint event.
    fn rewrite(&self, event: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(event).ok()?;
        let mut is_endpoint = false;
        let mut data = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(v) = line.strip_prefix("event:") {
                is_endpoint = v.trim() == "endpoint";
            } else if let Some(v) = line.strip_prefix("data:") {
                data = Some(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        if !is_endpoint {
            return None;
        }
        let data = data?;
        let target = self.map_url(data);
        Some(format!("event: endpoint\ndata: {target}\n\n"))
    }

    /// The session id the endpoint event named, once: the stream's caller
    /// becomes its owner.
    pub fn take_session(&mut self) -> Option<String> {
        self.session.take()
    }

    /// Map the upstream's post URL to the gateway's path for it.
    fn map_url(&self, url: &str) -> String {
        // An absolute URL keeps only its path and query.
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => url,
        };
        let path = path
            .strip_prefix(self.upstream_base.as_str())
            .filter(|p| p.starts_with('/') || p.starts_with('?'))
            .unwrap_or(path);
        if path.starts_with('/') {
            format!("{}{}", self.route_prefix, path)
        } else {
            format!("{}/{}", self.route_prefix, path)
        }
    }
}

/// A legacy message URL that names its session twice: an upstream could
/// read either copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTwice;

/// The session a legacy message URL names: the value of its one
/// `sessionId` / `session_id` parameter (any case), as the upstream decodes
/// it.
pub fn session_param(url: &str) -> Result<Option<String>, SessionTwice> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or(query);
    let mut found = None;
    let names_session = |n: &str| {
        sluice_config::fold::fold_eq(n, "sessionId")
            || sluice_config::fold::fold_eq(n, "session_id")
    };
    for (name, value) in form_pairs(query) {
        if names_session(&name) && found.replace(value).is_some() {
            return Err(SessionTwice);
        }
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space).
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(n), decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Length of the first complete event in `buf` (through its blank line).
pub(crate) fn event_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        let nl = memchr::memchr2(b'\n', b'\r', &buf[i..])? + i;
        let mut next = nl + 1;
        if buf[nl] == b'\r' {
            match buf.get(nl + 1) {
                Some(b'\n') => next += 1,
                None => return None,
                _ => {}
            }
        }
        // A line end followed directly by another line end is the blank line.
        match buf.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') => {
                return match buf.get(next + 1) {
                    Some(b'\n') => Some(next + 2),
                    Some(_) => Some(next + 1),
                    None => None,
                }
            }
            _ => {}
        }
        i = next;
    }
    None
}
