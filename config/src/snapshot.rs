//! The resolved, immutable config a gateway serves from: every name checked,
//! every default filled in, routes ordered for matching. Built only by
//! `Snapshot::build`, which returns all problems at once and never panics.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::limits::{build_rate_limits, Known, RateLimits};
use crate::llm::{build_llm, Llm};
use crate::policy::{compile, Policy};
use crate::raw::*;
use crate::security::{self, Audit, Credential, Egress, Identity};
use crate::{ConfigError, ConfigErrors};

pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
const DEFAULT_MAX_BODY_BYTES_HELD: u64 = 256 << 20;
pub const DEFAULT_MAX_JSON_DEPTH: u32 = 64;
pub const DEFAULT_GRACE_PERIOD_S: u64 = 30;

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
    pub egress: Egress,
    pub rate_limits: RateLimits,
    pub llm: Llm,
    pub approvals: crate::approvals::Approvals,
    /// Problems that do not stop the config, e.g. rules that can never match.
    pub warnings: Vec<ConfigError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets); resolved by the gateway.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as it goes in the upstream request's `Host` header.
    pub authority: String,
    /// The URL's path without a trailing slash ("" for the root).
    pub base_path: String,
    pub tls: Option<UpstreamTls>,
    pub connect_timeout: Duration,
    /// Per read while a call (POST) waits for its answer.
    pub first_byte_timeout: Duration,
    /// Per read on a GET event stream.
    pub stream_idle_timeout: Duration,
    /// Whole-call limit for POSTs.
    pub total_timeout: Option<Duration>,
    pub write_timeout: Duration,
    /// Pooled connections idle longer than this are closed.
    pub pool_idle_timeout: Duration,
    pub retries: Retries,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub http2: bool,
    /// Tenants allowed to use this upstream; empty means all.
    pub tenants: Vec<String>,
    pub credential: Option<Credential>,
    /// Per-tenant credentials, used instead of `credential`.
    pub tenant_credentials: Vec<(String, Credential)>,
    /// Add LiteLLM `metadata` to model requests.
    pub llm_metadata: bool,
    pub user_credentials: Option<crate::security::UserCredentials>,
    pub assertion_header: Option<String>,
    /// How long a signed assertion may be reused; zero = per request.
    pub assertion_reuse: Duration,
}

/// Retries of connects that failed before any request byte was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Retries {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub budget_ratio: f64,
    pub budget_min_per_s: u32,
}

impl Eq for Retries {}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    pub consecutive_failures: u32,
    /// `(fraction, window, min_requests)` when the error-rate trigger is on.
    pub error_rate: Option<(f64, Duration, u32)>,
    pub open_for: Duration,
}

impl Eq for CircuitBreaker {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub verify: bool,
    pub ca_file: Option<String>,
    pub client_cert: Option<(String, String)>,
    pub sni: String,
}

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
    /// Index into `Snapshot::upstreams`.
    pub upstream: usize,
    pub transport: RouteTransport,
    pub hosts: HostPolicy,
    /// Listener names that serve this route; `None` means all.
    pub listeners: Option<Vec<String>>,
    /// Callers must authenticate (the default when identity is configured).
    pub auth_required: bool,
    /// Forward client requests of methods the gateway does not classify.
    pub forward_unclassified: bool,
}

/// Caps on a request head (defaults in line with nginx's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Method, target and version, bytes.
    pub request_line: u32,
    /// One header's name and value, bytes.
    pub header_line: u32,
    /// The request line and every header, bytes.
    pub head: u32,
    /// Header lines.
    pub headers: u32,
    /// An HTTP/1.1 head must be whole within this of its first byte (a new
    /// connection's, of the accept; for HTTP/2, the preface and first frame).
    pub head_timeout: Duration,
    /// Client connections open at once, in all and from one address.
    pub max_connections: u32,
    pub max_connections_per_address: u32,
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

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl HostPolicy {
    /// Is a request with this `Host` (or `:authority`) and optional `Origin` allowed?
    pub fn allows(&self, host: &str, origin: Option<&str>) -> bool {
        let host_ok = match &self.hosts {
            None => true,
            Some(list) => list_has(list, strip_port(host)),
        };
        if !host_ok {
            return false;
        }
        let Some(origin) = origin else { return true };
        match &self.origins {
            None => true,
            // Default: a browser origin must name this very host, or one of
            // the allowed hosts.
            Some(list) if list.is_empty() => match origin_host(origin) {
                Some(h) => {
                    h.eq_ignore_ascii_case(strip_port(host))
                        || self.hosts.as_ref().is_some_and(|l| list_has(l, h))
                }
                None => false,
            },
            Some(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/'))),
        }
    }
}

fn list_has(list: &[String], name: &str) -> bool {
    list.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `https://app.example.com:443` → `app.example.com`; `null` → None.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = strip_port(authority);
    (!host.is_empty()).then_some(host)
}

impl Snapshot {
    /// Validate `raw` and resolve it. `source` is hashed into the version.
    pub fn build(raw: &RawConfig, source: &[u8], generation: u64) -> Result<Self, ConfigErrors> {
        let mut errs = Vec::new();
        let hash = hex_prefix(&Sha256::digest(source));

        let listeners = build_listeners(&raw.listeners, &mut errs);
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| parse_addr(&a.address, "admin.address", &mut errs));

        let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(1..=1 << 30).contains(&max_body_bytes) {
            errs.push(ConfigError::new(
                "limits.max_body_bytes",
                "must be between 1 and 1073741824",
            ));
        }
        let max_body_bytes_held = raw
            .limits
            .max_body_bytes_held
            .unwrap_or(DEFAULT_MAX_BODY_BYTES_HELD.max(max_body_bytes));
        if max_body_bytes_held < max_body_bytes {
            errs.push(ConfigError::new(
                "limits.max_body_bytes_held",
                "must be at least limits.max_body_bytes",
            ));
        }
        let max_json_depth = raw.limits.max_json_depth.unwrap_or(DEFAULT_MAX_JSON_DEPTH);
        if !(2..=512).contains(&max_json_depth) {
            errs.push(ConfigError::new(
                "limits.max_json_depth",
                "must be between 2 and 512",
            ));
        }
        let max_inspected_response_bytes = raw
            .limits
            .max_inspected_response_bytes
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);

        let upstreams = build_upstreams(&raw.upstreams, &mut errs);
        let identity = security::build_identity(raw, &mut errs);
        let mut routes = build_routes(raw, &listeners, identity.enabled, &mut errs);
        let mut warnings = Vec::new();
        let names: Vec<&str> = raw.upstreams.iter().map(|u| u.name.as_str()).collect();
        let policy = compile(&raw.roles, &names, &mut errs, &mut warnings);
        for (i, u) in raw.upstreams.iter().enumerate() {
            security::check_tenants(
                &u.tenants,
                &raw.tenants,
                &format!("upstreams[{i}].tenants"),
                &mut errs,
            );
            let named: Vec<String> = u
                .inject
                .tenant_credentials
                .iter()
                .map(|c| c.tenant.clone())
                .collect();
            security::check_tenants(
                &named,
                &raw.tenants,
                &format!("upstreams[{i}].inject.tenant_credentials"),
                &mut errs,
            );
        }
        let mut seen = Vec::new();
        for (i, t) in raw.tenants.iter().enumerate() {
            check_name(t, &format!("tenants[{i}]"), &mut seen, &mut errs);
        }
        let audit = security::build_audit(&raw.audit, &mut errs);
        let egress = security::build_egress(&raw.egress_allow, &mut errs);
        let route_names: Vec<String> = raw.routes.iter().map(|r| r.name.clone()).collect();
        let role_names: Vec<String> = raw.roles.iter().map(|r| r.name.clone()).collect();
        let known = Known {
            routes: &route_names,
            tenants: &raw.tenants,
            roles: &role_names,
        };
        let rate_limits =
            build_rate_limits(&raw.rate_limits, &raw.concurrency_limits, &known, &mut errs);
        let upstream_names: Vec<String> = raw.upstreams.iter().map(|u| u.name.clone()).collect();
        let llm = build_llm(&raw.llm, &upstream_names, &raw.tenants, &known, &mut errs);
        let upstream_refs: Vec<&str> = upstream_names.iter().map(String::as_str).collect();
        let approvals =
            crate::approvals::build_approvals(&raw.approvals, &upstream_refs, &mut errs);
        if !approvals.is_empty() && !identity.enabled {
            // An approval binds to who asked; without identity every caller
            // would share every approval.
            errs.push(ConfigError::new(
                "approvals",
                "approval rules need identity (api_keys or jwt): an approval binds to the caller",
            ));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));

        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(Snapshot {
            version: Version { generation, hash },
            listeners,
            admin,
            max_body_bytes,
            max_body_bytes_held,
            head_limits: HeadLimits {
                request_line: raw.limits.max_request_line_bytes.unwrap_or(8192).max(64),
                header_line: raw.limits.max_header_line_bytes.unwrap_or(8192).max(64),
                head: raw.limits.max_head_bytes.unwrap_or(32768).max(256),
                headers: raw.limits.max_headers.unwrap_or(100).max(8),
                head_timeout: Duration::from_millis(
                    raw.limits.head_timeout_ms.unwrap_or(10_000).max(1),
                ),
                max_connections: raw.limits.max_connections.unwrap_or(20_000).max(1),
                max_connections_per_address: raw
                    .limits
                    .max_connections_per_address
                    .unwrap_or(2_000)
                    .max(1),
            },
            max_json_depth,
            max_json_array_len: raw.limits.max_json_array_len.unwrap_or(100_000).max(1),
            max_json_string_len: raw
                .limits
                .max_json_string_len
                .unwrap_or(u32::try_from(max_body_bytes).unwrap_or(u32::MAX))
                .max(1),
            max_inspected_response_bytes,
            client_read_timeout: Duration::from_millis(
                raw.limits.client_read_timeout_ms.unwrap_or(30_000).max(1),
            ),
            grace_period: Duration::from_secs(
                raw.shutdown
                    .grace_period_s
                    .unwrap_or(DEFAULT_GRACE_PERIOD_S),
            ),
            upgrade_sock: raw
                .shutdown
                .upgrade_sock
                .clone()
                .unwrap_or_else(|| "/tmp/sluice_upgrade.sock".into()),
            upstreams,
            routes,
            identity,
            tenants: raw.tenants.clone(),
            policy,
            audit,
            egress,
            rate_limits,
            llm,
            approvals,
            warnings,
        })
    }

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

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn parse_addr(s: &str, path: &str, errs: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(ConfigError::new(
                path,
                format!("`{s}` is not an IP:port address"),
            ));
            None
        }
    }
}

fn check_name(name: &str, path: &str, seen: &mut Vec<String>, errs: &mut Vec<ConfigError>) {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        errs.push(ConfigError::new(
            path,
            format!("`{name}` must be 1-64 characters of [A-Za-z0-9_.-]"),
        ));
    } else if seen.iter().any(|s| s == name) {
        errs.push(ConfigError::new(path, format!("duplicate name `{name}`")));
    }
    seen.push(name.to_owned());
}

fn build_listeners(raw: &[RawListener], errs: &mut Vec<ConfigError>) -> Vec<Listener> {
    if raw.is_empty() {
        errs.push(ConfigError::new(
            "listeners",
            "at least one listener is required",
        ));
    }
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let path = format!("listeners[{i}]");
        check_name(&l.name, &format!("{path}.name"), &mut seen, errs);
        let Some(address) = parse_addr(&l.address, &format!("{path}.address"), errs) else {
            continue;
        };
        out.push(Listener {
            name: l.name.clone(),
            address,
            tls: l.tls.as_ref().map(|t| ListenerTls {
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                client_ca_file: t.client_ca_file.clone(),
            }),
            http2: l.http2.unwrap_or(true),
        });
    }
    out
}

fn build_upstreams(raw: &[RawUpstream], errs: &mut Vec<ConfigError>) -> Vec<Upstream> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let path = format!("upstreams[{i}]");
        check_name(&u.name, &format!("{path}.name"), &mut seen, errs);
        match build_upstream(u, &path) {
            Ok(up) => out.push(up),
            Err(mut e) => errs.append(&mut e),
        }
    }
    out
}

fn build_upstream(u: &RawUpstream, path: &str) -> Result<Upstream, Vec<ConfigError>> {
    let url_path = format!("{path}.url");
    let url = url::Url::parse(&u.url)
        .map_err(|e| vec![ConfigError::new(&url_path, format!("`{}`: {e}", u.url))])?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(vec![ConfigError::new(
                &url_path,
                format!("scheme `{other}` is not http or https"),
            )])
        }
    };
    let mut errs = Vec::new();
    let credential = security::build_credential(&u.inject, path, &mut errs);
    let tenant_credentials = security::build_tenant_credentials(&u.inject, path, &mut errs);
    if u.inject.assertion_reuse_s.is_some_and(|s| s > 30) {
        errs.push(ConfigError::new(
            format!("{path}.inject.assertion_reuse_s"),
            "at most 30: a reused assertion must keep half of its 60 s life",
        ));
    }
    if let Some(h) = &u.inject.assertion_header {
        if is_bad_header_name(h) {
            errs.push(ConfigError::new(
                format!("{path}.inject.assertion_header"),
                "not a valid header name",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        errs.push(ConfigError::new(
            &url_path,
            "credentials in the URL are not allowed: they would end up in logs",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        errs.push(ConfigError::new(
            &url_path,
            "a query or fragment is not allowed",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => {
            errs.push(ConfigError::new(&url_path, "a host is required"));
            String::new()
        }
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    };
    let base_path = url.path().trim_end_matches('/').to_owned();

    let tls = match (scheme, &u.tls) {
        (Scheme::Http, Some(_)) => {
            errs.push(ConfigError::new(
                format!("{path}.tls"),
                "tls settings need an https:// url",
            ));
            None
        }
        (Scheme::Http, None) => None,
        (Scheme::Https, t) => {
            let t = t.clone().unwrap_or_default();
            let client_cert = match (t.client_cert_file, t.client_key_file) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    errs.push(ConfigError::new(
                        format!("{path}.tls"),
                        "client_cert_file and client_key_file go together",
                    ));
                    None
                }
            };
            Some(UpstreamTls {
                verify: t.verify.unwrap_or(true),
                ca_file: t.ca_file,
                client_cert,
                sni: t.sni.unwrap_or_else(|| host.clone()),
            })
        }
    };
    if u.http2 && scheme == Scheme::Http {
        errs.push(ConfigError::new(
            format!("{path}.http2"),
            "HTTP/2 to an upstream needs https (ALPN)",
        ));
    }
    let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
    let t = &u.timeouts;
    for (name, v) in [
        ("connect_ms", t.connect_ms),
        ("first_byte_ms", t.first_byte_ms),
        ("stream_idle_ms", t.stream_idle_ms),
        ("total_ms", t.total_ms),
        ("write_ms", t.write_ms),
        ("pool_idle_ms", t.pool_idle_ms),
    ] {
        if v == Some(0) {
            errs.push(ConfigError::new(
                format!("{path}.timeouts.{name}"),
                "must be above 0",
            ));
        }
    }
    let r = &u.retries;
    let budget_ratio = r.budget_ratio.unwrap_or(0.2);
    if !(0.0..=10.0).contains(&budget_ratio) {
        errs.push(ConfigError::new(
            format!("{path}.retries.budget_ratio"),
            "must be between 0 and 10",
        ));
    }
    let retries = Retries {
        attempts: r.attempts.unwrap_or(2).min(10),
        backoff: Duration::from_millis(r.backoff_ms.unwrap_or(25)),
        max_backoff: Duration::from_millis(r.max_backoff_ms.unwrap_or(1000)),
        budget_ratio,
        budget_min_per_s: r.budget_min_per_s.unwrap_or(10),
    };
    let circuit_breaker = u.circuit_breaker.as_ref().map(|b| {
        let error_rate = b.error_rate.map(|f| {
            if !(f > 0.0 && f <= 1.0) {
                errs.push(ConfigError::new(
                    format!("{path}.circuit_breaker.error_rate"),
                    "must be above 0 and at most 1",
                ));
            }
            (
                f,
                Duration::from_secs(b.window_s.unwrap_or(10).max(1)),
                b.min_requests.unwrap_or(20).max(1),
            )
        });
        CircuitBreaker {
            consecutive_failures: b.consecutive_failures.unwrap_or(5).max(1),
            error_rate,
            open_for: Duration::from_millis(b.open_ms.unwrap_or(5000).max(1)),
        }
    });
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Upstream {
        name: u.name.clone(),
        scheme,
        host,
        port,
        authority,
        base_path,
        tls,
        connect_timeout: ms(u.timeouts.connect_ms, 5_000),
        first_byte_timeout: ms(u.timeouts.first_byte_ms, 300_000),
        stream_idle_timeout: ms(u.timeouts.stream_idle_ms, 300_000),
        total_timeout: u.timeouts.total_ms.map(|v| Duration::from_millis(v.max(1))),
        write_timeout: ms(u.timeouts.write_ms, 30_000),
        pool_idle_timeout: ms(u.timeouts.pool_idle_ms, 60_000),
        retries,
        circuit_breaker,
        http2: u.http2,
        tenants: u.tenants.clone(),
        credential,
        tenant_credentials,
        llm_metadata: u.inject.llm_metadata,
        user_credentials: security::build_user_credentials(&u.inject),
        assertion_header: u
            .inject
            .assertion_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        assertion_reuse: Duration::from_secs(u.inject.assertion_reuse_s.unwrap_or(0).min(30)),
    })
}

/// Header names are RFC 9110 tokens.
fn is_bad_header_name(h: &str) -> bool {
    h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn build_routes(
    raw: &RawConfig,
    listeners: &[Listener],
    identity_enabled: bool,
    errs: &mut Vec<ConfigError>,
) -> Vec<Route> {
    let mut seen = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        check_name(&r.name, &format!("{path}.name"), &mut seen, errs);
        let mut ok = true;
        let p = r.path.trim_end_matches('/');
        let p = if p.is_empty() { "/" } else { p };
        if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) || r.path.contains("//") {
            errs.push(ConfigError::new(
                format!("{path}.path"),
                format!("`{}` must be an absolute path without query", r.path),
            ));
            ok = false;
        } else if paths.iter().any(|q| q == p) {
            errs.push(ConfigError::new(
                format!("{path}.path"),
                format!("`{p}` is already served by another route"),
            ));
            ok = false;
        }
        paths.push(p.to_owned());
        let upstream = raw.upstreams.iter().position(|u| u.name == r.upstream);
        if upstream.is_none() {
            errs.push(ConfigError::new(
                format!("{path}.upstream"),
                format!("unknown upstream `{}`", r.upstream),
            ));
            ok = false;
        }
        let transport = match r.transport.as_deref() {
            None | Some("streamable_http") => RouteTransport::StreamableHttp,
            Some("legacy_sse") => RouteTransport::LegacySse,
            Some("llm") => RouteTransport::Llm,
            Some(other) => {
                errs.push(ConfigError::new(
                    format!("{path}.transport"),
                    format!("`{other}` is not streamable_http, legacy_sse or llm"),
                ));
                ok = false;
                RouteTransport::StreamableHttp
            }
        };
        if let Some(ls) = &r.listeners {
            for (j, l) in ls.iter().enumerate() {
                if !listeners.iter().any(|x| &x.name == l) {
                    errs.push(ConfigError::new(
                        format!("{path}.listeners[{j}]"),
                        format!("unknown listener `{l}`"),
                    ));
                    ok = false;
                }
            }
        }
        let hosts = build_host_policy(r.hosts.as_ref());
        let auth_required = match r.auth.as_deref() {
            None => identity_enabled,
            Some("required") => {
                if !identity_enabled {
                    errs.push(ConfigError::new(
                        format!("{path}.auth"),
                        "`required` needs identity.api_keys or identity.jwt",
                    ));
                    ok = false;
                }
                true
            }
            Some("anonymous") => false,
            Some(other) => {
                errs.push(ConfigError::new(
                    format!("{path}.auth"),
                    format!("`{other}` is not required or anonymous"),
                ));
                ok = false;
                false
            }
        };
        let forward_unclassified = match r.unclassified_methods.as_deref() {
            None => !auth_required,
            Some("forward") => true,
            Some("refuse") => false,
            Some(other) => {
                errs.push(ConfigError::new(
                    format!("{path}.unclassified_methods"),
                    format!("`{other}` is not refuse or forward"),
                ));
                ok = false;
                false
            }
        };
        if let (true, Some(upstream)) = (ok, upstream) {
            out.push(Route {
                name: r.name.clone(),
                path: p.to_owned(),
                upstream,
                transport,
                hosts,
                listeners: r.listeners.clone(),
                auth_required,
                forward_unclassified,
            });
        }
    }
    out
}

fn build_host_policy(raw: Option<&RawHostPolicy>) -> HostPolicy {
    let any = |l: &Vec<String>| l.iter().any(|h| h == "*");
    let lower = |l: &Vec<String>| l.iter().map(|h| h.to_ascii_lowercase()).collect();
    let raw = raw.cloned().unwrap_or_default();
    let hosts = match &raw.allowed_hosts {
        Some(l) if any(l) => None,
        Some(l) => Some(lower(l)),
        None => Some(LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect()),
    };
    let origins = match &raw.allowed_origins {
        Some(l) if any(l) => None,
        Some(l) => Some(
            l.iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect(),
        ),
        None => Some(Vec::new()),
    };
    HostPolicy { hosts, origins }
}
