//! The resolved routes: path prefix, upstream, transport, authentication,
//! and the Host/Origin lists that protect against DNS rebinding.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTransport {
    StreamableHttp,
    LegacySse,
    /// OpenAI-compatible model API (and Anthropic's `/messages`).
    Llm,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// Index into `Snapshot::upstreams`.
    pub upstream: usize,
    pub transport: RouteTransport,
    pub hosts: HostPolicy,
    /// Listener names that serve this route; `None` means all.
    pub listeners: Option<Vec<String>>,
    /// Callers must authenticate (the default when identity is configured).
    pub auth_required: bool,
    /// Forward client requests of methods the gateway does not classify.
    pub forward_unclassified: bool,
}

/// DNS-rebinding protection for one route, compiled to lowercase names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// `None` accepts any Host.
    pub hosts: Option<Vec<String>>,
    /// `None` accepts any Origin; `Some(empty)` accepts origins whose host is
    /// the request's own host or an allowed host.
    pub origins: Option<Vec<String>>,
}

impl HostPolicy {
    /// Is a request with this `Host` (or `:authority`) and optional `Origin` allowed?
    pub fn allows(&self, host: &str, origin: Option<&str>) -> bool {
        let host_ok = match &self.hosts {
            None => true,
            Some(list) => list_has(list, strip_port(host)),
        };
        if !host_ok {
            return false;
        }
        let Some(origin) = origin else { return true };
        match &self.origins {
            None => true,
            // Default: a browser origin must name this very host, or one of
            // the allowed hosts.
            Some(list) if list.is_empty() => match origin_host(origin) {
                Some(h) => {
                    h.eq_ignore_ascii_case(strip_port(host))
                        || self.hosts.as_ref().is_some_and(|l| list_has(l, h))
                }
                None => false,
            },
            Some(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/'))),
        }
    }
}

fn list_has(list: &[String], name: &str) -> bool {
    list.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `https://app.example.com:443` → `app.example.com`; `null` → None.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = strip_port(authority);
    (!host.is_empty()).then_some(host)
}
