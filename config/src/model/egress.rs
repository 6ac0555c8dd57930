//! The egress allowlist: names, IPs and networks the gateway may connect to.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    Net(IpAddr, u8),
    /// A host name, `*.` prefix allowed.
    Name(String),
}

impl EgressRule {
    /// Does this rule cover the resolved address?
    pub fn covers_ip(&self, ip: IpAddr) -> bool {
        match (self.clone(), ip) {
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
    pub fn covers_name(&self, host: &str) -> bool {
        match self {
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

/// The egress allowlist; empty allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress(pub Vec<EgressRule>);

impl Egress {
    /// May the gateway connect to `ip`, which `host` resolved to?
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        if self.0.iter().any(|r| r.covers_ip(ip)) {
            return true;
        }
        self.0.iter().any(|r| r.covers_name(host)) && !sensitive(ip)
    }
}
