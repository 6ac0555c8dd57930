//! DNS-rebinding protection: with `allowed_hosts` set, `Host` and any `Origin` must name an allowed host.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::reply;
use crate::jsonrpc::INVALID_REQUEST;
use crate::state::AppState;

pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(allowed) = &state.opts.allowed_hosts {
        if let Err(why) = verify(allowed, request.headers(), request.uri()) {
            tracing::warn!(%why, "refused by host/origin check");
            return reply::rpc_error(
                StatusCode::FORBIDDEN,
                &Value::Null,
                INVALID_REQUEST,
                &format!("Forbidden: {why}"),
            );
        }
    }
    next.run(request).await
}

fn verify(allowed: &[String], headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
    // HTTP/2 carries the authority in the URI instead of a Host header.
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()))
        .ok_or("no Host header")?;
    if !is_allowed(allowed, host) {
        return Err(format!("host {host:?} is not allowed"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| "unreadable Origin header")?;
        // `null` (sandboxed or file pages) has no host and is refused like any stranger.
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
            .ok_or_else(|| format!("origin {origin:?} is not allowed"))?;
        if !is_allowed(allowed, authority) {
            return Err(format!("origin {origin:?} is not allowed"));
        }
    }
    Ok(())
}

/// An entry matches the bare host (any port) or the exact `host:port`.
fn is_allowed(allowed: &[String], authority: &str) -> bool {
    let authority = authority.to_ascii_lowercase();
    let host = host_part(&authority);
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        entry == authority || unbracket(&entry) == host
    })
}

fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn allowed() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]
    }

    fn check(host: &str, origin: Option<&str>) -> Result<(), String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).expect("header"));
        if let Some(origin) = origin {
            headers.insert(
                header::ORIGIN,
                HeaderValue::from_str(origin).expect("header"),
            );
        }
        verify(&allowed(), &headers, &Uri::from_static("/mcp"))
    }

    #[test]
    fn local_names_with_any_port_pass() {
        assert!(check("127.0.0.1:9100", None).is_ok());
        assert!(check("LOCALHOST", Some("http://localhost:3000")).is_ok());
        assert!(check("[::1]:80", Some("http://[::1]:80")).is_ok());
    }

    #[test]
    fn foreign_hosts_and_origins_are_refused() {
        assert!(check("evil.example.com", None).is_err());
        assert!(check("127.0.0.1:9100", Some("http://evil.example.com")).is_err());
        assert!(check("127.0.0.1", Some("null")).is_err());
        assert!(check("localhost.evil.example.com", None).is_err());
    }

    #[test]
    fn entries_with_a_port_match_only_that_port() {
        let allowed = vec!["localhost:9100".to_owned()];
        assert!(is_allowed(&allowed, "localhost:9100"));
        assert!(!is_allowed(&allowed, "localhost:9200"));
    }
}
