//! Streamable HTTP on `/mcp` with sessions, in JSON and SSE response modes.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sluice_demo::DemoOptions;

#[tokio::test]
async fn json_mode_session_lifecycle_and_tools() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-06-18").await;
    assert_eq!(session.version, "2025-06-18");
    assert_eq!(session.id.len(), 32);

    let response = session
        .post(&call(
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!is_event_stream(&response));
    let message: Value = response.json().await.expect("json");
    assert_eq!(message["id"], 1);
    assert_eq!(tool_text(&message), "hi");

    let sum = session
        .request(
            2,
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 2, "b": 3}}),
        )
        .await;
    assert_eq!(tool_text(&sum), "5");

    let tools = session.request(3, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for expected in [
        "echo",
        "get-sum",
        "payload",
        "ticker",
        "big-echo",
        "slow",
        "test_simple_text",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    // Ticker has no stream to tick on in JSON mode: it answers at once.
    let ticker = session
        .request(
            4,
            "tools/call",
            json!({"name": "ticker", "arguments": {"count": 2}}),
        )
        .await;
    assert_eq!(tool_text(&ticker), "done 2");

    let deleted = client()
        .delete(server.url())
        .header(SESSION, &session.id)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let after = session.post(&call(5, "ping", json!({}))).await;
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn sse_mode_primes_then_streams_progress_before_the_result() {
    let server = start(DemoOptions {
        sse_interval_ms: 5,
        ..DemoOptions::default()
    })
    .await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let params =
        json!({"name": "ticker", "arguments": {"count": 3}, "_meta": {"progressToken": "tok"}});
    let response = session.post(&call(7, "tools/call", params)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok()),
        Some(session.id.as_str())
    );
    let events = read_all_events(response).await;

    // Priming first: an id and empty data.
    assert!(events[0].id.is_some());
    assert_eq!(events[0].data, "");
    let messages: Vec<Value> = events[1..]
        .iter()
        .map(|e| e.json().expect("json event"))
        .collect();
    assert!(events[1..]
        .iter()
        .all(|e| e.event.as_deref() == Some("message") && e.id.is_some()));
    assert_eq!(messages.len(), 4);
    for (tick, message) in messages[..3].iter().enumerate() {
        assert_eq!(message["method"], "notifications/progress");
        assert_eq!(message["params"]["progressToken"], "tok");
        assert_eq!(message["params"]["progress"], tick as u64 + 1);
        assert_eq!(message["params"]["total"], 3);
    }
    assert_eq!(messages[3]["id"], 7);
    assert_eq!(tool_text(&messages[3]), "done 3");
    server.shutdown().await;
}

#[tokio::test]
async fn older_revisions_get_no_priming_event() {
    let server = start(DemoOptions::default()).await;
    let session = Session::open(&server.url(), "2025-03-26").await;
    let events = read_all_events(session.post(&call(1, "ping", json!({}))).await).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].json().expect("json")["result"], json!({}));
    server.shutdown().await;
}

#[tokio::test]
async fn refusals_before_anything_runs() {
    let server = start(DemoOptions::default()).await;
    let url = server.url();
    let init = initialize_body("2025-11-25");

    // Without an Accept of its own, reqwest sends `*/*`: that names neither type.
    let no_accept = post(&url, None, &[], &init).await;
    assert_eq!(no_accept.status(), StatusCode::NOT_ACCEPTABLE);
    let html_only = post(&url, Some("text/html"), &[], &init).await;
    assert_eq!(html_only.status(), StatusCode::NOT_ACCEPTABLE);

    let unknown = post(
        &url,
        Some(BOTH),
        &[(SESSION, "0123456789abcdef0123456789abcdef")],
        &call(3, "ping", json!({})),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.expect("json-rpc error body");
    assert_eq!(body["id"], 3);

    let missing = post(&url, Some(BOTH), &[], &call(4, "tools/list", json!({}))).await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    let malformed = client()
        .post(&url)
        .header("accept", BOTH)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let body: Value = malformed.json().await.expect("json");
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_methods_and_batches() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-03-26").await;
    let unknown = session.request(9, "tools/frobnicate", json!({})).await;
    assert_eq!(unknown["id"], 9);
    assert_eq!(unknown["error"]["code"], -32601);

    let batch = json!([
        call(1, "ping", json!({})),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}},
        call(2, "tools/call", json!({"name": "echo", "arguments": {"message": "b"}})),
    ]);
    let replies: Value = session.post(&batch).await.json().await.expect("array");
    let replies = replies.as_array().expect("batch answered with an array");
    assert_eq!(replies.len(), 2);
    let echo = replies.iter().find(|r| r["id"] == 2).expect("reply to 2");
    assert_eq!(tool_text(echo), "b");

    let only_notes = json!([{"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}]);
    assert_eq!(
        session.post(&only_notes).await.status(),
        StatusCode::ACCEPTED
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_tools_are_invalid_params_and_failures_are_is_error() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let missing = session
        .request(1, "tools/call", json!({"name": "nope"}))
        .await;
    assert_eq!(missing["error"]["code"], -32602);
    let failing = session
        .request(2, "tools/call", json!({"name": "test_error_handling"}))
        .await;
    assert_eq!(failing["result"]["isError"], true);
    let bad_args = session
        .request(3, "tools/call", json!({"name": "echo", "arguments": {}}))
        .await;
    assert_eq!(bad_args["result"]["isError"], true);
    server.shutdown().await;
}

#[tokio::test]
async fn large_arguments_and_payloads_arrive_whole() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let data = format!("{}{}{}", "<", "m".repeat(100 * 1024), ">");
    let echoed = session
        .request(
            1,
            "tools/call",
            json!({"name": "big-echo", "arguments": {"data": data}}),
        )
        .await;
    let expected = format!(
        "len={} head=<{} tail={}>",
        data.len(),
        "m".repeat(15),
        "m".repeat(15)
    );
    assert_eq!(tool_text(&echoed), expected);
    let payload = session
        .request(
            2,
            "tools/call",
            json!({"name": "payload", "arguments": {"size": 2048}}),
        )
        .await;
    assert_eq!(tool_text(&payload), "x".repeat(2048));
    server.shutdown().await;
}

#[tokio::test]
async fn extra_tools_extend_the_list() {
    let server = start(DemoOptions {
        extra_tools: 200,
        ..json_mode()
    })
    .await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let tools = session.request(1, "tools/list", json!({})).await;
    let tools = tools["result"]["tools"].as_array().expect("tools");
    assert!(tools.len() >= 200);
    assert!(tools.iter().any(|t| t["name"] == "tool_199"));
    let echoed = session
        .request(
            2,
            "tools/call",
            json!({"name": "tool_042", "arguments": {"message": "m"}}),
        )
        .await;
    assert_eq!(tool_text(&echoed), "m");
    server.shutdown().await;
}

#[tokio::test]
async fn host_and_origin_are_checked_when_configured() {
    let server = start(DemoOptions {
        allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into()]),
        ..DemoOptions::default()
    })
    .await;
    let init = initialize_body("2025-11-25");
    let evil_origin = post(
        &server.url(),
        Some(BOTH),
        &[("origin", "http://evil.example.com")],
        &init,
    )
    .await;
    assert_eq!(evil_origin.status(), StatusCode::FORBIDDEN);
    let evil_host = post(
        &server.url(),
        Some(BOTH),
        &[("host", "evil.example.com")],
        &init,
    )
    .await;
    assert_eq!(evil_host.status(), StatusCode::FORBIDDEN);
    let local_origin = format!("http://{}", server.addr);
    let fine = post(
        &server.url(),
        Some(BOTH),
        &[("origin", &local_origin)],
        &init,
    )
    .await;
    assert_eq!(fine.status(), StatusCode::OK);
    // Health checks are not MCP traffic and stay reachable.
    let health = client()
        .get(format!("{}/healthz", server.base()))
        .header("host", "probe.internal")
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("body"), "ok");
    server.shutdown().await;
}
