//! The `limits` and `shutdown` sections: caps on what a client may send and
//! hold open, and how long a stopping gateway waits.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// Seconds in-flight requests and SSE streams get to finish. Default 30.
    pub grace_period_s: Option<u64>,
    /// Unix socket a new process (`--upgrade`) takes the listeners over on.
    /// Default `/tmp/sluice_upgrade.sock`.
    pub upgrade_sock: Option<String>,
}
