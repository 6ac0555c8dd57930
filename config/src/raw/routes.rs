//! The `routes` section: path prefixes on the listeners, each served by an
//! upstream, with its transport, Host/Origin policy and authentication.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Path prefix on the listener, matched on segment boundaries: `/mcp`
    /// matches `/mcp` and `/mcp/x`, never `/mcpx`.
    pub path: String,
    /// The MCP or model upstream this route serves; or `server`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A virtual server (`servers`) this route serves instead of one
    /// upstream: the gateway answers as the MCP server, federating the
    /// server's sources.
    #[serde(default)]
    pub server: Option<String>,
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
    /// A server route: the lifecycle states of tools it serves. Default
    /// `[published, deprecated]` (production); staging adds `draft`.
    #[serde(default)]
    pub serves: Option<Vec<super::RawToolState>>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHostPolicy {
    /// Host names accepted in `Host`/`:authority` (port ignored). Default:
    /// loopback names only. `["*"]` accepts any.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins accepted when a request carries `Origin`. Default: origins
    /// whose host is an allowed host. `["*"]` accepts any.
    pub allowed_origins: Option<Vec<String>>,
}
