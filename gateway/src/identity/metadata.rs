//! OAuth discovery for MCP clients: the RFC 9728 protected-resource metadata
//! document and the `WWW-Authenticate` challenge that points to it.

/// The RFC 9728 metadata JSON for `resource`. Empty lists are omitted (both
/// members are optional in the RFC).
pub fn protected_resource_metadata(
    resource: &str,
    authorization_servers: &[String],
    scopes: &[String],
) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("resource".into(), resource.into());
    if !authorization_servers.is_empty() {
        doc.insert(
            "authorization_servers".into(),
            authorization_servers.to_vec().into(),
        );
    }
    if !scopes.is_empty() {
        doc.insert("scopes_supported".into(), scopes.to_vec().into());
    }
    // Tokens are only read from the Authorization header (never query/body).
    doc.insert("bearer_methods_supported".into(), vec!["header"].into());
    serde_json::Value::Object(doc).to_string()
}

/// Where RFC 9728 §3.1 puts the metadata for `resource`: the well-known
/// path inserted between the authority and the resource's path, e.g.
/// `https://gw.example/mcp` → `https://gw.example/.well-known/oauth-protected-resource/mcp`.
/// `None` if `resource` is not an absolute http(s) URL.
pub fn metadata_url(resource: &str) -> Option<String> {
    const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
    let (scheme, rest) = resource.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    // RFC 9728 §1.2: a resource identifier has no query or fragment.
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return None;
    }
    let path = path.trim_end_matches('/');
    Some(format!("{scheme}://{authority}{WELL_KNOWN}{path}"))
}

/// The `WWW-Authenticate` value for a 401/403: `Bearer
/// resource_metadata="…"` plus `, error="…"` when given (RFC 6750 codes
/// such as `invalid_token`, `insufficient_scope`).
pub fn www_authenticate(resource_metadata_url: &str, error: Option<&str>) -> String {
    let mut v = format!(
        "Bearer resource_metadata=\"{}\"",
        quoted(resource_metadata_url)
    );
    if let Some(e) = error {
        v.push_str(", error=\"");
        v.push_str(&quoted(e));
        v.push('"');
    }
    v
}

/// Content for an HTTP quoted-string: escape `"` and `\`, and drop control
/// characters so a value can never break out of the header line.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_document() {
        let doc = protected_resource_metadata(
            "https://gw.example/mcp",
            &["https://idp.example".to_string()],
            &["tools:read".to_string(), "tools:call".to_string()],
        );
        let v: serde_json::Value = serde_json::from_str(&doc).expect("ok");
        assert_eq!(v["resource"], "https://gw.example/mcp");
        assert_eq!(v["authorization_servers"][0], "https://idp.example");
        assert_eq!(v["scopes_supported"][1], "tools:call");
        assert_eq!(v["bearer_methods_supported"][0], "header");

        let bare: serde_json::Value =
            serde_json::from_str(&protected_resource_metadata("https://gw.example", &[], &[]))
                .expect("ok");
        assert!(bare.get("authorization_servers").is_none());
        assert!(bare.get("scopes_supported").is_none());
    }

    #[test]
    fn challenge_header() {
        let url = "https://gw.example/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            www_authenticate(url, None),
            format!("Bearer resource_metadata=\"{url}\"")
        );
        assert_eq!(
            www_authenticate(url, Some("invalid_token")),
            format!("Bearer resource_metadata=\"{url}\", error=\"invalid_token\"")
        );
        let evil = www_authenticate("https://x/\"\r\nSet-Cookie: a=b", Some("e\\"));
        assert!(!evil.contains('\r') && !evil.contains('\n'));
        assert!(evil.contains("\\\"") && evil.ends_with("error=\"e\\\\\""));
    }

    #[test]
    fn well_known_location() {
        assert_eq!(
            metadata_url("https://gw.example/mcp").as_deref(),
            Some("https://gw.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            metadata_url("https://gw.example:8443/").as_deref(),
            Some("https://gw.example:8443/.well-known/oauth-protected-resource")
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000/.well-known/oauth-protected-resource")
        );
        assert_eq!(metadata_url("gw.example/mcp"), None);
        assert_eq!(metadata_url("ftp://gw.example/mcp"), None);
    }
}
