//! Upstream peers: resolving addresses off the proxy's threads, building the
//! `HttpPeer` (timeouts, TLS verification, mTLS) once per snapshot, and
//! mapping a gateway path onto the upstream's URL.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession as ClientSession;
use pingora::upstreams::peer::{HttpPeer, ALPN};
use sluice_config::{Scheme, Snapshot, Upstream};

use crate::policy::egress::EgressCheck;

/// Resolve every upstream of `snapshot` and build its peer. Runs on the
/// background runtime (DNS is blocking in the OS resolver); an upstream that
/// does not resolve gets `None` and its requests a 502 until it does.
pub async fn build_peers(snapshot: &Snapshot) -> Vec<Option<HttpPeer>> {
    let mut peers = Vec::with_capacity(snapshot.upstreams.len());
    for up in &snapshot.upstreams {
        let peer = match resolve(up).await {
            Ok(addr) if !snapshot.egress.allows(&up.host, addr.ip()) => {
                tracing::error!(upstream = %up.name, host = %up.host, address = %addr.ip(), "egress refused: the resolved address is not on the allowlist");
                None
            }
            Ok(addr) => match build_peer(up, addr) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(upstream = %up.name, error = %e, "upstream TLS setup failed");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(upstream = %up.name, host = %up.host, error = %e, "upstream does not resolve");
                None
            }
        };
        peers.push(peer);
    }
    peers
}

async fn resolve(up: &Upstream) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = up.host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, up.port));
    }
    tokio::net::lookup_host((up.host.as_str(), up.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no addresses"))
}

/// The peer for `up` at `addr`, with its options set once.
pub fn build_peer(up: &Upstream, addr: SocketAddr) -> Result<HttpPeer, String> {
    let tls = up.scheme == Scheme::Https;
    let sni = up.tls.as_ref().map(|t| t.sni.clone()).unwrap_or_default();
    let mut peer = HttpPeer::new(addr, tls, sni);
    let o = &mut peer.options;
    o.connection_timeout = Some(up.connect_timeout);
    o.total_connection_timeout = Some(up.connect_timeout * 2);
    // Per read; `proxy` narrows it per request (POST: first byte; GET: idle).
    o.read_timeout = Some(up.first_byte_timeout);
    o.write_timeout = Some(up.write_timeout);
    o.idle_timeout = Some(up.pool_idle_timeout);
    if up.http2 {
        o.alpn = ALPN::H2H1;
        // Pingora's default of one stream per connection defeats h2.
        o.max_h2_streams = 100;
    }
    if let Some(t) = &up.tls {
        o.verify_cert = t.verify;
        o.verify_hostname = t.verify;
        if let Some(ca) = &t.ca_file {
            o.ca = Some(crate::tls::load_ca(ca)?);
        }
        if let Some((cert, key)) = &t.client_cert {
            peer.client_cert_key = Some(Arc::new(crate::tls::load_cert_key(cert, key)?));
        }
    }
    Ok(peer)
}

/// Give `req` the version `conn` speaks, not the one the client spoke (an
/// HTTP/2 client's request would otherwise go out as `HTTP/2` over HTTP/1).
pub fn speak_version(req: &mut RequestHeader, conn: &ClientSession) {
    req.set_version(match conn {
        ClientSession::H2(_) => http::Version::HTTP_2,
        _ => http::Version::HTTP_11,
    });
}

/// Give an upstream's answer head the version the client's connection
/// speaks: an HTTP/2 upstream's head cannot be written to an HTTP/1.1
/// client as it came (Pingora refuses to serialise it).
pub fn answer_version(resp: &mut pingora::http::ResponseHeader, session: &pingora::proxy::Session) {
    if !session.is_http2() {
        resp.set_version(http::Version::HTTP_11);
    }
}

/// The upstream path for a gateway request: the upstream URL's base path,
/// then what followed the route prefix, then the query.
pub fn upstream_path(up: &Upstream, rest: &str, query: Option<&str>) -> String {
    let mut p =
        String::with_capacity(up.base_path.len() + rest.len() + 1 + query.map_or(0, str::len));
    p.push_str(&up.base_path);
    p.push_str(rest);
    if p.is_empty() {
        p.push('/');
    }
    if let Some(q) = query {
        p.push('?');
        p.push_str(q);
    }
    p
}

/// Point the request at the upstream: its path and its own `Host`.
pub fn rewrite_request(req: &mut RequestHeader, up: &Upstream, path: &str) -> pingora::Result<()> {
    let uri: http::Uri = path.parse().map_err(|_| {
        pingora::Error::explain(pingora::ErrorType::InternalError, "bad upstream path")
    })?;
    req.set_uri(uri);
    req.insert_header(http::header::HOST, up.authority.as_str())?;
    Ok(())
}

/// What the client says about the hops before the gateway, which the
/// gateway does not vouch for: `Connection` (a client naming the injected
/// identity header there would have a hop-by-hop proxy behind the gateway
/// drop it — RFC 9110 lets a proxy remove the headers it lists, and the
/// gateway is the client's last hop) and the forwarding claims an upstream
/// might trust for addresses and schemes. `X-Forwarded-For` is written anew.
const CLIENT_HOP_HEADERS: [&str; 6] = [
    "connection",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
];

/// What a client's header is to the gateway, read once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHeader {
    /// One of the MCP headers the gateway reads (a bit per name).
    Mcp(u8),
    /// In `CLIENT_HOP_HEADERS`: removed from the upstream request.
    Hop,
    Other,
}

/// Classify a header name by its text (names are lowercase in `http`).
pub fn client_header_kind(name: &http::HeaderName) -> ClientHeader {
    match name.as_str() {
        "mcp-session-id" => ClientHeader::Mcp(1),
        "mcp-method" => ClientHeader::Mcp(2),
        "mcp-name" => ClientHeader::Mcp(4),
        "mcp-protocol-version" => ClientHeader::Mcp(8),
        n if CLIENT_HOP_HEADERS.contains(&n) => ClientHeader::Hop,
        _ => ClientHeader::Other,
    }
}

/// Remove the client's hop-by-hop and forwarding headers, and the headers
/// its `Connection` names.
pub fn strip_client_hop_headers(req: &mut RequestHeader) {
    if let Some(listed) = req.headers.get(http::header::CONNECTION).cloned() {
        for name in listed.to_str().unwrap_or("").split(',') {
            let name = name.trim();
            if !name.is_empty()
                && !name.eq_ignore_ascii_case("keep-alive")
                && !name.eq_ignore_ascii_case("close")
            {
                req.remove_header(name);
            }
        }
    }
    for h in CLIENT_HOP_HEADERS {
        if req.headers.contains_key(h) {
            req.remove_header(h);
        }
    }
}

/// The client address as an `X-Forwarded-For` value.
pub fn forwarded_for(ip: std::net::IpAddr) -> http::HeaderValue {
    http::HeaderValue::from_str(IpText::new(ip).as_str())
        .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
}

/// An IP address as text on the stack. IPv4 is written digit by digit: the
/// formatting machinery cost more than the rest of the header rewrite.
pub struct IpText {
    buf: [u8; 46],
    len: usize,
}

impl IpText {
    pub fn new(ip: std::net::IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 46],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (k, octet) in v4.octets().into_iter().enumerate() {
                    if k > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write;
                let mut w = &mut t.buf[..];
                // At most 45 characters: it always fits.
                let _ = write!(w, "{v6}");
                let left = w.len();
                t.len = t.buf.len() - left;
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn forwarded_for_matches_the_address_as_displayed() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.1.20",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::ffff:192.168.100.200",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(
                super::forwarded_for(ip).to_str().ok(),
                Some(ip.to_string().as_str())
            );
            assert_eq!(super::IpText::new(ip).as_str(), ip.to_string());
        }
    }
}
