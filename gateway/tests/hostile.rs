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
