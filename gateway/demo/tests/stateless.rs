//! The stateless 2026-07-28 revision on `/mcp`: discovery, sessionless calls, MRTR input requests.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_demo::DemoOptions;

const V2026: &str = "2026-07-28";

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": V2026,
        "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "0"},
    })
}

async fn stateless(url: &str, id: u64, method: &str, mut params: Value) -> reqwest::Response {
    params["_meta"] = meta();
    let headers = [("mcp-protocol-version", V2026), ("mcp-method", method)];
    post(url, Some(BOTH), &headers, &call(id, method, params)).await
}

#[tokio::test]
async fn discover_needs_no_session() {
    let server = start(json_mode()).await;
    // No version header at all: discovery is how a client learns what we speak.
    let response = post(
        &server.url(),
        Some(BOTH),
        &[],
        &call(1, "server/discover", json!({})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(SESSION).is_none());
    let message: Value = response.json().await.expect("json");
    let result = &message["result"];
    assert!(result["supportedVersions"]
        .as_array()
        .expect("versions")
        .contains(&json!(V2026)));
    assert_eq!(result["serverInfo"]["name"], "sluice-demo");
    assert!(result["capabilities"]["tools"].is_object());
    server.shutdown().await;
}

#[tokio::test]
async fn tools_call_without_a_session_in_both_body_types() {
    for opts in [json_mode(), DemoOptions::default()] {
        let server = start(opts).await;
        let params = json!({"name": "get-sum", "arguments": {"a": 40, "b": 2}});
        let response = stateless(&server.url(), 5, "tools/call", params).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(SESSION).is_none());
        let message = first_message(response).await;
        assert_eq!(message["id"], 5);
        assert_eq!(tool_text(&message), "42");
        assert_eq!(message["result"]["resultType"], "complete");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn meta_alone_marks_a_request_stateless() {
    let server = start(json_mode()).await;
    let body = call(1, "tools/list", json!({"_meta": meta()}));
    let response = post(&server.url(), Some(BOTH), &[], &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let message: Value = response.json().await.expect("json");
    assert!(message["result"]["tools"].is_array());
    server.shutdown().await;
}

#[tokio::test]
async fn get_and_delete_are_not_allowed() {
    let server = start(DemoOptions::default()).await;
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = client()
            .request(method, server.url())
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", V2026)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_methods_are_404_and_mismatched_headers_400() {
    let server = start(DemoOptions::default()).await;
    let unknown = stateless(&server.url(), 3, "ping", json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32601);
    assert_eq!(body["id"], 3);

    let mut params = json!({"name": "echo", "arguments": {"message": "x"}});
    params["_meta"] = meta();
    let headers = [
        ("mcp-protocol-version", V2026),
        ("mcp-method", "tools/list"),
    ];
    let mismatch = post(
        &server.url(),
        Some(BOTH),
        &headers,
        &call(4, "tools/call", params),
    )
    .await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    let body: Value = mismatch.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32020);
    server.shutdown().await;
}

#[tokio::test]
async fn sampling_asks_for_input_then_completes_on_retry() {
    let server = start(json_mode()).await;
    let arguments = json!({"prompt": "p"});
    let first = stateless(
        &server.url(),
        1,
        "tools/call",
        json!({"name": "test_sampling", "arguments": arguments}),
    )
    .await;
    let first: Value = first.json().await.expect("json");
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required");
    let (key, input) = result["inputRequests"]
        .as_object()
        .and_then(|requests| requests.iter().next())
        .expect("one input request");
    assert_eq!(input["method"], "sampling/createMessage");

    let retry = json!({
        "name": "test_sampling",
        "arguments": arguments,
        "inputResponses": { key.as_str(): {"role": "assistant", "content": {"type": "text", "text": "done"}, "model": "m"} },
        "requestState": result["requestState"],
    });
    let second: Value = stateless(&server.url(), 2, "tools/call", retry)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(second["result"]["resultType"], "complete");
    assert_eq!(tool_text(&second), "LLM response: done");
    server.shutdown().await;
}
