//! Builds the `identity` section: API keys and JWT issuers, checked against
//! the configured tenants and roles.

use super::check::{check_tenants, secret_ref};
use crate::error::ConfigError;
use crate::model::{ApiKey, Identity, JwtIssuer, JwtKeys};
use crate::raw::{RawApiKey, RawConfig, RawJwtIssuer, RawRole};

pub(crate) fn build_identity(raw: &RawConfig, errs: &mut Vec<ConfigError>) -> Identity {
    let id = &raw.identity;
    let api_keys = id
        .api_keys
        .iter()
        .enumerate()
        .map(|(i, k)| build_api_key(k, &format!("identity.api_keys[{i}]"), raw, errs))
        .collect();
    let jwt: Vec<JwtIssuer> = id
        .jwt
        .iter()
        .enumerate()
        .filter_map(|(i, j)| build_jwt_issuer(j, &format!("identity.jwt[{i}]"), errs))
        .collect();
    let enabled = !id.api_keys.is_empty() || !jwt.is_empty();
    if !jwt.is_empty() && id.audience.is_none() {
        errs.push(ConfigError::new(
            "identity.audience",
            "required with jwt issuers: tokens must be for this gateway",
        ));
    }
    Identity {
        enabled,
        audience: id.audience.clone().unwrap_or_default(),
        authorization_servers: id.authorization_servers.clone(),
        api_keys,
        jwt,
        leeway_s: id.leeway_s.unwrap_or(30),
    }
}

fn build_api_key(k: &RawApiKey, p: &str, raw: &RawConfig, errs: &mut Vec<ConfigError>) -> ApiKey {
    if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        errs.push(ConfigError::new(
            format!("{p}.sha256"),
            "must be the 64 hex digits of the key's SHA-256 (never the key itself)",
        ));
    }
    check_tenants(&k.tenants, &raw.tenants, &format!("{p}.tenants"), errs);
    check_roles(&k.roles, &raw.roles, &format!("{p}.roles"), errs);
    ApiKey {
        id: k.id.clone(),
        sha256: k.sha256.to_ascii_lowercase(),
        subject: k.subject.clone(),
        tenants: k.tenants.clone(),
        roles: k.roles.clone(),
    }
}

fn build_jwt_issuer(j: &RawJwtIssuer, p: &str, errs: &mut Vec<ConfigError>) -> Option<JwtIssuer> {
    let keys = jwt_keys(j, p, errs)?;
    let algorithms = jwt_algorithms(j, &keys, p, errs);
    Some(JwtIssuer {
        issuer: j.issuer.clone(),
        keys,
        algorithms,
        tenant_claim: j.tenant_claim.clone().unwrap_or_else(|| "tenant".into()),
        roles_claim: j.roles_claim.clone().unwrap_or_else(|| "roles".into()),
        refresh_s: j.refresh_s.unwrap_or(300).max(10),
    })
}

/// Exactly one key source; a JWKS URL must be https (or loopback http).
fn jwt_keys(j: &RawJwtIssuer, p: &str, errs: &mut Vec<ConfigError>) -> Option<JwtKeys> {
    Some(match (&j.jwks_file, &j.jwks_url, &j.hs256_secret) {
        (Some(f), None, None) => JwtKeys::JwksFile(f.clone()),
        (None, Some(u), None) => {
            if !(u.starts_with("https://")
                || u.starts_with("http://127.")
                || u.starts_with("http://localhost"))
            {
                errs.push(ConfigError::new(
                    format!("{p}.jwks_url"),
                    "must be https (or loopback http)",
                ));
            }
            JwtKeys::JwksUrl(u.clone())
        }
        (None, None, Some(s)) => JwtKeys::Hs256(secret_ref(s, &format!("{p}.hs256_secret"), errs)),
        _ => {
            errs.push(ConfigError::new(
                p,
                "exactly one of jwks_file, jwks_url, hs256_secret",
            ));
            return None;
        }
    })
}

/// The accepted algorithms (a default per key source), each one that fits
/// the key source: a symmetric one only with a shared secret.
fn jwt_algorithms(
    j: &RawJwtIssuer,
    keys: &JwtKeys,
    p: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<String> {
    let algorithms = if j.algorithms.is_empty() {
        match keys {
            JwtKeys::Hs256(_) => vec!["HS256".to_owned()],
            _ => vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()],
        }
    } else {
        j.algorithms.clone()
    };
    for a in &algorithms {
        let symmetric = a == "HS256";
        if !matches!(a.as_str(), "RS256" | "ES256" | "EdDSA" | "HS256") {
            errs.push(ConfigError::new(
                format!("{p}.algorithms"),
                format!("unsupported algorithm `{a}`"),
            ));
        } else if symmetric != matches!(keys, JwtKeys::Hs256(_)) {
            errs.push(ConfigError::new(
                format!("{p}.algorithms"),
                format!("`{a}` does not fit this issuer's key source (algorithm confusion)"),
            ));
        }
    }
    algorithms
}

fn check_roles(names: &[String], known: &[RawRole], path: &str, errs: &mut Vec<ConfigError>) {
    for r in names {
        if !known.iter().any(|k| &k.name == r) {
            errs.push(ConfigError::new(path, format!("unknown role `{r}`")));
        }
    }
}
