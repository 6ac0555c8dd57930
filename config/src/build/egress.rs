//! Builds the `egress_allow` list: each entry a name (`*.` prefix allowed),
//! an IP or a CIDR.

use std::net::IpAddr;

use crate::error::ConfigError;
use crate::model::{Egress, EgressRule};

pub(crate) fn build_egress(raw: &[String], errs: &mut Vec<ConfigError>) -> Egress {
    Egress(
        raw.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let r = parse_rule(s);
                if r.is_none() {
                    errs.push(ConfigError::new(
                        format!("egress_allow[{i}]"),
                        format!("`{s}` is not a name, IP or CIDR"),
                    ));
                }
                r
            })
            .collect(),
    )
}

fn parse_rule(s: &str) -> Option<EgressRule> {
    if let Some((ip, bits)) = s.split_once('/') {
        let ip: IpAddr = ip.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(EgressRule::Net(ip, bits));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Some(EgressRule::Net(ip, bits));
    }
    let valid = !s.is_empty()
        && s.trim_start_matches("*.")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| EgressRule::Name(s.to_ascii_lowercase()))
}
