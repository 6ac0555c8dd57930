//! Builds the `listeners` and `admin` sections.

use std::net::SocketAddr;

use super::check::{check_name, parse_addr};
use crate::error::ConfigError;
use crate::model::{Listener, ListenerTls};
use crate::raw::{RawAdmin, RawListener};

pub(crate) fn build_listeners(raw: &[RawListener], errs: &mut Vec<ConfigError>) -> Vec<Listener> {
    if raw.is_empty() {
        errs.push(ConfigError::new(
            "listeners",
            "at least one listener is required",
        ));
    }
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let path = format!("listeners[{i}]");
        check_name(&l.name, &format!("{path}.name"), &mut seen, errs);
        let Some(address) = parse_addr(&l.address, &format!("{path}.address"), errs) else {
            continue;
        };
        out.push(Listener {
            name: l.name.clone(),
            address,
            tls: l.tls.as_ref().map(|t| ListenerTls {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                client_ca_file: t.client_ca_file.clone(),
            }),
            http2: l.http2.unwrap_or(true),
        });
    }
    out
}

pub(crate) fn build_admin(
    raw: Option<&RawAdmin>,
    errs: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    raw.and_then(|a| parse_addr(&a.address, "admin.address", errs))
}
