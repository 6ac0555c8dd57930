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
}
