//! Clients that are slow or oversized on purpose, on raw sockets: what they
//! cost the gateway follows what they send, and the total has a ceiling.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A POST whose head promises `declared` bytes, of which `sent` come.
async fn trickle(port: u16, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&vec![b' '; sent]).await.expect("some body");
    s
}

fn config(upstream: &str, limits: &str) -> String {
    format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         limits: {{ {limits} }}\n\
         upstreams:\n  - {{ name: demo, url: \"{upstream}\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n"
    )
}

const HELD: &str = "sluice_request_body_bytes_held";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_holds_what_it_sent_not_what_its_head_promised() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(
        &demo.url(),
        "max_body_bytes: 4194304, client_read_timeout_ms: 60000",
    ))
    .await;
    let before = rss(gw.pid());
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(trickle(gw.port, 4 << 20, 10).await);
    }
    eventually("every body is being read", async || {
        gw.metric(HELD).await >= 100.0 * 16384.0
    })
    .await;
    let during = rss(gw.pid());
    // Promised: 400 MiB. Held: a first buffer each.
    assert!(
        gw.metric(HELD).await <= 100.0 * 16384.0,
        "{}",
        gw.metric(HELD).await
    );
    assert!(
        during < before + (64 << 20),
        "RSS grew from {before} to {during} bytes for 100 bodies of 10 bytes"
    );
    drop(held);
    eventually("the bodies are given back", async || {
        gw.metric(HELD).await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_have_a_ceiling() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(
        &demo.url(),
        "max_body_bytes: 32768, max_body_bytes_held: 65536, client_read_timeout_ms: 60000",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(trickle(gw.port, 30_000, 10).await);
    }
    eventually("four bodies fill the ceiling", async || {
        gw.metric(HELD).await == 65536.0
    })
    .await;
    // The fifth is refused at once, with a time to come back.
    let mut fifth = trickle(gw.port, 30_000, 10).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), fifth.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("-32603"), "{answer}");
    assert_eq!(
        gw.metric("sluice_refusals_total{reason=\"bodies_full\",route=\"demo\"}")
            .await,
        1.0
    );
    // One gives up; a new body fits again, and a whole call goes through.
    drop(held.pop());
    eventually("a share is given back", async || {
        gw.metric(HELD).await == 49152.0
    })
    .await;
    let (status, _, body) = post(
        &reqwest::Client::new(),
        &gw.url("/mcp"),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Send `request` and read the status line of the answer.
async fn status_of(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The gateway may answer before the whole of a huge head is written.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused_before_anything_is_forwarded() {
    let (addr, rec) = recording_upstream().await;
    let gw = Gateway::start(&config(
        &format!("http://{addr}/mcp"),
        "max_body_bytes: 65536",
    ))
    .await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = |target: &str, headers: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\n{headers}Content-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    // Within every cap: forwarded.
    let ok = status_of(gw.port, &request("/mcp", "X-A: 1\r\n")).await;
    assert!(ok.contains(" 200"), "{ok}");
    let long_target = format!("/mcp?{}", "a".repeat(60_000));
    let long_header = format!("X-Big: {}\r\n", "b".repeat(500_000));
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big_head: String = (0..8)
        .map(|i| format!("X-M{i}: {}\r\n", "c".repeat(7000)))
        .collect();
    for (what, req, want) in [
        ("a 60 KB target", request(&long_target, ""), " 414"),
        ("a 500 KB header", request("/mcp", &long_header), " 431"),
        ("150 headers", request("/mcp", &many), " 431"),
        ("a 56 KB head", request("/mcp", &big_head), " 431"),
    ] {
        let status = status_of(gw.port, &req).await;
        assert!(status.contains(want), "{what}: {status}");
    }
    assert_eq!(
        rec.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the request within the caps reached the upstream"
    );
    assert_eq!(
        gw.metric("sluice_refusals_total{reason=\"head_too_large\",route=\"none\"}")
            .await,
        4.0
    );
}
