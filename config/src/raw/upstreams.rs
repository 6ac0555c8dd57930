//! The `upstreams` section: each MCP or model server, how to reach it, its
//! timeouts, retries, circuit breaker, and what is injected into its requests.

use serde::Deserialize;

use super::secret::RawSecretRef;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    /// `http://` or `https://` URL of the MCP endpoint.
    pub url: String,
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Talk HTTP/2 to this upstream (TLS with ALPN only). Default false.
    #[serde(default)]
    pub http2: bool,
    /// The MCP transport it speaks: `streamable_http` (default), or
    /// `legacy_sse` — the 2024-11-05 HTTP+SSE transport, `url` its event
    /// stream (`…/sse`); such an upstream is a virtual server's source.
    pub transport: Option<String>,
    /// Tenants whose callers may use this upstream; empty means every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// The upstream's own credential and the identity assertion.
    #[serde(default)]
    pub inject: RawInjection,
    /// Retries of connections that failed before any request byte was sent.
    #[serde(default)]
    pub retries: RawRetries,
    /// Stop sending to an upstream that keeps failing. Off unless given.
    #[serde(default)]
    pub circuit_breaker: Option<RawCircuitBreaker>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    /// Further attempts after a failed connect. Default 2; 0 disables.
    pub attempts: Option<u32>,
    /// First backoff, milliseconds (doubled per attempt, full jitter). Default 25.
    pub backoff_ms: Option<u64>,
    /// Longest backoff, milliseconds. Default 1000.
    pub max_backoff_ms: Option<u64>,
    /// Retries allowed as a fraction of recent requests. Default 0.2.
    pub budget_ratio: Option<f64>,
    /// Retries per second allowed whatever the ratio. Default 10.
    pub budget_min_per_s: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    /// Open after this many failures in a row. Default 5.
    pub consecutive_failures: Option<u32>,
    /// Also open when this fraction of requests in `window_s` failed
    /// (with at least `min_requests`). Default off.
    pub error_rate: Option<f64>,
    pub window_s: Option<u64>,
    pub min_requests: Option<u32>,
    /// How long the circuit stays open before one probe goes through,
    /// milliseconds. Default 5000.
    pub open_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Verify the upstream's certificate. Default true.
    pub verify: Option<bool>,
    /// PEM bundle of extra trusted CAs.
    pub ca_file: Option<String>,
    /// Client certificate and key for mTLS (PEM files).
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// Server name to present and verify; defaults to the URL's host.
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// TCP (and TLS) connect. Default 5000.
    pub connect_ms: Option<u64>,
    /// Longest wait for a call's answer: before the response header, and
    /// between the events of an answer streamed as SSE. Default 300000.
    pub first_byte_ms: Option<u64>,
    /// Longest silence on a GET event stream. Keep it above the upstream's
    /// keep-alive interval. Default 300000.
    pub stream_idle_ms: Option<u64>,
    /// Longest a call (POST) may take, first byte to last. Default none.
    pub total_ms: Option<u64>,
    /// Longest wait for each write to the upstream. Default 30000.
    pub write_ms: Option<u64>,
    /// Idle pooled connections are closed after this long. Keep it below
    /// the upstream's own keep-alive timeout. Default 60000.
    pub pool_idle_ms: Option<u64>,
}

/// How the upstream sees the caller.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
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
    /// Act as the caller: exchange the caller's access token at the
    /// organisation's identity provider (RFC 8693 token exchange, or the
    /// `jwt-bearer` on-behalf-of form) for a token meant for this upstream,
    /// and send that. Replaces `credential`, `tenant_credentials` and
    /// `user_credentials`: one outbound credential per request.
    pub token_exchange: Option<RawTokenExchange>,
    /// Model requests to this upstream (a LiteLLM proxy) also carry
    /// `metadata` naming the end user, a `tenant:<name>` tag and the
    /// gateway's request id, for LiteLLM's spend tracking. Default false
    /// (providers such as OpenAI refuse `metadata` without `store`).
    #[serde(default)]
    pub llm_metadata: bool,
}

/// Where and how the gateway exchanges a caller's token for this upstream.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenExchange {
    /// The identity provider's token endpoint (`http` or `https`).
    pub token_endpoint: String,
    /// The gateway's client at the identity provider.
    pub client_id: String,
    pub client_secret: RawSecretRef,
    /// `basic` (HTTP Basic, the default) or `post` (in the form body).
    pub client_auth: Option<String>,
    /// `token_exchange` (RFC 8693, the default) or `jwt_bearer` (the
    /// on-behalf-of form of Microsoft Entra ID: `assertion` and
    /// `requested_token_use=on_behalf_of`).
    pub grant: Option<String>,
    /// The upstream's identifier at the identity provider (RFC 8693
    /// `audience`).
    pub audience: Option<String>,
    /// The upstream's URL as a resource indicator (RFC 8707 `resource`).
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The header the exchanged token goes in (default `Authorization`,
    /// as `prefix` + token, default prefix `Bearer `).
    pub header: Option<String>,
    pub prefix: Option<String>,
    /// Exchange again this many seconds before the token expires. Default 30.
    pub refresh_before_s: Option<u64>,
    /// How long an exchange may take. Default 5000.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTenantCredential {
    pub tenant: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub secret: RawSecretRef,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUserCredentials {
    pub dir: String,
    pub header: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub secret: RawSecretRef,
}
