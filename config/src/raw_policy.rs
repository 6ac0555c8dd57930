//! The config file's identity, tenant, role and audit sections: plain serde
//! types; `policy::compile` validates and compiles them.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
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

/// Where a secret lives: `{ env: NAME }` or `{ file: PATH }`. Inline
/// secrets are not accepted.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: String,
    #[serde(default)]
    pub allow: Vec<RawRule>,
    #[serde(default)]
    pub deny: Vec<RawRule>,
}

/// A scope, alone or with conditions on the call's arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawRule {
    Scope(String),
    Conditional(RawConditionalRule),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConditionalRule {
    pub scope: String,
    #[serde(default)]
    pub when: Vec<RawCondition>,
}

/// A test on one argument, found by JSON pointer (RFC 6901).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub pointer: String,
    pub equals: Option<serde_yaml::Value>,
    /// Glob over a string argument (`*` within a `/`-separated segment).
    pub glob: Option<String>,
    pub max: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// JSON-lines file; no file means no audit sink.
    pub file: Option<String>,
    /// Rotate past this size. Default 100 MiB.
    pub max_file_bytes: Option<u64>,
    /// Rotated files kept. Default 5.
    pub keep_files: Option<u32>,
    /// Fraction of allowed calls kept (denials and errors always). Default 1.0.
    pub sample_rate: Option<f64>,
    /// Record the call's arguments (after redaction). Default false.
    #[serde(default)]
    pub include_arguments: bool,
    /// JSON pointers redacted from recorded arguments.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Events held in memory before dropping. Default 10000.
    pub queue: Option<usize>,
}

/// How the upstream sees the caller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    /// The upstream's own credential, sent in `header` (default
    /// `Authorization`) as `prefix` + secret (default prefix `Bearer `).
    pub credential: Option<RawCredential>,
    /// Header carrying the gateway-signed identity assertion (a JWT).
    pub assertion_header: Option<String>,
    /// Reuse an assertion for the same caller, session and upstream for up
    /// to this many seconds (at most 30, half its 60 s life) instead of
    /// signing one per request. Reused assertions carry no `request_id`.
    /// Default 0: one per request.
    pub assertion_reuse_s: Option<u64>,
    /// Per-user credentials, for upstreams that act on behalf of the caller:
    /// a directory with one file per subject holding that user's secret.
    pub user_credentials: Option<RawUserCredentials>,
    /// A credential per tenant (e.g. a LiteLLM key per team), used instead
    /// of `credential` for that tenant's callers.
    #[serde(default)]
    pub tenant_credentials: Vec<RawTenantCredential>,
    /// Model requests to this upstream (a LiteLLM proxy) also carry
    /// `metadata` naming the end user, a `tenant:<name>` tag and the
    /// gateway's request id, for LiteLLM's spend tracking. Default false
    /// (providers such as OpenAI refuse `metadata` without `store`).
    #[serde(default)]
    pub llm_metadata: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenantCredential {
    pub tenant: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub secret: RawSecretRef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserCredentials {
    pub dir: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub secret: RawSecretRef,
}
