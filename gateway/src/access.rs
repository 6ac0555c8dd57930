//! From a request's headers to a `Caller`: the per-snapshot `Authenticator`
//! built from config (API key hashes, JWT issuers and their keys), the
//! anonymous fallback where a route allows it, and the tenant chosen for
//! the request. Also the RFC 9728 metadata a 401 points at.

use std::sync::Arc;

use sluice_config::{JwtKeys, Route, Snapshot};

use crate::identity::{
    self, Algorithm, ApiKeyEntry, ApiKeys, AuthError, Authenticator, IssuerConfig, JwtVerifier,
    KeySource, Principal,
};
use crate::inject::read_secret;
use crate::policy::{resolve_tenant, Caller, TenantError};

const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
const X_TENANT_ID: http::HeaderName = http::HeaderName::from_static("x-tenant-id");

pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// Where upstreams fetch the keys that verify the gateway's assertions.
pub const JWKS_PATH: &str = "/.well-known/sluice/jwks.json";

/// Build the authenticator for a snapshot; `None` when identity is off.
pub fn authenticator(snap: &Snapshot) -> Result<Option<Arc<Authenticator>>, String> {
    let id = &snap.identity;
    if !id.enabled {
        return Ok(None);
    }
    let keys = id
        .api_keys
        .iter()
        .map(|k| ApiKeyEntry {
            id: k.id.clone(),
            sha256_hex: k.sha256.clone(),
            subject: k.subject.clone(),
            tenants: k.tenants.clone(),
            roles: k.roles.clone(),
        })
        .collect();
    let api_keys = ApiKeys::new(keys).map_err(|e| e.to_string())?;
    let mut issuers = Vec::new();
    for j in &id.jwt {
        let keys = match &j.keys {
            JwtKeys::JwksFile(f) => KeySource::JwksFile(f.into()),
            JwtKeys::JwksUrl(u) => KeySource::JwksUrl(u.clone()),
            JwtKeys::Hs256(secret) => KeySource::Hs256Secret(read_secret(secret)?.into_bytes()),
        };
        let mut cfg = IssuerConfig::new(j.issuer.clone(), vec![id.audience.clone()], keys);
        cfg.algorithms = j
            .algorithms
            .iter()
            .map(|a| match a.as_str() {
                "RS256" => Ok(Algorithm::RS256),
                "ES256" => Ok(Algorithm::ES256),
                "EdDSA" => Ok(Algorithm::EdDSA),
                "HS256" => Ok(Algorithm::HS256),
                other => Err(format!("unsupported algorithm {other}")),
            })
            .collect::<Result<_, _>>()?;
        cfg.tenant_claim = j.tenant_claim.clone();
        cfg.roles_claim = j.roles_claim.clone();
        cfg.leeway_s = id.leeway_s;
        cfg.refresh_s = j.refresh_s;
        issuers.push(cfg);
    }
    let jwt = JwtVerifier::new(issuers).map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(Authenticator { api_keys, jwt })))
}

/// Why a request has no caller.
#[derive(Debug)]
pub enum Denied {
    Unauthenticated {
        reason: &'static str,
        /// The `WWW-Authenticate` value pointing at the resource metadata.
        challenge: String,
    },
    Tenant(TenantError),
}

impl From<TenantError> for Denied {
    fn from(t: TenantError) -> Self {
        Denied::Tenant(t)
    }
}

/// The caller of a request on `route`, or why it is refused.
pub fn caller(
    snap: &Snapshot,
    route: &Route,
    auth: Option<&Authenticator>,
    headers: &http::HeaderMap,
    host: &str,
) -> Result<Option<Caller>, Denied> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let api_key = headers.get(&X_API_KEY).map(|v| v.as_bytes());
    let principal = match auth.authenticate(authorization, api_key) {
        Ok(p) => p,
        Err(AuthError::Missing) if !route.auth_required => Principal::anonymous(),
        Err(e) => {
            return Err(Denied::Unauthenticated {
                reason: e.reason(),
                challenge: identity::www_authenticate(
                    &metadata_url(snap, route, host),
                    e.bearer_error(),
                ),
            })
        }
    };
    let anonymous = matches!(principal.method, identity::AuthMethod::Anonymous);
    let header = headers.get(&X_TENANT_ID).and_then(|v| v.to_str().ok());
    let tenant = if anonymous {
        None
    } else {
        resolve_tenant(snap, &principal.tenants, header)?.map(Into::into)
    };
    Ok(Some(Caller {
        subject: principal.subject.into(),
        tenant,
        roles: principal.roles.into_iter().map(Into::into).collect(),
        anonymous,
    }))
}

/// The resource identifier of a route: the configured audience if it is a
/// URL, else this request's own origin and the route's path.
fn resource(snap: &Snapshot, route: &Route, host: &str) -> String {
    let aud = &snap.identity.audience;
    if aud.starts_with("https://") || aud.starts_with("http://") {
        return aud.clone();
    }
    format!("http://{host}{}", route.path)
}

pub fn metadata_url(snap: &Snapshot, route: &Route, host: &str) -> String {
    let res = resource(snap, route, host);
    identity::metadata_url(&res)
        .unwrap_or_else(|| format!("http://{host}{METADATA_PATH}{}", route.path))
}

/// RFC 9728 metadata for the route serving `path`.
pub fn metadata(snap: &Snapshot, route: &Route, host: &str) -> String {
    identity::protected_resource_metadata(
        &resource(snap, route, host),
        &snap.identity.authorization_servers,
        &[],
    )
}
