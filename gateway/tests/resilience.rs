//! Upstream resilience through the real gateway against a faulty upstream:
//! timeouts (first byte, idle stream, whole call), connect retries within a
//! budget, never retrying a call whose bytes reached the upstream (a GET or
//! DELETE on a stale pooled connection is tried once more), the circuit
//! breaker, an upstream that dies mid-stream, and a client that goes away.

mod support;

use futures::StreamExt;
use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;

/// Routes `/mcp` to the faulty upstream (with `settings` inside its entry)
/// and `/ok` to a healthy upstream.
fn config(fault: &str, settings: &str, healthy: &str, extra: &str) -> String {
    format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: flaky, url: \"{fault}\", {settings} }}\n  - {{ name: healthy, url: \"{healthy}\" }}\n\
         routes:\n  - {{ name: flaky, path: /mcp, upstream: flaky }}\n  - {{ name: healthy, path: /ok, upstream: healthy }}\n{extra}"
    )
}

/// A gateway with `/mcp` on the upstream at `url` (with `settings` in its
/// entry) and `/ok` on a healthy one.
async fn start(url: &str, settings: &str, extra: &str) -> Gateway {
    let (healthy, _rec) = recording_upstream().await;
    Gateway::start(&config(
        url,
        settings,
        &format!("http://{healthy}/mcp"),
        extra,
    ))
    .await
}

/// On a connection of its own: the gateway closes a client connection whose
/// upstream failed mid-answer, and a pooled client could race that close.
async fn healthy_call(_client: &reqwest::Client, gw: &Gateway) {
    let (status, _, body) = post(&reqwest::Client::new(), &gw.url("/ok"), CALL, &[]).await;
    assert_eq!(status, 200, "the healthy upstream is unaffected: {body}");
    assert_eq!(rpc_json(&body)["id"], 7);
}

#[tokio::test]
async fn a_hung_upstream_times_out_with_the_calls_id() {
    let fault = fault_upstream(Mode::Hang).await;
    let gw = start(&fault.url(), "timeouts: { first_byte_ms: 300 }", "").await;
    let client = reqwest::Client::new();
    let (status, headers, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        headers["connection"], "close",
        "the client must not reuse it"
    );
    let v = rpc_json(&body);
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["code"], -32603);
    assert_eq!(fault.requests(), 1, "a call is never retried");
    healthy_call(&client, &gw).await;
    assert!(
        gw.metric("sluice_upstream_errors_total{kind=\"timeout\",route=\"flaky\"}")
            .await
            >= 1.0
    );
}

/// Read SSE `data:` payloads from a streaming response until `n` arrived
/// or the stream ended.
async fn sse_events(
    resp: reqwest::Response,
    n: usize,
    mut on_first: impl AsyncFnMut(),
) -> Vec<serde_json::Value> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    while let Some(Ok(bytes)) = stream.next().await {
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                out.push(serde_json::from_str(data.trim()).unwrap_or_default());
                if out.len() == 1 {
                    on_first().await;
                }
            }
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

/// A GET event stream, answered 200.
async fn get_stream(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let resp = client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    resp
}

async fn call_stream(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .body(CALL)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test]
async fn an_upstream_reset_mid_stream_answers_the_waiting_call() {
    upstream_reset_mid_stream(false).await;
}

/// The same once the stream has left Pingora's session (`detach`).
#[tokio::test]
async fn an_upstream_reset_mid_stream_answers_the_waiting_call_on_a_held_stream() {
    upstream_reset_mid_stream(true).await;
}

async fn upstream_reset_mid_stream(held: bool) {
    let fault = fault_upstream(Mode::SseThenReset).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let gw = start(
        &fault.url(),
        "timeouts: { first_byte_ms: 30000 }",
        &format!(
            "audit: {{ file: \"{}\", sample_rate: 0.0 }}\n",
            audit.display()
        ),
    )
    .await;
    let client = reqwest::Client::new();
    let resp = call_stream(&client, &gw.url("/mcp")).await;
    // The progress event arrives; then the upstream dies.
    let mut reset_at = None;
    let events = sse_events(resp, 2, async || {
        if held {
            eventually("the stream leaves Pingora's session", async || {
                gw.metric("sluice_streams_detached").await == 1.0
            })
            .await;
        }
        reset_at = Some(std::time::Instant::now());
        fault.reset();
    })
    .await;
    if let Some(t) = reset_at {
        // Reported, not asserted: tests never assert on time.
        eprintln!("reset to error event: {:?}", t.elapsed());
    }
    assert_eq!(events.len(), 2, "progress, then the error: {events:?}");
    assert_eq!(events[0]["method"], "notifications/progress");
    assert_eq!(events[1]["id"], 7, "the error carries the call's id");
    assert_eq!(events[1]["error"]["code"], -32603);
    healthy_call(&client, &gw).await;
    assert_eq!(
        gw.metric("sluice_upstream_resets_total{route=\"flaky\"}")
            .await,
        1.0
    );
    eventually("the reset is audited", async || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"upstream_reset\"") && l.contains("\"error\""))
    })
    .await;
    assert_eq!(gw.metric("sluice_streams_detached").await, 0.0);
}

#[tokio::test]
async fn a_silent_stream_ends_with_an_error_for_the_waiting_call() {
    let fault = fault_upstream(Mode::SseThenHang).await;
    let gw = start(&fault.url(), "timeouts: { first_byte_ms: 300 }", "").await;
    let client = reqwest::Client::new();
    let resp = call_stream(&client, &gw.url("/mcp")).await;
    let events = sse_events(resp, 2, async || {}).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["id"], 7);
    assert_eq!(events[1]["error"]["code"], -32603);
}

#[tokio::test]
async fn an_idle_get_stream_is_closed_after_stream_idle() {
    let fault = fault_upstream(Mode::SseThenHang).await;
    let gw = start(
        &fault.url(),
        "timeouts: { stream_idle_ms: 300, first_byte_ms: 60000 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    let resp = get_stream(&client, &gw.url("/mcp")).await;
    // The stream ends (no call waits on a GET stream, so no error event).
    let events = sse_events(resp, 10, async || {}).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        gw.metric("sluice_upstream_errors_total{kind=\"timeout\",route=\"flaky\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_call_longer_than_total_is_cut_with_an_error() {
    let fault = fault_upstream(Mode::Trickle).await;
    let gw = start(
        &fault.url(),
        "timeouts: { total_ms: 500, first_byte_ms: 60000 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    let resp = call_stream(&client, &gw.url("/mcp")).await;
    let events = sse_events(resp, 1000, async || {}).await;
    let last = events.last().expect("events");
    assert_eq!(last["id"], 7, "the stream ends with the call's error");
    assert!(events.len() < 100, "cut off long before it would end");
}

#[tokio::test]
async fn a_refused_connect_is_retried_within_attempts_and_answered() {
    // Nothing listens on this port.
    let (_held, port) = closed_port();
    let closed = format!("http://127.0.0.1:{port}/mcp");
    let gw = start(&closed, "retries: { attempts: 2, backoff_ms: 5 }", "").await;
    let client = reqwest::Client::new();
    let (status, _, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(rpc_json(&body)["id"], 7);
    assert_eq!(
        gw.metric("sluice_upstream_retries_total{outcome=\"retried\",upstream=\"flaky\"}")
            .await,
        2.0
    );
    healthy_call(&client, &gw).await;
}

#[tokio::test]
async fn a_retry_reaches_an_upstream_that_comes_back() {
    // Connects fail until the upstream is listening; retries with backoff
    // carry the call over the gap.
    let port = free_port();
    let gw = start(
        &format!("http://127.0.0.1:{port}/mcp"),
        "retries: { attempts: 10, backoff_ms: 50, max_backoff_ms: 200, budget_min_per_s: 100 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    let url = gw.url("/mcp");
    let call = tokio::spawn(async move { post(&client, &url, CALL, &[]).await });
    eventually("the gateway retried at least once", async || {
        gw.metric("sluice_upstream_retries_total{outcome=\"retried\",upstream=\"flaky\"}")
            .await
            >= 1.0
    })
    .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await;
    let Ok(listener) = listener else {
        return; // The port was taken meanwhile; nothing to prove here.
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let body = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#;
        let _ = s
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        let _ = tx.send(());
        let _ = s.read(&mut buf).await;
    });
    let (status, _, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(rpc_json(&body)["id"], 7);
    rx.await.unwrap();
}

#[tokio::test]
async fn a_call_whose_bytes_reached_the_upstream_is_never_retried() {
    let fault = fault_upstream(Mode::CloseAfterRequest).await;
    let gw = start(&fault.url(), "retries: { attempts: 5, backoff_ms: 1 }", "").await;
    let client = reqwest::Client::new();
    for i in 1..=3u64 {
        let (status, _, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(rpc_json(&body)["id"], 7);
        assert_eq!(fault.requests(), i, "one upstream request per call");
    }
}

#[tokio::test]
async fn a_stale_pooled_connection_is_tried_again_for_get_and_delete_never_for_a_call() {
    let fault = fault_upstream(Mode::SecondDropped).await;
    let gw = start(&fault.url(), "retries: { attempts: 0 }", "").await;
    let client = reqwest::Client::new();
    let delete = async || {
        client
            .delete(gw.url("/mcp"))
            .send()
            .await
            .expect("delete")
            .status()
    };
    // A DELETE opens a connection and leaves it pooled; the next request
    // on it is written and then dropped by the upstream.
    assert_eq!(delete().await, 200);
    assert_eq!(fault.requests(), 1);
    assert_eq!(delete().await, 200, "sent again on a fresh connection");
    assert_eq!(
        fault.requests(),
        3,
        "once on the stale connection, once fresh"
    );

    // The fresh connection is pooled now: a tool call lands on it, is
    // dropped, and is not sent again — the upstream may have acted on it.
    let (status, _, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(rpc_json(&body)["id"], 7);
    assert_eq!(fault.requests(), 4, "the call reached the upstream once");
    healthy_call(&client, &gw).await;
}

#[tokio::test]
async fn a_client_that_goes_away_ends_its_upstream_stream() {
    let fault = fault_upstream(Mode::SseThenHang).await;
    // Nothing on the upstream side would end these streams for a minute.
    let gw = start(
        &fault.url(),
        "timeouts: { stream_idle_ms: 60000, first_byte_ms: 60000 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    let resp = call_stream(&client, &gw.url("/mcp")).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("an event").expect("read");
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    drop(body);
    eventually("the call's upstream stream is closed", async || {
        fault.hung_up.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;

    let resp = get_stream(&client, &gw.url("/mcp")).await;
    let mut body = resp.bytes_stream();
    body.next().await.expect("an event").expect("read");
    drop(body);
    eventually("the GET stream's upstream is closed", async || {
        fault.hung_up.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    healthy_call(&client, &gw).await;
}

/// A gateway in front of an upstream whose GET event stream sends one
/// progress notification and hangs, and that stream through it: its first
/// event read, once it has left Pingora's session.
async fn held_stream() -> (
    Fault,
    Gateway,
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>,
) {
    let fault = fault_upstream(Mode::SseThenHang).await;
    let gw = start(
        &fault.url(),
        "timeouts: { stream_idle_ms: 60000, first_byte_ms: 60000 }",
        "",
    )
    .await;
    let resp = get_stream(&reqwest::Client::new(), &gw.url("/mcp")).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("an event").expect("read");
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    eventually("the stream leaves Pingora's session", async || {
        gw.metric("sluice_streams_detached").await == 1.0
    })
    .await;
    (fault, gw, body)
}

#[tokio::test]
async fn a_held_get_stream_leaves_pingoras_session_and_is_recorded_when_it_ends() {
    let (fault, gw, body) = held_stream().await;
    assert_eq!(
        gw.metric(r#"sluice_sse_streams_active{route="flaky"}"#)
            .await,
        1.0
    );
    let get_200 = r#"sluice_requests_total{method="GET",route="flaky",status="200"}"#;
    assert_eq!(gw.metric(get_200).await, 0.0, "still going on");

    drop(body);
    eventually("the stream's upstream is closed", async || {
        fault.hung_up.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    eventually("the stream is recorded once it ends", async || {
        let text = gw.metrics().await;
        metric_value(&text, get_200) == 1.0
            && metric_value(&text, "sluice_streams_detached") == 0.0
            && metric_value(&text, r#"sluice_sse_streams_active{route="flaky"}"#) == 0.0
    })
    .await;
    // Nothing else was counted for it (the stand-in session Pingora was
    // left with records nothing).
    let text = gw.metrics().await;
    let gets: f64 = text
        .lines()
        .filter(|l| l.starts_with("sluice_requests_total{") && l.contains(r#"method="GET""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(gets, 1.0, "{text}");
    healthy_call(&reqwest::Client::new(), &gw).await;
}

#[tokio::test]
async fn a_held_stream_stays_counted_against_the_connection_caps() {
    let (_fault, gw, body) = held_stream().await;
    // Out of Pingora's session, its connection is still open and counted.
    assert_eq!(gw.metric("sluice_client_connections_open").await, 1.0);
    drop(body);
    eventually(
        "the connection is no longer counted once it closes",
        async || {
            let text = gw.metrics().await;
            metric_value(&text, "sluice_streams_detached") == 0.0
                && metric_value(&text, "sluice_client_connections_open") == 0.0
        },
    )
    .await;
}

#[tokio::test]
async fn the_circuit_opens_answers_at_once_and_closes_after_a_good_probe() {
    let fault = fault_upstream(Mode::Error500).await;
    let gw = start(
        &fault.url(),
        "circuit_breaker: { consecutive_failures: 3, open_ms: 300 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let (status, _, _) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
        assert_eq!(status, 500, "the upstream's own answer passes through");
    }
    assert_eq!(fault.requests(), 3);
    let (status, headers, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    let v = rpc_json(&body);
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["data"]["reason"], "circuit_open");
    assert_eq!(
        fault.requests(),
        3,
        "an open circuit does not touch the upstream"
    );
    assert_eq!(
        gw.metric("sluice_upstream_circuit_state{upstream=\"flaky\"}")
            .await,
        1.0
    );
    healthy_call(&client, &gw).await;
    assert_eq!(
        gw.metric("sluice_upstream_circuit_state{upstream=\"healthy\"}")
            .await,
        0.0
    );
    // Healthy again: after the open period one probe goes through, succeeds
    // and closes the circuit.
    fault.set(Mode::Ok);
    eventually("the probe closes the circuit", async || {
        let (status, _, _) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
        status == 200
    })
    .await;
    assert_eq!(
        gw.metric("sluice_upstream_circuit_state{upstream=\"flaky\"}")
            .await,
        0.0
    );
    assert!(gw.log().contains("circuit opened"));
    assert!(gw.log().contains("circuit closed"));
}

#[tokio::test]
async fn a_connect_that_hangs_times_out_with_the_calls_id() {
    // A listener that never accepts, its queue filled: further SYNs are
    // dropped, so a connect neither succeeds nor fails — it hangs.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let _listener = socket.listen(0).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let gw = start(
        &format!("http://{addr}/mcp"),
        "timeouts: { connect_ms: 200 }, retries: { attempts: 0 }",
        "",
    )
    .await;
    let client = reqwest::Client::new();
    let (status, _, body) = post(&client, &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(rpc_json(&body)["id"], 7);
    assert_eq!(
        gw.metric("sluice_upstream_errors_total{kind=\"connect_timeout\",route=\"flaky\"}")
            .await,
        1.0
    );
    healthy_call(&client, &gw).await;
}
