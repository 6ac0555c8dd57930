//! The config file's format: plain serde types that mirror the YAML one to
//! one. Nothing here is trusted; `Snapshot::build` validates and resolves it.

use serde::Deserialize;

pub use crate::raw_policy::*;
use crate::{ConfigError, ConfigErrors};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity: RawIdentity,
    /// The tenants this gateway serves; every tenant named elsewhere must be here.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    #[serde(default)]
    pub audit: RawAudit,
    /// Upstream addresses allowed after resolution: names, IPs, CIDRs.
    /// Empty means no egress check.
    #[serde(default)]
    pub egress_allow: Vec<String>,
    #[serde(default)]
    pub rate_limits: crate::limits::RawRateLimits,
    /// Caps on calls in flight, per key.
    #[serde(default)]
    pub concurrency_limits: Vec<crate::limits::RawConcurrencyRule>,
    /// Model traffic on `transport: llm` routes.
    #[serde(default)]
    pub llm: crate::llm::RawLlm,
    /// Tool calls that wait for a human decision at the control process.
    #[serde(default)]
    pub approvals: crate::approvals::RawApprovals,
}

impl RawConfig {
    /// Parse YAML; a syntax or shape error is reported with its location.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigErrors> {
        serde_yaml::from_str(yaml).map_err(|e| {
            let path = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "<document>".to_owned());
            ConfigError::new(path, e.to_string()).into()
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    /// `host:port`; port 0 picks a free port (tests).
    pub address: String,
    #[serde(default)]
    pub tls: Option<RawListenerTls>,
    /// Accept HTTP/2 (h2c on plain listeners, ALPN `h2` on TLS). Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert_file: String,
    pub key_file: String,
    /// Require client certificates signed by these CAs (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted request body, bytes. Default 4 MiB.
    pub max_body_bytes: Option<u64>,
    /// Deepest accepted JSON nesting in a request. Default 64.
    pub max_json_depth: Option<u32>,
    /// Most elements in any JSON array of a request. Default 100000.
    pub max_json_array_len: Option<u32>,
    /// Longest JSON string in a request, bytes. Default: the body cap.
    pub max_json_string_len: Option<u32>,
    /// Largest server→client message the gateway inspects, bytes. Larger
    /// messages still pass through, uninspected. Default 4 MiB.
    pub max_inspected_response_bytes: Option<u64>,
    /// Longest wait for each read of a client's request body (slow-client
    /// protection), milliseconds. Default 30000.
    pub client_read_timeout_ms: Option<u64>,
    /// Most bytes of request bodies the process holds at once, across all
    /// requests; past it new bodies are refused with 503. Default 256 MiB.
    pub max_body_bytes_held: Option<u64>,
    /// Longest request line (method, target, version), bytes; 414 above.
    /// Default 8192, as nginx's `large_client_header_buffers`.
    pub max_request_line_bytes: Option<u32>,
    /// Longest header line (name and value), bytes; 431 above. Default 8192.
    pub max_header_line_bytes: Option<u32>,
    /// Largest request head in all, bytes; 431 above. Default 32768.
    pub max_head_bytes: Option<u32>,
    /// Most header lines in a request; 431 above. Default 100.
    pub max_headers: Option<u32>,
    /// Longest an HTTP/1.1 request head may take from its first byte (a new
    /// connection's from the accept; HTTP/2: the preface and first frame),
    /// however the bytes trickle, milliseconds. Default 10000.
    pub head_timeout_ms: Option<u64>,
    /// Most client connections open at once; past it the one waiting
    /// longest on its client (idle between requests, or sending a head or
    /// the start of a body) is shed, or the new one closed. Default 20000.
    pub max_connections: Option<u32>,
    /// Most client connections open at once from one source address.
    /// Default 2000.
    pub max_connections_per_address: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// Seconds in-flight requests and SSE streams get to finish. Default 30.
    pub grace_period_s: Option<u64>,
    /// Unix socket a new process (`--upgrade`) takes the listeners over on.
    /// Default `/tmp/sluice_upgrade.sock`.
    pub upgrade_sock: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Default, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Path prefix on the listener, matched on segment boundaries: `/mcp`
    /// matches `/mcp` and `/mcp/x`, never `/mcpx`.
    pub path: String,
    pub upstream: String,
    /// `streamable_http` (default), `legacy_sse` (the 2024-11-05 transport:
    /// `GET <path>/sse` and `POST <path>/message`), or `llm` (the
    /// OpenAI-compatible API: `<path>/chat/completions`, …, `<path>/models`).
    #[serde(default)]
    pub transport: Option<String>,
    /// DNS-rebinding protection: the Host and Origin values accepted.
    #[serde(default)]
    pub hosts: Option<RawHostPolicy>,
    /// Listeners that serve this route; default all.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
    /// `required` (default when identity is configured) or `anonymous`.
    #[serde(default)]
    pub auth: Option<String>,
    /// Client requests whose method the gateway does not classify (such as
    /// `tasks/*`, or methods of later revisions): `refuse` (-32601, the
    /// default when callers authenticate — such a method could run a tool or
    /// read content past the policy) or `forward`.
    #[serde(default)]
    pub unclassified_methods: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostPolicy {
    /// Host names accepted in `Host`/`:authority` (port ignored). Default:
    /// loopback names only. `["*"]` accepts any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins accepted when a request carries `Origin`. Default: origins
    /// whose host is an allowed host. `["*"]` accepts any.
    pub allowed_origins: Option<Vec<String>>,
}
