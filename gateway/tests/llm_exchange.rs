//! Model calls take the same exchange steps as tool calls: each target's
//! circuit breaker (an open circuit is skipped like a target that does not
//! connect), the whole-call deadline (`timeouts.total_ms`), and the same
//! upstream request (the client's forwarding headers do not pass).

mod support;

use futures::StreamExt;
use sluice_demo::llm::{spawn_llm, LlmOptions, LlmServer};
use support::fault::read_request;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

async fn mock() -> LlmServer {
    spawn_llm("127.0.0.1:0".parse().expect("addr"), LlmOptions::default())
        .await
        .expect("mock")
}

/// The gateway with `upstreams` (YAML list items) and `models`.
async fn gateway(upstreams: &str, models: &str) -> Gateway {
    let config = format!(
        r#"{head}upstreams:
{upstreams}
routes:
  - {{ name: llm, path: /v1, upstream: primary, transport: llm }}
llm:
  models:
{models}
"#,
        head = llm_config_head("models:primary/*:use"),
    );
    Gateway::start(&config).await
}

fn chat(gw: &Gateway, model: &str, stream: bool) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer alice-key")
        .json(&serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        }))
}

#[tokio::test]
async fn a_target_whose_circuit_is_open_is_skipped_for_the_next() {
    let (primary, backup) = (mock().await, mock().await);
    let gw = gateway(
        &format!(
            "  - {{ name: primary, url: \"{}\", circuit_breaker: {{ consecutive_failures: 2, open_ms: 60000 }} }}\n  - {{ name: backup, url: \"{}\" }}",
            primary.url(),
            backup.url()
        ),
        "    - name: mock-gpt\n      targets: [{ upstream: primary }, { upstream: backup, weight: 0 }]",
    )
    .await;
    primary.fail_with(500);
    for _ in 0..4 {
        let resp = chat(&gw, "mock-gpt", false).send().await.expect("response");
        assert_eq!(resp.status(), 200, "the backup answers");
    }
    assert_eq!(
        primary.requests(),
        2,
        "after two failures the primary's circuit is open and it is not tried"
    );
    assert_eq!(backup.requests(), 4);
    assert!(
        gw.metric("sluice_llm_fallbacks_total{reason=\"circuit_open\",upstream=\"primary\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn the_clients_forwarding_headers_do_not_reach_the_model_upstream() {
    let primary = mock().await;
    let gw = gateway(
        &format!("  - {{ name: primary, url: \"{}\" }}", primary.url()),
        "    - { name: mock-gpt, targets: [{ upstream: primary }] }",
    )
    .await;
    let resp = chat(&gw, "mock-gpt", false)
        .header("x-forwarded-for", "203.0.113.9")
        .header("forwarded", "for=203.0.113.9")
        .header("x-real-ip", "203.0.113.9")
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let seen = primary.last_headers().expect("headers");
    assert!(
        seen.get("x-forwarded-for").is_none(),
        "a model provider is not told the client's address: {seen:?}"
    );
    assert!(seen.get("forwarded").is_none(), "{seen:?}");
    assert!(seen.get("x-real-ip").is_none(), "{seen:?}");
}

/// A provider that answers every request with an event stream of `n`
/// chunks, one every `gap` — the fault: an upstream that goes on too long.
async fn slow_provider(n: usize, gap: std::time::Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut sock, &mut buf).await.is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for i in 0..n {
                    let event = format!(
                        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i}\"}}}}]}}\n\n"
                    );
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if sock.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(gap).await;
                }
                let done = "data: [DONE]\n\n";
                let _ = sock
                    .write_all(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).as_bytes())
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_model_stream_longer_than_total_ms_is_cut() {
    let addr = slow_provider(20, std::time::Duration::from_millis(100)).await;
    let gw = gateway(
        &format!(
            "  - {{ name: primary, url: \"http://{addr}/v1\", timeouts: {{ total_ms: 300 }} }}"
        ),
        "    - { name: m, targets: [{ upstream: primary }] }",
    )
    .await;
    let resp = chat(&gw, "m", true).send().await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(Ok(b)) = s.next().await {
        body.extend_from_slice(&b);
    }
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("w0"), "the stream started: {text}");
    assert!(
        !text.contains("[DONE]") && !text.contains("w19"),
        "the stream is cut at the deadline: {text}"
    );
    assert!(
        gw.metric("sluice_upstream_errors_total{kind=\"timeout\",route=\"llm\"}")
            .await
            >= 1.0
    );
}
