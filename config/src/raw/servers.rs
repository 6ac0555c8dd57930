//! The `servers` section: virtual MCP servers, each composed of sources —
//! MCP upstreams whose tools, prompts and resources it federates behind one
//! endpoint, with a prefix per source, name filters and per-tool overrides.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub name: String,
    /// Between a source's prefix and an item's name; default `_`.
    #[serde(default)]
    pub separator: Option<String>,
    pub sources: Vec<RawSource>,
    /// Catalog mode: list the meta-tools `search_tools`, `get_tool_details`
    /// and `execute_tool` instead of every tool.
    #[serde(default)]
    pub catalog: bool,
    /// How long a tool call's idempotency key holds; default 86400 s.
    #[serde(default)]
    pub idempotency_window_s: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub upstream: String,
    /// What the source's names start with (then the separator); default
    /// the upstream's name, `""` for none.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tools: RawNameFilter,
    #[serde(default)]
    pub prompts: RawNameFilter,
    #[serde(default)]
    pub resources: RawNameFilter,
    /// Per tool, by its name on the upstream.
    #[serde(default)]
    pub overrides: BTreeMap<String, RawToolOverride>,
    /// Pin the source's tool definitions (`tofu` or `approve_first`): a
    /// tool whose definition is not the pinned one is quarantined.
    #[serde(default)]
    pub pin: Option<RawPinMode>,
    /// Check listed tool definitions before serving them; `{}` for the
    /// defaults.
    #[serde(default)]
    pub screen: Option<RawScreen>,
    /// The lifecycle state of the source's tools (an override may set a
    /// tool's own); default `published`.
    #[serde(default)]
    pub state: Option<RawToolState>,
    /// Tools that are HTTP requests to the upstream (which is then not an
    /// MCP server): declared here instead of listed by the upstream.
    #[serde(default)]
    pub http_tools: Vec<RawHttpTool>,
}

/// A tool whose call is one HTTP request. `{name}` in `path`, `query`,
/// `headers` and string values of `body` is the argument `name`: in the
/// path percent-encoded, in a string alone its JSON value as it is.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttpTool {
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema (an object schema) the arguments must satisfy.
    pub input_schema: serde_json::Value,
    #[serde(default)]
    pub output_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub annotations: Option<serde_json::Value>,
    /// GET (default), POST, PUT, PATCH or DELETE.
    #[serde(default)]
    pub method: Option<String>,
    /// After the upstream URL's path, starting with `/`.
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON body (template).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Largest answer read; default 1 MiB.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

/// Where a catalog tool is in its life. A route serves the states it names
/// (`serves`); a disabled tool is unknown everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawToolState {
    Draft,
    Published,
    Deprecated,
    Disabled,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawPinMode {
    /// A tool first seen with no pin is trusted and pinned; a later change
    /// is quarantined until approved.
    Tofu,
    /// A tool is served only once its definition is pinned.
    ApproveFirst,
}

/// Checks on a listed tool definition; a definition that fails one is
/// quarantined with the reason.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScreen {
    /// Longest description (the tool's or a parameter's), in characters;
    /// default 4096.
    #[serde(default)]
    pub max_description_chars: Option<usize>,
    /// Largest definition, as JSON bytes; default 65536.
    #[serde(default)]
    pub max_definition_bytes: Option<usize>,
    /// Refuse invisible and bidirectional-control characters; default true.
    #[serde(default)]
    pub unicode: Option<bool>,
    /// Refuse text addressed to the model (built-in phrases such as
    /// "ignore previous instructions", hidden tags); default true.
    #[serde(default)]
    pub instructions: Option<bool>,
    /// More phrases that quarantine a definition (case and spacing ignored).
    #[serde(default)]
    pub phrases: Vec<String>,
    /// Domains links may point at (a subdomain matches too). Absent: links
    /// are not checked; empty: no link is allowed.
    #[serde(default)]
    pub link_domains: Option<Vec<String>>,
}

/// A tool definition an operator trusts: the digest
/// (`sluice_config::definition_digest`) of `tool` as `upstream` lists it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPin {
    pub upstream: String,
    pub tool: String,
    pub digest: String,
}

/// Globs on names (`*` any run of characters): an item is served when some
/// `include` matches (no `include`: every item) and no `exclude` does.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNameFilter {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawToolOverride {
    /// The tool's name for clients (the prefix still applies).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Argument values the client cannot change: set on every call, and
    /// removed from the advertised `inputSchema`.
    #[serde(default)]
    pub fixed: serde_json::Map<String, serde_json::Value>,
    /// Argument values used when the client leaves them out; they stay in
    /// the advertised `inputSchema`, no longer required.
    #[serde(default)]
    pub defaults: serde_json::Map<String, serde_json::Value>,
    /// This tool's lifecycle state (else the source's).
    #[serde(default)]
    pub state: Option<RawToolState>,
    /// This tool's version, shown to clients in `_meta` and in control.
    #[serde(default)]
    pub version: Option<String>,
}
