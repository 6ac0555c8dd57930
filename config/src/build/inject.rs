//! Builds an upstream's `inject` part: its own credential, per-tenant and
//! per-user credentials, and the identity assertion header.

use super::check::secret_ref;
use crate::error::ConfigError;
use crate::model::{Credential, UserCredentials};
use crate::raw::RawInjection;

/// The assertion's reuse window and header name.
pub(crate) fn check_assertion(raw: &RawInjection, path: &str, errs: &mut Vec<ConfigError>) {
    if raw.assertion_reuse_s.is_some_and(|s| s > 30) {
        errs.push(ConfigError::new(
            format!("{path}.inject.assertion_reuse_s"),
            "at most 30: a reused assertion must keep half of its 60 s life",
        ));
    }
    if let Some(h) = &raw.assertion_header {
        if is_bad_header_name(h) {
            errs.push(ConfigError::new(
                format!("{path}.inject.assertion_header"),
                "not a valid header name",
            ));
        }
    }
}

/// Header names are RFC 9110 tokens.
fn is_bad_header_name(h: &str) -> bool {
    h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(crate) fn build_credential(
    raw: &RawInjection,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<Credential> {
    raw.credential.as_ref().map(|c| Credential {
        header: header_or_default(c.header.as_ref()),
        prefix: prefix_or_default(c.prefix.as_ref()),
        secret: secret_ref(&c.secret, &format!("{path}.inject.credential.secret"), errs),
    })
}

/// Credentials per tenant, in the same shape as `credential`.
pub(crate) fn build_tenant_credentials(
    raw: &RawInjection,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<(String, Credential)> {
    let mut out = Vec::with_capacity(raw.tenant_credentials.len());
    for (i, c) in raw.tenant_credentials.iter().enumerate() {
        let at = format!("{path}.inject.tenant_credentials[{i}].secret");
        let credential = Credential {
            header: header_or_default(c.header.as_ref()),
            prefix: prefix_or_default(c.prefix.as_ref()),
            secret: secret_ref(&c.secret, &at, errs),
        };
        out.push((c.tenant.clone(), credential));
    }
    out
}

pub(crate) fn build_user_credentials(raw: &RawInjection) -> Option<UserCredentials> {
    raw.user_credentials.as_ref().map(|u| UserCredentials {
        dir: u.dir.clone(),
        header: header_or_default(u.header.as_ref()),
        prefix: prefix_or_default(u.prefix.as_ref()),
    })
}

/// The header a credential goes in, lowercase; `authorization` by default.
fn header_or_default(header: Option<&String>) -> String {
    header
        .map_or("authorization", |h| h.as_str())
        .to_ascii_lowercase()
}

/// What goes before the secret; `Bearer ` by default.
fn prefix_or_default(prefix: Option<&String>) -> String {
    prefix.map_or("Bearer ", |p| p.as_str()).to_owned()
}
