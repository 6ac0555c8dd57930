//! MCP revision facts: supported versions, negotiation, headers and the server's self-description.

use serde_json::{json, Value};

/// The stateless revision: no `initialize`, no session, `_meta` on every request.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// What `initialize` answers when the client asks for something we don't know.
pub const LATEST_SESSION_VERSION: &str = "2025-11-25";
/// Revisions that use `initialize` and (over HTTP) a session.
pub const SESSION_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
/// Where a 2026-07-28 request names its revision inside `params._meta`.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Echo the client's revision when we speak it, else offer our latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|asked| SESSION_VERSIONS.iter().copied().find(|v| *v == asked))
        .unwrap_or(LATEST_SESSION_VERSION)
}

pub fn is_supported(version: &str) -> bool {
    version == STATELESS_VERSION || SESSION_VERSIONS.contains(&version)
}

/// Priming events (`id:` + empty `data:`) arrived in 2025-11-25 to make
/// streams resumable. Older clients try to parse the empty data as JSON
/// and report an error (so, like the TS SDK, we don't send them one), and
/// 2026-07-28 dropped resumption, leaving a priming event nothing to do.
pub fn sends_priming_event(version: &str) -> bool {
    (LATEST_SESSION_VERSION..STATELESS_VERSION).contains(&version)
}

/// The revision a request names in `params._meta`, if any.
pub fn meta_version(params: &Value) -> Option<&str> {
    params.get("_meta")?.get(META_VERSION)?.as_str()
}

pub fn server_info() -> Value {
    json!({
        "name": "sluice-demo",
        "title": "Sluice demo MCP server",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

pub fn capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "logging": {},
        "completions": {},
    })
}

const INSTRUCTIONS: &str = "Demo server for Sluice: conformance fixtures (test_*), \
echo, get-sum, payload, ticker, big-echo, slow and touch-resource.";

pub fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

/// `server/discover`: what a 2026-07-28 client asks instead of `initialize`.
/// `serverInfo` is given both at the top level and under `_meta`, the two
/// places drafts of the revision have put it.
pub fn discover_result() -> Value {
    let mut versions: Vec<&str> = SESSION_VERSIONS.to_vec();
    versions.push(STATELESS_VERSION);
    json!({
        "resultType": "complete",
        "supportedVersions": versions,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
        "_meta": { "io.modelcontextprotocol/serverInfo": server_info() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_known_and_defaults_unknown() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_SESSION_VERSION);
        assert_eq!(negotiate(Some(STATELESS_VERSION)), LATEST_SESSION_VERSION);
        assert_eq!(negotiate(None), LATEST_SESSION_VERSION);
    }

    #[test]
    fn priming_only_for_resumable_revisions() {
        assert!(!sends_priming_event("2025-06-18"));
        assert!(sends_priming_event("2025-11-25"));
        assert!(!sends_priming_event(STATELESS_VERSION));
    }

    #[test]
    fn discover_lists_the_stateless_revision() {
        let result = discover_result();
        let versions = result["supportedVersions"].as_array().expect("array");
        assert!(versions.contains(&json!(STATELESS_VERSION)));
        assert_eq!(result["serverInfo"]["name"], "sluice-demo");
    }
}
