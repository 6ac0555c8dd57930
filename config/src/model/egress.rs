//! The egress allowlist: names, IPs and networks the gateway may connect to.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    Net(IpAddr, u8),
    /// A host name, `*.` prefix allowed.
    Name(String),
}

/// The egress allowlist; empty allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress(pub Vec<EgressRule>);
