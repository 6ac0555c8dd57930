//! HTTP responses that carry no stream: JSON bodies, JSON-RPC errors with a status, 202 and 405.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::jsonrpc::{self, RpcError, INVALID_REQUEST};
use crate::protocol::SESSION_HEADER;

pub fn json(status: StatusCode, body: &Value, session_id: Option<&str>) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = session_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// A refusal at the HTTP level that still tells a JSON-RPC client why,
/// keeping the request id when one is known.
pub fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json(
        status,
        &jsonrpc::failure(id, &RpcError::new(code, message)),
        None,
    )
}

/// A request refused before anything ran, as a value handlers can `?`.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, id: &Value, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            id: id.clone(),
            code,
            message: message.into(),
        }
    }

    /// 400 with -32600: the commonest refusal.
    pub fn bad_request(id: &Value, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, id, INVALID_REQUEST, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        rpc_error(self.status, &self.id, self.code, &self.message)
    }
}

/// Notifications and client responses: accepted, nothing to say.
pub fn accepted() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

pub fn method_not_allowed(why: &str) -> Response {
    let mut response = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &Value::Null,
        INVALID_REQUEST,
        why,
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}
