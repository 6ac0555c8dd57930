//! JSON-RPC 2.0 framing: sorting incoming messages into kinds and building replies.

use serde_json::{json, Map, Value};

/// The body was not JSON at all.
pub const PARSE_ERROR: i64 = -32700;
/// JSON, but not a JSON-RPC message we can act on.
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// The spec's own code for `resources/read` of an unknown URI.
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// 2026-07-28: an `Mcp-Method` / `Mcp-Name` header disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// One message of a POST body, by what the receiver must do with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Needs a response carrying `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// Fire and forget.
    Notification { method: String, params: Value },
    /// The client answering a request the server sent (sampling, elicitation).
    Response { id: Value, message: Value },
    /// Unusable; answered with -32600 and whatever id could be recovered.
    Invalid { id: Value, reason: &'static str },
}

impl Incoming {
    /// Sorts one decoded JSON value; never fails, bad shapes become `Invalid`.
    pub fn classify(message: Value) -> Incoming {
        let Value::Object(mut object) = message else {
            return Incoming::Invalid {
                id: Value::Null,
                reason: "a JSON-RPC message must be an object",
            };
        };
        let id = object.get("id").cloned();
        let valid_id = matches!(id, Some(Value::String(_) | Value::Number(_)));
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Incoming::Invalid {
                id: id.filter(|_| valid_id).unwrap_or(Value::Null),
                reason: "jsonrpc must be \"2.0\"",
            };
        }
        match (object.remove("method"), id) {
            (Some(Value::String(method)), None) => Incoming::Notification {
                method,
                params: take_params(&mut object),
            },
            (Some(Value::String(method)), Some(id)) if valid_id => Incoming::Request {
                id,
                method,
                params: take_params(&mut object),
            },
            (Some(_), id) => Incoming::Invalid {
                id: id.filter(|_| valid_id).unwrap_or(Value::Null),
                reason: "method must be a string and id a string or number",
            },
            (None, Some(id)) if object.contains_key("result") || object.contains_key("error") => {
                object.insert("id".to_owned(), id.clone());
                Incoming::Response {
                    id,
                    message: Value::Object(object),
                }
            }
            (None, id) => Incoming::Invalid {
                id: id.filter(|_| valid_id).unwrap_or(Value::Null),
                reason: "neither a request, a notification nor a response",
            },
        }
    }
}

fn take_params(object: &mut Map<String, Value>) -> Value {
    object
        .remove("params")
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// A protocol-level failure: the call never ran (compare `isError` results).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }
}

pub fn success(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub fn failure(id: &Value, error: &RpcError) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": error.code, "message": error.message },
    })
}

pub fn request(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// A map key for an id: `1` and `"1"` are different ids and stay different.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_kind() {
        let request = Incoming::classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"}));
        assert_eq!(
            request,
            Incoming::Request {
                id: json!(1),
                method: "ping".into(),
                params: json!({})
            }
        );
        let note =
            Incoming::classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert!(matches!(note, Incoming::Notification { .. }));
        let response = Incoming::classify(json!({"jsonrpc":"2.0","id":"s-1","result":{}}));
        assert!(matches!(response, Incoming::Response { id, .. } if id == json!("s-1")));
    }

    #[test]
    fn bad_shapes_are_invalid_and_keep_a_usable_id() {
        assert!(matches!(
            Incoming::classify(json!([1])),
            Incoming::Invalid {
                id: Value::Null,
                ..
            }
        ));
        assert!(matches!(
            Incoming::classify(json!({"id": 7, "method": "ping"})),
            Incoming::Invalid { id, .. } if id == json!(7)
        ));
        assert!(matches!(
            Incoming::classify(json!({"jsonrpc":"2.0","id": {"x":1}, "method": "ping"})),
            Incoming::Invalid {
                id: Value::Null,
                ..
            }
        ));
    }

    #[test]
    fn id_keys_distinguish_numbers_from_strings() {
        assert_ne!(id_key(&json!(1)), id_key(&json!("1")));
    }
}
