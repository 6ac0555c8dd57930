//! The resolved upstreams: endpoint, TLS, timeouts, retries, circuit breaker
//! and the credentials injected into their requests.

use std::time::Duration;

use super::secret::SecretRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets); resolved by the gateway.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as it goes in the upstream request's `Host` header.
    pub authority: String,
    /// The URL's path without a trailing slash ("" for the root).
    pub base_path: String,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    /// Per read while a call (POST) waits for its answer.
    pub first_byte_timeout: Duration,
    /// Per read on a GET event stream.
    pub stream_idle_timeout: Duration,
    /// Whole-call limit for POSTs.
    pub total_timeout: Option<Duration>,
    pub write_timeout: Duration,
    /// Pooled connections idle longer than this are closed.
    pub pool_idle_timeout: Duration,
    pub retries: Retries,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub http2: bool,
    /// Speaks only the legacy HTTP+SSE transport (2024-11-05): `base_path`
    /// is its event stream. A virtual server's source only.
    pub legacy_sse: bool,
    /// Tenants allowed to use this upstream; empty means all.
    pub tenants: Vec<String>,
    pub credential: Option<Credential>,
    /// Per-tenant credentials, used instead of `credential`.
    pub tenant_credentials: Vec<(String, Credential)>,
    /// Add LiteLLM `metadata` to model requests.
    pub llm_metadata: bool,
    pub user_credentials: Option<UserCredentials>,
    /// The caller's token exchanged for one meant for this upstream.
    pub token_exchange: Option<TokenExchange>,
    pub assertion_header: Option<String>,
    /// How long a signed assertion may be reused; zero = per request.
    pub assertion_reuse: Duration,
}

/// Retries of connects that failed before any request byte was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub budget_ratio: f64,
    pub budget_min_per_s: u32,
}

impl Eq for Retries {}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    pub consecutive_failures: u32,
    /// `(fraction, window, min_requests)` when the error-rate trigger is on.
    pub error_rate: Option<(f64, Duration, u32)>,
    pub open_for: Duration,
}

impl Eq for CircuitBreaker {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub verify: bool,
    pub ca_file: Option<String>,
    pub client_cert: Option<(String, String)>,
    pub sni: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: String,
    pub prefix: String,
    pub secret: SecretRef,
}

/// Where per-user secrets live: `dir/<subject>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredentials {
    pub dir: String,
    pub header: String,
    pub prefix: String,
}

/// Exchanging the caller's token at the identity provider (see
/// `RawTokenExchange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchange {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    pub client_auth: ClientAuth,
    pub grant: ExchangeGrant,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Space-separated, as sent.
    pub scope: Option<String>,
    pub header: String,
    pub prefix: String,
    pub refresh_before: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeGrant {
    /// RFC 8693.
    TokenExchange,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` with
    /// `requested_token_use=on_behalf_of`.
    JwtBearer,
}
