//! DNS-rebinding protection: a request's `Host` (or `:authority`) and
//! `Origin` against the route's compiled lists.

use sluice_config::HostPolicy;

/// Host and Origin checks on a route's `HostPolicy`.
pub trait HostCheck {
    /// Is a request with this `Host` (or `:authority`) and optional `Origin` allowed?
    fn allows(&self, host: &str, origin: Option<&str>) -> bool;
}

impl HostCheck for HostPolicy {
    fn allows(&self, host: &str, origin: Option<&str>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
listeners: [{ name: main, address: "127.0.0.1:8080" }]
upstreams: [{ name: u, url: "http://127.0.0.1:3101/mcp" }]
routes:
  - { name: mcp, path: /mcp, upstream: u }
  - { name: sec, path: /secure/, upstream: u, hosts: { allowed_hosts: ["*"] } }
"#;

    #[test]
    fn host_policy_defaults_to_loopback_and_same_host_origins() {
        let s = sluice_config::load(CONFIG, 1).expect("valid");
        let mcp = &s.routes[s.route_for("main", "/mcp").expect("route").0];
        assert!(mcp.hosts.allows("127.0.0.1:8080", None));
        assert!(mcp.hosts.allows("localhost", Some("http://localhost:3000")));
        assert!(!mcp.hosts.allows("evil.example", None));
        assert!(!mcp
            .hosts
            .allows("localhost:8080", Some("https://evil.example")));
        assert!(!mcp.hosts.allows("localhost:8080", Some("null")));
        let sec = &s.routes[s.route_for("main", "/secure").expect("route").0];
        assert!(!sec
            .hosts
            .allows("anything.example", Some("https://evil.example")));
        assert!(sec
            .hosts
            .allows("anything.example", Some("https://anything.example")));
        assert!(sec.hosts.allows("anything.example", None));
    }
}
