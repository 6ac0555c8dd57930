//! The `identity` section: API keys and JWT issuers that authenticate callers.

use serde::Deserialize;

use super::secret::RawSecretRef;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The gateway's own resource identifier: tokens must carry it in `aud`,
    /// and it is the `resource` of the RFC 9728 metadata.
    pub audience: Option<String>,
    /// Authorization servers advertised in the protected-resource metadata.
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    #[serde(default)]
    pub jwt: Vec<RawJwtIssuer>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds. Default 30.
    pub leeway_s: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub id: String,
    /// Hex SHA-256 of the key; the key itself never appears in config.
    pub sha256: String,
    pub subject: String,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwtIssuer {
    pub issuer: String,
    pub jwks_file: Option<String>,
    pub jwks_url: Option<String>,
    /// HS256 secret, by reference only.
    pub hs256_secret: Option<RawSecretRef>,
    /// Accepted algorithms: RS256, ES256, EdDSA, HS256.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// Claim naming the subject's tenants (string or array). Default `tenant`.
    pub tenant_claim: Option<String>,
    /// Claim naming the subject's roles (string or array). Default `roles`.
    pub roles_claim: Option<String>,
    /// Seconds between JWKS URL refreshes. Default 300.
    pub refresh_s: Option<u64>,
}
