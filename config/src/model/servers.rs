//! Virtual MCP servers as compiled: each source's upstream resolved, its
//! prefix (separator included) fixed, its filters and overrides checked.
//! Data only; the gateway's `federation` maps names with it.

/// A virtual server: one endpoint over several sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub sources: Vec<Source>,
    /// Lists the meta-tools instead of every tool.
    pub catalog: bool,
    /// How long a tool call's idempotency key holds.
    pub idempotency_window: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Index into `Snapshot::upstreams`.
    pub upstream: usize,
    /// What every name of this source starts with for clients: the prefix
    /// and the separator, or nothing.
    pub prefix: String,
    pub tools: NameFilter,
    pub prompts: NameFilter,
    pub resources: NameFilter,
    /// Sorted by `tool`, one per tool.
    pub overrides: Vec<ToolOverride>,
    /// Definitions pinned: only a pinned definition is served.
    pub pin: Option<PinMode>,
    /// Definitions checked before they are served.
    pub screen: Option<Screen>,
    /// The state of tools without their own.
    pub state: ToolState,
    /// Tools that are HTTP requests; when any, the upstream is not MCP.
    pub http_tools: Vec<HttpTool>,
}

/// A tool whose call is one HTTP request to its source's upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTool {
    /// As an MCP server would list it: `name`, `title`, `description`,
    /// `inputSchema`, `outputSchema`, `annotations`.
    pub definition: serde_json::Value,
    pub name: String,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    pub max_response_bytes: usize,
}

/// Where a catalog tool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolState {
    Draft,
    Published,
    Deprecated,
    /// Unknown on every route.
    Disabled,
}

impl ToolState {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolState::Draft => "draft",
            ToolState::Published => "published",
            ToolState::Deprecated => "deprecated",
            ToolState::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    /// No pin yet: trusted on first sight, and pinned.
    TrustOnFirstUse,
    /// No pin yet: quarantined until approved.
    ApproveFirst,
}

/// Checks on listed definitions (`federation::screen` in the gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub max_description_chars: usize,
    pub max_definition_bytes: usize,
    pub unicode: bool,
    pub instructions: bool,
    /// Lower-cased, whitespace collapsed.
    pub phrases: Vec<String>,
    /// Lower-cased; `None`: links not checked.
    pub link_domains: Option<Vec<String>>,
}

/// Trusted definitions: upstream name → tool name → digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins(pub std::collections::HashMap<String, std::collections::HashMap<String, String>>);

impl Pins {
    /// The pinned digest of `tool` on `upstream`.
    pub fn get(&self, upstream: &str, tool: &str) -> Option<&str> {
        self.0.get(upstream)?.get(tool).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.values().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Globs on names: served when some `include` matches (empty: all) and no
/// `exclude` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFilter {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolOverride {
    /// The tool's name on the upstream.
    pub tool: String,
    /// Its name for clients, before the prefix; `None`: unchanged.
    pub name: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Set on every call whatever the client sent; not advertised.
    pub fixed: serde_json::Map<String, serde_json::Value>,
    /// Set when the client leaves them out; advertised, not required.
    pub defaults: serde_json::Map<String, serde_json::Value>,
    /// Its own lifecycle state, else the source's.
    pub state: Option<ToolState>,
    pub version: Option<String>,
}

impl Source {
    /// Its tools are HTTP requests, not an MCP server's.
    pub fn is_http(&self) -> bool {
        !self.http_tools.is_empty()
    }

    pub fn http_tool(&self, name: &str) -> Option<&HttpTool> {
        self.http_tools.iter().find(|t| t.name == name)
    }

    /// The lifecycle state of the upstream's tool `tool`.
    pub fn state_of(&self, tool: &str) -> ToolState {
        self.override_for(tool)
            .and_then(|o| o.state)
            .unwrap_or(self.state)
    }

    /// The override for the upstream's tool `tool`, if any.
    pub fn override_for(&self, tool: &str) -> Option<&ToolOverride> {
        self.overrides
            .binary_search_by(|o| o.tool.as_str().cmp(tool))
            .ok()
            .map(|i| &self.overrides[i])
    }
}
