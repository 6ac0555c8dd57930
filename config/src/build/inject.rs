//! Builds an upstream's `inject` part: its own credential, per-tenant and
//! per-user credentials, and the identity assertion header.

use super::check::secret_ref;
use crate::error::ConfigError;
use crate::model::{ClientAuth, Credential, ExchangeGrant, TokenExchange, UserCredentials};
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

/// The token exchange toward an upstream: the endpoint an `http(s)` URL,
/// the grant and client authentication known, and no other outbound
/// credential beside it.
pub(crate) fn build_token_exchange(
    raw: &RawInjection,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<TokenExchange> {
    let t = raw.token_exchange.as_ref()?;
    let at = format!("{path}.inject.token_exchange");
    if raw.credential.is_some()
        || !raw.tenant_credentials.is_empty()
        || raw.user_credentials.is_some()
    {
        errs.push(ConfigError::new(
            at.clone(),
            "one outbound credential per request: token_exchange replaces credential, tenant_credentials and user_credentials",
        ));
    }
    match url::Url::parse(&t.token_endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.password().is_none() => {}
        Ok(_) => errs.push(ConfigError::new(
            format!("{at}.token_endpoint"),
            "an http or https URL without credentials",
        )),
        Err(e) => errs.push(ConfigError::new(
            format!("{at}.token_endpoint"),
            e.to_string(),
        )),
    }
    let client_auth = match t.client_auth.as_deref() {
        None | Some("basic") => ClientAuth::Basic,
        Some("post") => ClientAuth::Post,
        Some(_) => {
            errs.push(ConfigError::new(
                format!("{at}.client_auth"),
                "basic or post",
            ));
            ClientAuth::Basic
        }
    };
    let grant = match t.grant.as_deref() {
        None | Some("token_exchange") => ExchangeGrant::TokenExchange,
        Some("jwt_bearer") => ExchangeGrant::JwtBearer,
        Some(_) => {
            errs.push(ConfigError::new(
                format!("{at}.grant"),
                "token_exchange or jwt_bearer",
            ));
            ExchangeGrant::TokenExchange
        }
    };
    if grant == ExchangeGrant::JwtBearer && t.scopes.is_empty() {
        errs.push(ConfigError::new(
            format!("{at}.scopes"),
            "the on-behalf-of form names the upstream by its scopes: at least one",
        ));
    }
    if let Some(h) = &t.header {
        if is_bad_header_name(h) {
            errs.push(ConfigError::new(
                format!("{at}.header"),
                "not a valid header name",
            ));
        }
    }
    Some(TokenExchange {
        token_endpoint: t.token_endpoint.clone(),
        client_id: t.client_id.clone(),
        client_secret: secret_ref(&t.client_secret, &format!("{at}.client_secret"), errs),
        client_auth,
        grant,
        audience: t.audience.clone(),
        resource: t.resource.clone(),
        scope: (!t.scopes.is_empty()).then(|| t.scopes.join(" ")),
        header: header_or_default(t.header.as_ref()),
        prefix: prefix_or_default(t.prefix.as_ref()),
        refresh_before: std::time::Duration::from_secs(t.refresh_before_s.unwrap_or(30)),
        timeout: std::time::Duration::from_millis(t.timeout_ms.unwrap_or(5000).max(1)),
    })
}
