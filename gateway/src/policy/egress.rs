//! The egress check: may the gateway connect to an upstream's resolved
//! address, by the snapshot's allowlist?

use std::net::IpAddr;

use sluice_config::{Egress, EgressRule};

/// The egress allowlist applied to one connection.
pub trait EgressCheck {
    /// May the gateway connect to `ip`, which `host` resolved to?
    fn allows(&self, host: &str, ip: IpAddr) -> bool;
}

impl EgressCheck for Egress {
    fn allows(&self, host: &str, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        if self.0.iter().any(|r| covers_ip(r, ip)) {
            return true;
        }
        self.0.iter().any(|r| covers_name(r, host)) && !sensitive(ip)
    }
}

/// Does this rule cover the resolved address?
fn covers_ip(rule: &EgressRule, ip: IpAddr) -> bool {
    match (rule.clone(), ip) {
        (EgressRule::Net(IpAddr::V4(n), bits), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (EgressRule::Net(IpAddr::V6(n), bits), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Does this rule cover the host name asked for?
fn covers_name(rule: &EgressRule, host: &str) -> bool {
    match rule {
        EgressRule::Name(n) => match n.strip_prefix("*.") {
            Some(suffix) => host
                .to_ascii_lowercase()
                .strip_suffix(suffix)
                .is_some_and(|p| p.ends_with('.')),
            None => n.eq_ignore_ascii_case(host),
        },
        EgressRule::Net(..) => false,
    }
}

/// Addresses a name must never reach unless an IP rule allows them:
/// loopback, link-local (cloud metadata lives there), unspecified.
fn sensitive(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback() || v.is_link_local() || v.is_unspecified(),
        IpAddr::V6(v) => {
            v.is_loopback() || v.is_unspecified() || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_checks_the_resolved_address() {
        let e = Egress(vec![
            EgressRule::Name("*.internal.example".into()),
            EgressRule::Net("10.0.0.0".parse().expect("ip"), 8),
        ]);
        assert!(e.allows("mcp.internal.example", "192.168.1.5".parse().expect("ip")));
        assert!(!e.allows(
            "mcp.internal.example",
            "169.254.169.254".parse().expect("ip")
        ));
        assert!(!e.allows("mcp.internal.example", "127.0.0.1".parse().expect("ip")));
        assert!(e.allows("anything", "10.2.3.4".parse().expect("ip")));
        assert!(!e.allows("evil.example", "8.8.8.8".parse().expect("ip")));
        assert!(!e.allows("internal.example", "192.168.1.5".parse().expect("ip")));
        let lo = Egress(vec![EgressRule::Net("127.0.0.1".parse().expect("ip"), 32)]);
        assert!(lo.allows("localhost", "127.0.0.1".parse().expect("ip")));
        assert!(Egress::default().allows("x", "127.0.0.1".parse().expect("ip")));
    }
}
