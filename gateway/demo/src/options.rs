//! Knobs a test or the CLI sets when starting the demo server.

/// How the demo server behaves; `Default` is what the quick start runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Answer every POST with `application/json`, even when the client
    /// accepts `text/event-stream`. Notifications and server→client
    /// requests of a call then travel on the session's GET stream, if open.
    pub json_response: bool,
    /// Pause between the events of streaming tools such as `ticker`.
    pub sse_interval_ms: u64,
    /// Host names (optionally `host:port`) accepted in `Host` and `Origin`;
    /// `None` accepts any, which is what an upstream behind a gateway wants.
    pub allowed_hosts: Option<Vec<String>>,
    /// Extra echo tools `tool_000`, `tool_001`, … appended to `tools/list`,
    /// so list rewriting can be measured on large catalogues.
    pub extra_tools: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            json_response: false,
            sse_interval_ms: 300,
            allowed_hosts: None,
            extra_tools: 0,
        }
    }
}
