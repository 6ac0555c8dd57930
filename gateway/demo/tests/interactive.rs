//! Server→client traffic: sampling answered by a POSTed response, the standalone GET stream, cancellation.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use sluice_demo::DemoOptions;

#[tokio::test]
async fn sampling_request_travels_on_the_post_stream_and_the_answer_comes_back_as_a_post() {
    let server = start(DemoOptions::default()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let params = json!({"name": "test_sampling", "arguments": {"prompt": "Say hi"}});
    let mut stream = EventReader::new(session.post(&call(1, "tools/call", params)).await);

    let request = stream.next_message().await.expect("sampling request");
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(
        request["params"]["messages"][0]["content"]["text"],
        "Say hi"
    );
    let answer = json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "hello"}, "model": "m"},
    });
    assert_eq!(session.post(&answer).await.status(), StatusCode::ACCEPTED);

    let result = stream.next_message().await.expect("tool result");
    assert_eq!(result["id"], 1);
    assert_eq!(tool_text(&result), "LLM response: hello");
    assert!(
        stream.next().await.is_none(),
        "stream ends after the response"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn elicitation_reports_the_users_answer() {
    let server = start(DemoOptions::default()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let params = json!({"name": "test_elicitation", "arguments": {"message": "Who are you?"}});
    let mut stream = EventReader::new(session.post(&call(1, "tools/call", params)).await);
    let request = stream.next_message().await.expect("elicitation request");
    assert_eq!(request["method"], "elicitation/create");
    let answer = json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "result": {"action": "accept", "content": {"username": "u", "email": "e@x"}},
    });
    assert_eq!(session.post(&answer).await.status(), StatusCode::ACCEPTED);
    let result = stream.next_message().await.expect("tool result");
    assert!(tool_text(&result).starts_with("User response: action=accept"));
    server.shutdown().await;
}

#[tokio::test]
async fn subscribed_updates_arrive_on_the_standalone_stream() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let get = client()
        .get(server.url())
        .header("accept", "text/event-stream")
        .header(SESSION, &session.id)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(get.status(), StatusCode::OK);
    let mut standalone = EventReader::new(get);
    let priming = standalone.next().await.expect("priming event");
    assert_eq!(priming.data, "");

    let uri = "test://watched-resource";
    let subscribed = session
        .request(1, "resources/subscribe", json!({"uri": uri}))
        .await;
    assert_eq!(subscribed["result"], json!({}));
    let touched = session
        .request(
            2,
            "tools/call",
            json!({"name": "touch-resource", "arguments": {"uri": uri}}),
        )
        .await;
    assert_eq!(tool_text(&touched), "notified 1 subscriber(s)");
    let update = standalone.next_message().await.expect("update");
    assert_eq!(update["method"], "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], uri);

    let read = session
        .request(3, "resources/read", json!({"uri": uri}))
        .await;
    assert!(read["result"]["contents"][0]["text"]
        .as_str()
        .is_some_and(|t| t.ends_with("version 2")));

    // Ending the session ends its standalone stream.
    let deleted = client()
        .delete(server.url())
        .header(SESSION, &session.id)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    assert!(standalone.next().await.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn json_mode_sends_call_notifications_on_the_standalone_stream() {
    let server = start(json_mode()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let get = client()
        .get(server.url())
        .header("accept", "text/event-stream")
        .header(SESSION, &session.id)
        .send()
        .await
        .expect("GET stream");
    let mut standalone = EventReader::new(get);
    assert!(standalone.next().await.is_some(), "priming event");
    let result = session
        .request(1, "tools/call", json!({"name": "test_tool_with_logging"}))
        .await;
    assert_eq!(
        tool_text(&result),
        "Tool with logging executed successfully"
    );
    for expected in [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ] {
        let log = standalone.next_message().await.expect("log message");
        assert_eq!(log["method"], "notifications/message");
        assert_eq!(log["params"]["data"], expected);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn cancelled_requests_end_without_a_response() {
    let server = start(DemoOptions {
        sse_interval_ms: 20,
        ..DemoOptions::default()
    })
    .await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let params =
        json!({"name": "ticker", "arguments": {"count": 10000}, "_meta": {"progressToken": 1}});
    let mut stream = EventReader::new(session.post(&call(42, "tools/call", params)).await);
    // A progress event proves the call is running (and so cancellable).
    let progress = stream.next_message().await.expect("progress");
    assert_eq!(progress["method"], "notifications/progress");
    let cancel =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 42}});
    assert_eq!(session.post(&cancel).await.status(), StatusCode::ACCEPTED);
    while let Some(message) = stream.next_message().await {
        assert_ne!(message["id"], 42, "a cancelled request gets no response");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_closed_stream_resumes_with_last_event_id() {
    let server = start(DemoOptions::default()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    for (id, delay_ms) in [(1, 0), (2, 100)] {
        let params = json!({"name": "test_reconnection", "arguments": {"delay_ms": delay_ms}});
        let events = read_all_events(session.post(&call(id, "tools/call", params)).await).await;
        // The server closed the stream after priming, before any answer.
        assert_eq!(events.len(), 1);
        let last = events[0].id.clone().expect("priming id");
        let resumed = client()
            .get(server.url())
            .header("accept", "text/event-stream")
            .header(SESSION, &session.id)
            .header("last-event-id", &last)
            .send()
            .await
            .expect("GET with Last-Event-ID");
        assert_eq!(resumed.status(), StatusCode::OK);
        let mut stream = EventReader::new(resumed);
        let answer = stream
            .next_message()
            .await
            .expect("answer on the resumed stream");
        assert_eq!(answer["id"], id);
        assert_eq!(
            tool_text(&answer),
            "Reconnection test completed successfully"
        );
        assert!(
            stream.next().await.is_none(),
            "the resumed stream ends with the call"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let server = start(DemoOptions::default()).await;
    let session = Session::open(&server.url(), "2025-11-25").await;
    let get = client()
        .get(server.url())
        .header("accept", "text/event-stream")
        .header(SESSION, &session.id)
        .send()
        .await
        .expect("GET stream");
    let mut standalone = EventReader::new(get);
    assert!(standalone.next().await.is_some());
    server.shutdown().await;
    assert!(standalone.next().await.is_none());
}
