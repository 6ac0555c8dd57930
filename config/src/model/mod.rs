//! The compiled, immutable config a gateway serves from: every name checked,
//! every default filled in, routes ordered for matching. Built only by
//! `Snapshot::build` (in `build`), which returns all problems at once and
//! never panics. A file per section, as in `raw`.

mod approvals;
mod audit;
mod egress;
mod identity;
mod limits;
mod listeners;
mod llm;
mod pattern;
mod policy;
mod rate_limits;
mod routes;
mod secret;
mod servers;
mod traces;
mod upstreams;

use std::net::SocketAddr;
use std::time::Duration;

pub use approvals::{ApprovalRule, Approvals};
pub use audit::{AccessLog, Audit, Spool};
pub use egress::{Egress, EgressRule};
pub use identity::{ApiKey, Identity, JwtIssuer, JwtKeys};
pub use limits::HeadLimits;
pub use listeners::{Listener, ListenerTls};
pub use llm::{Budget, Llm, ModelAlias, Period, Price, Target, TokenLimit, UsageCounts};
pub use pattern::{glob, glob_path, Kind, Scope};
pub use policy::{Condition, Policy, Role, Rule, Test};
pub use rate_limits::{
    ConcurrencyRule, KeyPart, OnUnavailable, RateLimits, RateRule, Selector, SharedStore,
};
pub use routes::{HostPolicy, Route, RouteTransport};
pub use secret::SecretRef;
pub use servers::{
    HttpTool, NameFilter, PinMode, Pins, Screen, Server, Source, ToolOverride, ToolState,
};
pub use traces::{OtlpProtocol, Traces};
pub use upstreams::{
    CircuitBreaker, ClientAuth, Credential, ExchangeGrant, Retries, Scheme, TokenExchange,
    Upstream, UpstreamTls, UserCredentials,
};

use crate::error::ConfigError;

/// Which config a snapshot was built from: a generation the loader counts up
/// and a hash of the source bytes (the same file always hashes the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub generation: u64,
    pub hash: String,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.generation, self.hash)
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: Version,
    pub listeners: Vec<Listener>,
    pub admin: Option<SocketAddr>,
    pub max_body_bytes: u64,
    /// Most request-body bytes held at once across all requests.
    pub max_body_bytes_held: u64,
    /// Caps on a request head, checked before anything is forwarded.
    pub head_limits: HeadLimits,
    pub max_json_depth: u32,
    pub max_json_array_len: u32,
    pub max_json_string_len: u32,
    pub max_inspected_response_bytes: u64,
    pub client_read_timeout: Duration,
    pub grace_period: Duration,
    /// Where a graceful upgrade hands the listening sockets over.
    pub upgrade_sock: String,
    pub upstreams: Vec<Upstream>,
    /// Longest path first, so the first prefix match is the most specific.
    pub routes: Vec<Route>,
    pub identity: Identity,
    pub tenants: Vec<String>,
    pub policy: Policy,
    pub audit: Audit,
    pub access_log: Option<AccessLog>,
    pub traces: Option<Traces>,
    pub egress: Egress,
    pub rate_limits: RateLimits,
    pub llm: Llm,
    pub approvals: Approvals,
    /// Virtual MCP servers (`servers`).
    pub servers: Vec<Server>,
    /// Tool definitions trusted on pinned sources.
    pub pins: Pins,
    /// Secrets that seal virtual servers' session ids, the sealing one first.
    pub session_keys: Vec<SecretRef>,
    /// Problems that do not stop the config, e.g. rules that can never match.
    pub warnings: Vec<ConfigError>,
}

impl Snapshot {
    /// The index of the route serving `path` on `listener`, and the rest of
    /// the path after the route's prefix ("" or starting with '/').
    pub fn route_for<'p>(&self, listener: &str, path: &'p str) -> Option<(usize, &'p str)> {
        self.routes.iter().enumerate().find_map(|(i, r)| {
            if let Some(ls) = &r.listeners {
                if !ls.iter().any(|l| l == listener) {
                    return None;
                }
            }
            let rest = if r.path == "/" {
                path
            } else {
                path.strip_prefix(r.path.as_str())?
            };
            (rest.is_empty() || rest.starts_with('/') || r.path == "/").then_some((i, rest))
        })
    }

    pub fn upstream(&self, route: &Route) -> &Upstream {
        &self.upstreams[route.upstream]
    }
}
