//! Builds the `routes` section: path prefixes checked and normalised, each
//! route's upstream, transport, listeners, authentication and Host/Origin
//! lists resolved.

use super::check::check_name;
use crate::error::ConfigError;
use crate::model::{HostPolicy, Listener, Route, RouteTransport, ToolState};
use crate::raw::{RawConfig, RawHostPolicy, RawRoute, RawToolState};

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Routes in file order (the caller sorts them for matching); a route with
/// any error is left out, its errors reported.
pub(crate) fn build_routes(
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
        let p = route_path(r, &paths, &path, errs);
        paths.push(normal_path(&r.path).to_owned());
        let (upstream, server) = route_target(raw, r, &path, errs);
        let transport = route_transport(r.transport.as_deref(), &path, errs);
        if server.is_some() && transport != Some(RouteTransport::StreamableHttp) {
            errs.push(ConfigError::new(
                format!("{path}.transport"),
                "a virtual server is served over streamable_http",
            ));
        }
        if let (Some(RouteTransport::Llm), Some(u)) = (transport, upstream) {
            if raw.upstreams[u].inject.token_exchange.is_some() {
                errs.push(ConfigError::new(
                    format!("{path}.upstream"),
                    "token_exchange acts as the caller toward MCP upstreams; a model route's upstream takes its own credential",
                ));
            }
        }
        let listeners_ok = check_listeners(r, listeners, &path, errs);
        let hosts = build_host_policy(r.hosts.as_ref());
        let auth_required = route_auth(r.auth.as_deref(), identity_enabled, &path, errs);
        let forward_unclassified = forward_unclassified(
            r.unclassified_methods.as_deref(),
            auth_required.unwrap_or(true),
            &path,
            errs,
        );
        if let (Some(p), Some(upstream), Some(transport), true, Some(auth_required), Some(fwd)) = (
            p,
            upstream,
            transport,
            listeners_ok,
            auth_required,
            forward_unclassified,
        ) {
            let serves = build_serves(r, server.is_some(), &path, errs);
            out.push(Route {
                name: r.name.clone(),
                path: p,
                upstream,
                server,
                transport,
                hosts,
                listeners: r.listeners.clone(),
                auth_required,
                forward_unclassified: fwd,
                serves,
            });
        }
    }
    out
}

/// What the route serves: `(upstream, server)`. A server route's upstream
/// is its first source's (the upstream its labels and per-route limits
/// name); exactly one of `upstream` and `server` is given.
fn route_target(
    raw: &RawConfig,
    r: &RawRoute,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> (Option<usize>, Option<usize>) {
    let find = |name: &str| raw.upstreams.iter().position(|u| u.name == name);
    match (&r.upstream, &r.server) {
        (Some(u), None) => {
            let i = find(u);
            match i.map(|i| raw.upstreams[i].transport.as_deref()) {
                None => errs.push(ConfigError::new(
                    format!("{path}.upstream"),
                    format!("unknown upstream `{u}`"),
                )),
                Some(Some("legacy_sse")) => errs.push(ConfigError::new(
                    format!("{path}.upstream"),
                    format!(
                        "`{u}` speaks legacy_sse: serve it as a virtual server's source (or route to its base URL with the route's `transport: legacy_sse`)"
                    ),
                )),
                Some(_) => {}
            }
            (i, None)
        }
        (None, Some(s)) => {
            let Some(k) = raw.servers.iter().position(|x| x.name == *s) else {
                errs.push(ConfigError::new(
                    format!("{path}.server"),
                    format!("unknown server `{s}`"),
                ));
                return (None, None);
            };
            let first = raw.servers[k]
                .sources
                .first()
                .and_then(|src| find(&src.upstream));
            (first, first.map(|_| k))
        }
        _ => {
            errs.push(ConfigError::new(
                format!("{path}.upstream"),
                "a route serves one `upstream` or one `server`",
            ));
            (None, None)
        }
    }
}

/// The tool states a server route serves: default published and
/// deprecated; never disabled; only on a server route.
fn build_serves(
    r: &RawRoute,
    server: bool,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Vec<ToolState> {
    let Some(states) = &r.serves else {
        return vec![ToolState::Published, ToolState::Deprecated];
    };
    if !server {
        errs.push(ConfigError::new(
            format!("{path}.serves"),
            "only a route to a virtual server serves tool states",
        ));
    }
    if states.contains(&RawToolState::Disabled) {
        errs.push(ConfigError::new(
            format!("{path}.serves"),
            "a disabled tool is served nowhere",
        ));
    }
    states
        .iter()
        .map(|s| super::servers::tool_state(*s))
        .collect()
}

/// `/mcp/` → `/mcp`; `/` stays `/`.
fn normal_path(raw: &str) -> &str {
    let p = raw.trim_end_matches('/');
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

/// The route's normalised path: absolute, without query, not taken.
fn route_path(
    r: &RawRoute,
    taken: &[String],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<String> {
    let p = normal_path(&r.path);
    if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) || r.path.contains("//") {
        errs.push(ConfigError::new(
            format!("{path}.path"),
            format!("`{}` must be an absolute path without query", r.path),
        ));
        None
    } else if taken.iter().any(|q| q == p) {
        errs.push(ConfigError::new(
            format!("{path}.path"),
            format!("`{p}` is already served by another route"),
        ));
        None
    } else {
        Some(p.to_owned())
    }
}

fn route_transport(
    raw: Option<&str>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<RouteTransport> {
    match raw {
        None | Some("streamable_http") => Some(RouteTransport::StreamableHttp),
        Some("legacy_sse") => Some(RouteTransport::LegacySse),
        Some("llm") => Some(RouteTransport::Llm),
        Some(other) => {
            errs.push(ConfigError::new(
                format!("{path}.transport"),
                format!("`{other}` is not streamable_http, legacy_sse or llm"),
            ));
            None
        }
    }
}

/// Every listener the route names exists.
fn check_listeners(
    r: &RawRoute,
    listeners: &[Listener],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> bool {
    let mut ok = true;
    for (j, l) in r.listeners.iter().flatten().enumerate() {
        if !listeners.iter().any(|x| &x.name == l) {
            errs.push(ConfigError::new(
                format!("{path}.listeners[{j}]"),
                format!("unknown listener `{l}`"),
            ));
            ok = false;
        }
    }
    ok
}

/// Must callers authenticate? `required` needs identity.
fn route_auth(
    raw: Option<&str>,
    identity_enabled: bool,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<bool> {
    match raw {
        None => Some(identity_enabled),
        Some("required") if identity_enabled => Some(true),
        Some("required") => {
            errs.push(ConfigError::new(
                format!("{path}.auth"),
                "`required` needs identity.api_keys or identity.jwt",
            ));
            None
        }
        Some("anonymous") => Some(false),
        Some(other) => {
            errs.push(ConfigError::new(
                format!("{path}.auth"),
                format!("`{other}` is not required or anonymous"),
            ));
            None
        }
    }
}

/// Forward methods the gateway does not classify? By default only when
/// callers need not authenticate.
fn forward_unclassified(
    raw: Option<&str>,
    auth_required: bool,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<bool> {
    match raw {
        None => Some(!auth_required),
        Some("forward") => Some(true),
        Some("refuse") => Some(false),
        Some(other) => {
            errs.push(ConfigError::new(
                format!("{path}.unclassified_methods"),
                format!("`{other}` is not refuse or forward"),
            ));
            None
        }
    }
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
