//! 2026-07-28 mirrored headers: `Mcp-Method` and `Mcp-Name` must agree with the body they summarise.
//!
//! Intermediaries route on these headers without parsing bodies, so a
//! mismatch is a request that could be authorised as one thing and run as
//! another: it is refused (HTTP 400, -32020). A missing header is tolerated
//! so simple clients and older gateways still get through.

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::Value;

use super::header_str;
use crate::jsonrpc::Incoming;
use crate::protocol::{METHOD_HEADER, NAME_HEADER};

pub fn check(headers: &HeaderMap, messages: &[Incoming]) -> Result<(), String> {
    let (method, params) = match messages {
        [Incoming::Request { method, params, .. }]
        | [Incoming::Notification { method, params }] => (method.as_str(), params),
        _ => return Ok(()),
    };
    if let Some(claimed) = header_str(headers, METHOD_HEADER) {
        if claimed != method {
            return Err(format!(
                "Mcp-Method {claimed:?} does not match method {method:?}"
            ));
        }
    }
    let Some(raw) = header_str(headers, NAME_HEADER) else {
        return Ok(());
    };
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    let claimed = decode(raw).ok_or_else(|| format!("Mcp-Name {raw:?} is not decodable"))?;
    let actual = params.get(field).and_then(Value::as_str).unwrap_or("");
    if claimed != actual {
        return Err(format!(
            "Mcp-Name {claimed:?} does not match {field} {actual:?}"
        ));
    }
    Ok(())
}

/// Plain ASCII, or `=?base64?…?=` for names that are not.
fn decode(raw: &str) -> Option<String> {
    match raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn call(name: &str) -> Vec<Incoming> {
        vec![Incoming::Request {
            id: json!(1),
            method: "tools/call".into(),
            params: json!({ "name": name }),
        }]
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        headers
    }

    #[test]
    fn matching_or_missing_headers_pass() {
        assert!(check(&HeaderMap::new(), &call("echo")).is_ok());
        let ok = headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
        assert!(check(&ok, &call("echo")).is_ok());
    }

    #[test]
    fn mismatches_are_refused() {
        assert!(check(&headers(&[("mcp-method", "tools/list")]), &call("echo")).is_err());
        assert!(check(&headers(&[("mcp-name", "get-sum")]), &call("echo")).is_err());
    }

    #[test]
    fn base64_names_are_decoded() {
        // Non-ASCII names travel encoded.
        let encoded = base64::engine::general_purpose::STANDARD.encode("écho");
        let value = format!("=?base64?{encoded}?=");
        assert!(check(&headers(&[("mcp-name", &value)]), &call("écho")).is_ok());
    }
}
