//! Checks every section's building shares: names, addresses, tenants, secret
//! references, and the names limit selectors may refer to.

use std::net::SocketAddr;

use crate::error::ConfigError;
use crate::model::SecretRef;
use crate::raw::RawSecretRef;

/// Names the selectors may refer to, for validation.
pub(crate) struct Known<'a> {
    pub routes: &'a [String],
    pub tenants: &'a [String],
    pub roles: &'a [String],
}

pub(crate) fn parse_addr(s: &str, path: &str, errs: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(ConfigError::new(
                path,
                format!("`{s}` is not an IP:port address"),
            ));
            None
        }
    }
}

pub(crate) fn check_name(
    name: &str,
    path: &str,
    seen: &mut Vec<String>,
    errs: &mut Vec<ConfigError>,
) {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        errs.push(ConfigError::new(
            path,
            format!("`{name}` must be 1-64 characters of [A-Za-z0-9_.-]"),
        ));
    } else if seen.iter().any(|s| s == name) {
        errs.push(ConfigError::new(path, format!("duplicate name `{name}`")));
    }
    seen.push(name.to_owned());
}

pub(crate) fn check_tenants(
    names: &[String],
    known: &[String],
    path: &str,
    errs: &mut Vec<ConfigError>,
) {
    for t in names {
        if !known.contains(t) {
            errs.push(ConfigError::new(path, format!("unknown tenant `{t}`")));
        }
    }
}

/// A secret reference: exactly one of `env` and `file`.
pub(crate) fn secret_ref(r: &RawSecretRef, path: &str, errs: &mut Vec<ConfigError>) -> SecretRef {
    match (&r.env, &r.file) {
        (Some(v), None) if !v.is_empty() => SecretRef::Env(v.clone()),
        (None, Some(f)) if !f.is_empty() => SecretRef::File(f.clone()),
        _ => {
            errs.push(ConfigError::new(
                path,
                "give exactly one of env: NAME or file: PATH",
            ));
            SecretRef::Env(String::new())
        }
    }
}
