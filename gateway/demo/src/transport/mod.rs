//! HTTP transports: Streamable HTTP and stateless 2026-07-28 on `/mcp`, legacy HTTP+SSE on `/sse` + `/message`.

pub mod exec;
pub mod guard;
pub mod legacy;
mod mirror;
pub mod reply;
pub mod streamable;

use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::jsonrpc::{Incoming, INVALID_REQUEST, PARSE_ERROR};

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Which response bodies the client said it can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    pub json: bool,
    pub sse: bool,
}

impl Accepts {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut accepts = Accepts {
            json: false,
            sse: false,
        };
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            for range in value.split(',') {
                let media = range
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                // Wildcards do not count: like the reference SDK servers, the
                // client must name the body types it can parse (so a bare
                // `*/*`, reqwest's and curl's default, gets 406).
                match media.as_str() {
                    "application/json" => accepts.json = true,
                    "text/event-stream" => accepts.sse = true,
                    _ => {}
                }
            }
        }
        accepts
    }
}

/// A POST body: its messages and whether they came as a batch array.
pub struct Parsed {
    pub messages: Vec<Incoming>,
    pub batch: bool,
}

/// Why a body could not even be split into messages.
pub struct BodyError {
    pub code: i64,
    pub message: &'static str,
}

pub fn parse_body(body: &[u8]) -> Result<Parsed, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| BodyError {
        code: PARSE_ERROR,
        message: "Parse error: invalid JSON",
    })?;
    match value {
        Value::Array(items) if items.is_empty() => Err(BodyError {
            code: INVALID_REQUEST,
            message: "Invalid Request: empty batch",
        }),
        Value::Array(items) => Ok(Parsed {
            messages: items.into_iter().map(Incoming::classify).collect(),
            batch: true,
        }),
        single => Ok(Parsed {
            messages: vec![Incoming::classify(single)],
            batch: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accepts(value: &str) -> Accepts {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        Accepts::from_headers(&headers)
    }

    #[test]
    fn accept_lists_are_parsed_per_media_range() {
        let pair = |value: &str| {
            let accepts = accepts(value);
            (accepts.json, accepts.sse)
        };
        assert_eq!(pair("application/json, text/event-stream"), (true, true));
        assert_eq!(pair("text/event-stream;q=0.9"), (false, true));
        assert_eq!(pair("*/*"), (false, false));
        assert_eq!(pair("text/html"), (false, false));
        let none = Accepts::from_headers(&HeaderMap::new());
        assert_eq!((none.json, none.sse), (false, false));
    }

    #[test]
    fn bodies_split_into_messages() {
        assert!(parse_body(b"{").is_err_and(|e| e.code == PARSE_ERROR));
        assert!(parse_body(b"[]").is_err_and(|e| e.code == INVALID_REQUEST));
        let parsed = parse_body(
            br#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":1,"method":"b"}]"#,
        )
        .ok()
        .expect("batch");
        assert!(parsed.batch);
        assert_eq!(parsed.messages.len(), 2);
    }
}
