//! Compilation of the raw config into the model: `Snapshot::build` runs one
//! step per section (a file each, as in `raw`), collects every error with
//! its path, and returns them all at once; it never panics.

mod approvals;
mod audit;
mod check;
mod egress;
mod identity;
mod inject;
mod limits;
mod listeners;
mod llm;
pub(crate) mod policy;
mod rate_limits;
mod routes;
mod servers;
mod traces;
mod upstreams;

use sha2::{Digest, Sha256};

pub use rate_limits::parse_rate;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{RateLimits, Route, Snapshot, Version};
use crate::raw::RawConfig;
use check::{check_name, check_tenants, Known};

impl Snapshot {
    /// Validate `raw` and resolve it. `source` is hashed into the version.
    pub fn build(raw: &RawConfig, source: &[u8], generation: u64) -> Result<Self, ConfigErrors> {
        let mut errs = Vec::new();
        let hash = hex_prefix(&Sha256::digest(source));
        let listeners = listeners::build_listeners(&raw.listeners, &mut errs);
        let admin = listeners::build_admin(raw.admin.as_ref(), &mut errs);
        let limits = limits::build_limits(&raw.limits, &mut errs);
        let upstreams = upstreams::build_upstreams(&raw.upstreams, &mut errs);
        let identity = identity::build_identity(raw, &mut errs);
        let mut routes = routes::build_routes(raw, &listeners, identity.enabled, &mut errs);
        let mut warnings = Vec::new();
        let names: Vec<&str> = raw.upstreams.iter().map(|u| u.name.as_str()).collect();
        let policy = policy::compile(&raw.roles, &names, &mut errs, &mut warnings);
        check_tenant_names(raw, &mut errs);
        let audit = audit::build_audit(&raw.audit, &mut errs);
        let access_log = audit::build_access_log(raw.access_log.as_ref(), &mut errs);
        let traces = traces::build_traces(raw.traces.as_ref(), &mut errs);
        let egress = egress::build_egress(&raw.egress_allow, &mut errs);
        let (rate_limits, llm) = build_traffic(raw, &mut errs);
        let approvals =
            approvals::build_approvals(&raw.approvals, &names, identity.enabled, &mut errs);
        let upstream_names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let servers = servers::build_servers(&raw.servers, &upstream_names, &mut errs);
        let pins = servers::build_pins(&raw.pins, &upstream_names, &mut errs, &mut warnings);
        let session_keys: Vec<_> = raw
            .session_keys
            .iter()
            .enumerate()
            .map(|(i, k)| check::secret_ref(k, &format!("session_keys[{i}]"), &mut errs))
            .collect();
        check_http_upstreams(&servers, &routes, &upstream_names, &mut errs);
        routes.sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        let (grace_period, upgrade_sock) = limits::build_shutdown(&raw.shutdown);
        Ok(Snapshot {
            version: Version { generation, hash },
            listeners,
            admin,
            max_body_bytes: limits.max_body_bytes,
            max_body_bytes_held: limits.max_body_bytes_held,
            head_limits: limits.head_limits,
            max_json_depth: limits.max_json_depth,
            max_json_array_len: limits.max_json_array_len,
            max_json_string_len: limits.max_json_string_len,
            max_inspected_response_bytes: limits.max_inspected_response_bytes,
            client_read_timeout: limits.client_read_timeout,
            grace_period,
            upgrade_sock,
            upstreams,
            routes,
            identity,
            tenants: raw.tenants.clone(),
            policy,
            audit,
            access_log,
            traces,
            egress,
            rate_limits,
            llm,
            approvals,
            servers,
            pins,
            session_keys,
            warnings,
        })
    }
}

/// An upstream whose tools are HTTP requests is not an MCP server: no
/// route serves it and no source lists it as one.
fn check_http_upstreams(
    servers: &[crate::model::Server],
    routes: &[Route],
    names: &[String],
    errs: &mut Vec<ConfigError>,
) {
    let http: Vec<usize> = servers
        .iter()
        .flat_map(|s| &s.sources)
        .filter(|src| src.is_http())
        .map(|src| src.upstream)
        .collect();
    for &u in &http {
        let mcp_source = servers
            .iter()
            .flat_map(|s| &s.sources)
            .any(|src| src.upstream == u && !src.is_http());
        let route = routes.iter().any(|r| r.server.is_none() && r.upstream == u);
        if mcp_source || route {
            errs.push(ConfigError::new(
                format!("upstreams.{}", names[u]),
                "an upstream with http_tools is not an MCP server: no route or other source may use it",
            ));
        }
    }
}

/// Tenants named by upstreams (and their credentials) are configured;
/// tenant names are valid and unique.
fn check_tenant_names(raw: &RawConfig, errs: &mut Vec<ConfigError>) {
    for (i, u) in raw.upstreams.iter().enumerate() {
        let at = format!("upstreams[{i}]");
        check_tenants(&u.tenants, &raw.tenants, &format!("{at}.tenants"), errs);
        let named: Vec<String> = u
            .inject
            .tenant_credentials
            .iter()
            .map(|c| c.tenant.clone())
            .collect();
        let path = format!("{at}.inject.tenant_credentials");
        check_tenants(&named, &raw.tenants, &path, errs);
    }
    let mut seen = Vec::new();
    for (i, t) in raw.tenants.iter().enumerate() {
        check_name(t, &format!("tenants[{i}]"), &mut seen, errs);
    }
}

/// Rate and concurrency limits, and model traffic: their selectors may name
/// routes, tenants and roles.
fn build_traffic(raw: &RawConfig, errs: &mut Vec<ConfigError>) -> (RateLimits, crate::model::Llm) {
    let route_names: Vec<String> = raw.routes.iter().map(|r| r.name.clone()).collect();
    let role_names: Vec<String> = raw.roles.iter().map(|r| r.name.clone()).collect();
    let known = Known {
        routes: &route_names,
        tenants: &raw.tenants,
        roles: &role_names,
    };
    let rate_limits =
        rate_limits::build_rate_limits(&raw.rate_limits, &raw.concurrency_limits, &known, errs);
    let upstream_names: Vec<String> = raw.upstreams.iter().map(|u| u.name.clone()).collect();
    let has_store = raw.rate_limits.shared_store.is_some();
    let llm = llm::build_llm(
        &raw.llm,
        &upstream_names,
        &raw.tenants,
        (&known, has_store),
        errs,
    );
    (rate_limits, llm)
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
