//! The resolved identity settings: API keys and JWT issuers.

use super::secret::SecretRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub sha256: String,
    pub subject: String,
    pub tenants: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    JwksFile(String),
    JwksUrl(String),
    Hs256(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    pub issuer: String,
    pub keys: JwtKeys,
    pub algorithms: Vec<String>,
    pub tenant_claim: String,
    pub roles_claim: String,
    pub refresh_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Authentication is on: some key or issuer is configured.
    pub enabled: bool,
    pub audience: String,
    pub authorization_servers: Vec<String>,
    pub api_keys: Vec<ApiKey>,
    pub jwt: Vec<JwtIssuer>,
    pub leeway_s: u64,
}
