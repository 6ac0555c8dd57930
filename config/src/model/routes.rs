//! The resolved routes: path prefix, upstream, transport, authentication,
//! and the Host/Origin lists that protect against DNS rebinding.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTransport {
    StreamableHttp,
    LegacySse,
    /// OpenAI-compatible model API (and Anthropic's `/messages`).
    Llm,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// Index into `Snapshot::upstreams` (a server route: its first source's).
    pub upstream: usize,
    /// Index into `Snapshot::servers`: the route serves a virtual server.
    pub server: Option<usize>,
    pub transport: RouteTransport,
    pub hosts: HostPolicy,
    /// Listener names that serve this route; `None` means all.
    pub listeners: Option<Vec<String>>,
    /// Callers must authenticate (the default when identity is configured).
    pub auth_required: bool,
    /// Forward client requests of methods the gateway does not classify.
    pub forward_unclassified: bool,
    /// A server route: the tool states it serves (never `Disabled`).
    pub serves: Vec<crate::model::ToolState>,
}

/// DNS-rebinding protection for one route, compiled to lowercase names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// `None` accepts any Host.
    pub hosts: Option<Vec<String>>,
    /// `None` accepts any Origin; `Some(empty)` accepts origins whose host is
    /// the request's own host or an allowed host.
    pub origins: Option<Vec<String>>,
}
