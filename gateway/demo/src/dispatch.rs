//! Method dispatch: what each JSON-RPC request method does, whatever transport carried it.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::catalog::{completion, prompts, resources};
use crate::jsonrpc::RpcError;
use crate::peer::Peer;
use crate::protocol;
use crate::session::{LogLevel, Session};
use crate::state::AppState;
use crate::tools;

/// Everything a handler may need about the request it serves.
pub struct RequestCtx {
    pub state: AppState,
    /// `None` for stateless (2026-07-28) requests.
    pub session: Option<Arc<Session>>,
    pub peer: Peer,
}

impl RequestCtx {
    pub fn is_stateless(&self) -> bool {
        self.session.is_none()
    }
}

/// Methods 2026-07-28 removed together with the session they acted on.
const SESSION_ONLY: [&str; 4] = [
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

const METHODS: [&str; 14] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

/// Lets the transport pick the HTTP status (404 for 2026-07-28) before it
/// commits to a streaming response.
pub fn is_known(method: &str, stateless: bool) -> bool {
    METHODS.contains(&method) && !(stateless && SESSION_ONLY.contains(&method))
}

pub async fn dispatch(ctx: &RequestCtx, method: &str, params: &Value) -> Result<Value, RpcError> {
    if !is_known(method, ctx.is_stateless()) {
        return Err(RpcError::method_not_found(method));
    }
    match method {
        "initialize" => {
            // The transport created the session and settled the revision.
            let version = ctx.session.as_ref().map_or_else(
                || protocol::negotiate(str_param(params, "protocolVersion")).to_owned(),
                |session| session.version(),
            );
            Ok(protocol::initialize_result(&version))
        }
        "ping" => Ok(json!({})),
        "server/discover" => Ok(protocol::discover_result()),
        "tools/list" => Ok(json!({ "tools": ctx.state.tool_list })),
        "tools/call" => tools::call(ctx, params).await,
        "resources/list" => Ok(resources::list()),
        "resources/templates/list" => Ok(resources::templates()),
        "resources/read" => {
            let uri = required_str(params, "uri")?;
            resources::read(&ctx.state, uri)
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let uri = required_str(params, "uri")?;
            if let Some(session) = &ctx.session {
                if method == "resources/subscribe" {
                    session.subscribe(uri);
                } else {
                    session.unsubscribe(uri);
                }
            }
            Ok(json!({}))
        }
        "prompts/list" => Ok(prompts::list()),
        "prompts/get" => {
            let name = required_str(params, "name")?;
            prompts::get(name, params.get("arguments").unwrap_or(&Value::Null))
        }
        "completion/complete" => completion::complete(params),
        "logging/setLevel" => {
            let name = required_str(params, "level")?;
            let level = LogLevel::parse(name)
                .ok_or_else(|| RpcError::invalid_params(format!("unknown log level {name:?}")))?;
            if let Some(session) = &ctx.session {
                session.set_log_level(level);
            }
            Ok(json!({}))
        }
        _ => Err(RpcError::method_not_found(method)),
    }
}

fn str_param<'a>(params: &'a Value, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

fn required_str<'a>(params: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    str_param(params, key)
        .ok_or_else(|| RpcError::invalid_params(format!("missing string param {key:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateless_requests_lose_session_only_methods() {
        assert!(is_known("ping", false));
        assert!(!is_known("ping", true));
        assert!(is_known("tools/call", true));
        assert!(!is_known("tools/frobnicate", false));
    }
}
