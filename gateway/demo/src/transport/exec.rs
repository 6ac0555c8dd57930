//! Running the messages of one POST: requests as cancellable work, notifications and client responses in place.

use serde_json::{json, Value};

use crate::dispatch::{dispatch, RequestCtx};
use crate::jsonrpc::{self, id_key, RpcError};
use crate::session::Session;

/// Runs one request and builds its response message; `None` when the client
/// cancelled it (a cancelled request gets no response).
pub async fn run_request(
    ctx: RequestCtx,
    id: Value,
    method: String,
    params: Value,
) -> Option<Value> {
    tracing::debug!(%method, id = %id, session = ctx.session.as_ref().map(|s| s.id.as_str()), "request");
    let stateless = ctx.is_stateless();
    let work = async {
        match dispatch(&ctx, &method, &params).await {
            Ok(mut result) => {
                if stateless {
                    mark_stateless(&method, &mut result);
                }
                jsonrpc::success(&id, result)
            }
            Err(error) => jsonrpc::failure(&id, &error),
        }
    };
    // Stateless requests have no session to carry a cancellation: closing
    // the response stream is their cancel, and that drops nothing here on
    // purpose (a disconnect must not be mistaken for a cancel).
    let Some(session) = ctx.session.clone() else {
        return Some(work.await);
    };
    let key = id_key(&id);
    let (ticket, cancel) = session.start_request(key.clone());
    let outcome = tokio::select! {
        response = work => Some(response),
        () = cancelled(cancel) => {
            tracing::debug!(%method, id = %id, "request cancelled by the client");
            None
        }
    };
    session.finish_request(&key, ticket);
    outcome
}

/// Resolves only on a real cancellation: a dropped sender (the entry was
/// replaced or the session ended) is not one.
async fn cancelled(cancel: tokio::sync::oneshot::Receiver<()>) {
    if cancel.await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// 2026-07-28 results whose responses a client or gateway may cache.
const CACHEABLE: [&str; 6] = [
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "server/discover",
    "tools/list",
];

/// 2026-07-28 results say whether they are final (`complete`) or ask for
/// input, and cacheable ones carry a cache hint. The hint is "stale at
/// once": `touch-resource` changes content, and a demo must not teach a
/// gateway's tests to rely on stale caches.
fn mark_stateless(method: &str, result: &mut Value) {
    let Value::Object(fields) = result else {
        return;
    };
    fields
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        fields.entry("ttlMs").or_insert_with(|| json!(0));
        fields
            .entry("cacheScope")
            .or_insert_with(|| json!("public"));
    }
}

pub fn handle_notification(session: Option<&Session>, method: &str, params: &Value) {
    match (method, session) {
        ("notifications/cancelled", Some(session)) => {
            if let Some(request_id) = params.get("requestId") {
                session.cancel_request(&id_key(request_id));
            }
        }
        _ => tracing::debug!(%method, "notification"),
    }
}

/// A client's answer to a server→client request, matched by id.
pub fn handle_response(session: Option<&Session>, id: &Value, message: Value) {
    let delivered = session.is_some_and(|session| session.deliver_response(&id_key(id), message));
    if !delivered {
        tracing::debug!(id = %id, "response to no pending request");
    }
}

/// A response for a message that could not be run.
pub fn invalid(id: &Value, reason: &str) -> Value {
    jsonrpc::failure(
        id,
        &RpcError::new(
            jsonrpc::INVALID_REQUEST,
            format!("Invalid Request: {reason}"),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateless_results_are_marked_complete_unless_they_say_otherwise() {
        let mut plain = json!({"tools": []});
        mark_stateless("tools/list", &mut plain);
        assert_eq!(plain["resultType"], "complete");
        assert_eq!(plain["ttlMs"], 0);
        assert_eq!(plain["cacheScope"], "public");
        let mut asking = json!({"resultType": "input_required"});
        mark_stateless("tools/call", &mut asking);
        assert_eq!(asking, json!({"resultType": "input_required"}));
    }
}
