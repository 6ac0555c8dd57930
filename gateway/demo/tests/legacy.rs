//! The legacy 2024-11-05 HTTP+SSE transport: `/sse` announces `/message`, answers come back on the stream.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use sluice_demo::DemoOptions;

#[tokio::test]
async fn endpoint_event_then_responses_on_the_stream() {
    let server = start(DemoOptions::default()).await;
    let opened = client()
        .get(format!("{}/sse", server.base()))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /sse");
    assert_eq!(opened.status(), StatusCode::OK);
    let mut stream = EventReader::new(opened);
    let endpoint = stream.next().await.expect("endpoint event");
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
    assert!(endpoint.data.starts_with("/message?sessionId="));
    let message_url = format!("{}{}", server.base(), endpoint.data);

    let accepted = post(&message_url, None, &[], &initialize_body("2024-11-05")).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let initialized = stream.next().await.expect("initialize response");
    assert_eq!(initialized.event.as_deref(), Some("message"));
    let initialized = initialized.json().expect("json");
    assert_eq!(initialized["result"]["protocolVersion"], "2024-11-05");

    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(&message_url, None, &[], &note).await.status(),
        StatusCode::ACCEPTED
    );
    let echo = call(
        1,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "legacy"}}),
    );
    assert_eq!(
        post(&message_url, None, &[], &echo).await.status(),
        StatusCode::ACCEPTED
    );
    let reply = stream.next_message().await.expect("echo response");
    assert_eq!(reply["id"], 1);
    assert_eq!(tool_text(&reply), "legacy");
    server.shutdown().await;
}

#[tokio::test]
async fn closing_the_stream_ends_the_session() {
    let server = start(DemoOptions::default()).await;
    let opened = client()
        .get(format!("{}/sse", server.base()))
        .send()
        .await
        .expect("GET /sse");
    let mut stream = EventReader::new(opened);
    let endpoint = stream.next().await.expect("endpoint event");
    let message_url = format!("{}{}", server.base(), endpoint.data);
    drop(stream);
    // The server notices the disconnect when it next touches the stream;
    // poll until it has, bounded, instead of sleeping a guessed time.
    let ping = call(1, "ping", json!({}));
    let mut status = StatusCode::ACCEPTED;
    for _ in 0..200 {
        status = post(&message_url, None, &[], &ping).await.status();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, StatusCode::NOT_FOUND);

    let unknown = post(
        &format!("{}/message?sessionId=nope", server.base()),
        None,
        &[],
        &ping,
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.shutdown().await;
}
