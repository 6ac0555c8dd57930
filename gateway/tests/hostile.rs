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

/// An ordinary call goes through.
async fn ordinary_call(gw: &Gateway) {
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

const WAITING: &str = "sluice_client_connections_waiting";

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
    // Every body waits for its bytes in the gateway's intake, not in a
    // Pingora session.
    eventually("every body is waited for", async || {
        gw.metric(WAITING).await >= 100.0
    })
    .await;
    let during = rss(gw.pid());
    // Promised: 400 MiB. Held: what arrived, in buffers of a few KiB.
    let bytes = gw.metric(HELD).await;
    assert!(
        (100.0..=100.0 * 4096.0).contains(&bytes),
        "{bytes} bytes held for 100 bodies of 10 bytes"
    );
    assert!(
        during < before + (32 << 20),
        "RSS grew from {before} to {during} bytes for 100 bodies of 10 bytes"
    );
    drop(held);
    eventually("the bodies are given back", async || {
        gw.metric(HELD).await == 0.0 && gw.metric(WAITING).await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_comes_slowly_is_served_whole() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(&demo.url(), "client_read_timeout_ms: 60000")).await;
    let body = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"echo","arguments":{"message":"slow"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    for expect in [false, true] {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port))
            .await
            .expect("connect");
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\n\
             Mcp-Method: tools/call\r\nMcp-Name: echo\r\n{}Content-Length: {}\r\n\r\n",
            if expect {
                "Expect: 100-continue\r\n"
            } else {
                ""
            },
            body.len()
        );
        s.write_all(head.as_bytes()).await.expect("head");
        if expect {
            // The go-ahead comes before any body byte is sent.
            let mut line = [0u8; 25];
            s.read_exact(&mut line).await.expect("100 Continue");
            assert_eq!(&line, b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        s.write_all(&body.as_bytes()[..20])
            .await
            .expect("a first piece");
        eventually("the body waits in the intake", async || {
            gw.metric(WAITING).await >= 1.0
        })
        .await;
        s.write_all(&body.as_bytes()[20..]).await.expect("the rest");
        let mut answer = vec![0u8; 4096];
        let mut got = 0;
        while !String::from_utf8_lossy(&answer[..got]).contains("slow") {
            let n = s.read(&mut answer[got..]).await.expect("answer");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer[..got]));
            got += n;
        }
        let answer = String::from_utf8_lossy(&answer[..got]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""id":41"#), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_have_a_ceiling() {
    let demo = demo(DemoOptions::default()).await;
    // Bodies start in the intake (up to 64 KiB each) and go on in the
    // proxy's reader: both count against one ceiling.
    let gw = Gateway::start(&config(
        &demo.url(),
        "max_body_bytes: 200000, max_body_bytes_held: 262144, client_read_timeout_ms: 60000",
    ))
    .await;
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for sent in [20_000, 20_000, 70_000, 70_000, 70_000, 70_000] {
        let mut s = trickle(gw.port, 190_000, sent).await;
        // Each stays open, or is refused at once with a time to come back.
        let mut answer = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut answer)).await {
            Ok(Ok(n)) if n > 0 => refused.push(String::from_utf8_lossy(&answer[..n]).into_owned()),
            _ => held.push(s),
        }
        let bytes = gw.metric(HELD).await;
        assert!(bytes <= 262144.0, "{bytes} bytes held past the ceiling");
    }
    // 320 KB sent against a ceiling of 256 KiB: some were refused.
    assert!(!refused.is_empty(), "none refused; {} held", held.len());
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        assert!(answer.contains("-32603"), "{answer}");
    }
    let counted = gw
        .metric("sluice_refusals_total{reason=\"bodies_full\",route=\"demo\"}")
        .await
        + gw.metric("sluice_client_connections_closed_total{reason=\"bodies_full\"}")
            .await;
    assert_eq!(counted, refused.len() as f64);
    // They give up; the shares are given back and a whole call goes through.
    drop(held);
    eventually("the shares are given back", async || {
        gw.metric(HELD).await == 0.0
    })
    .await;
    ordinary_call(&gw).await;
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
    // Counted where each was caught: the connection's first head is read
    // under the cap (the 500 KB header), the rest once parsed.
    assert_eq!(
        gw.metric("sluice_refusals_total{reason=\"head_too_large\",route=\"none\"}")
            .await
            + gw.metric("sluice_client_connections_closed_total{reason=\"head_too_large\"}")
                .await,
        4.0
    );
}

/// Read until the gateway closes the connection; what it sent.
async fn until_closed(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after 20 s: {}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Begin a head on `s` and send a byte of it every 100 ms — each read well
/// within any per-read timeout, the head never ending — for up to 15 s:
/// whether the gateway closed the connection by then, and what it answered.
async fn trickle_head(mut s: TcpStream) -> (bool, String) {
    s.write_all(b"POST /mcp HTTP/1.1\r\n").await.expect("line");
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            if w.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut out)).await;
    writer.abort();
    (closed.is_ok(), String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_trickles_is_cut_at_one_deadline() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(&demo.url(), "head_timeout_ms: 500")).await;
    let port = gw.port;
    // Twenty heads, a byte every 100 ms: each read comes well within any
    // per-read timeout, the head never ends.
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(tokio::spawn(async move {
            let s = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            trickle_head(s).await
        }));
    }
    for c in clients {
        let (closed, answer) = c.await.expect("client");
        assert!(closed, "a trickling head was still open after 15 s");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(
        gw.metric("sluice_client_connections_closed_total{reason=\"head_timeout\"}")
            .await,
        20.0
    );
    // An HTTP/2 client that sends its preface and nothing more is cut too.
    let mut h2 = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    until_closed(h2).await;
    // Ordinary calls are unaffected.
    ordinary_call(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connections_next_head_has_the_same_deadline() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(&demo.url(), "head_timeout_ms: 500")).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"first"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2026-07-28\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: echo\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("first request");
    // The whole answer (an event stream, chunked: through its last chunk).
    let mut answer = vec![0u8; 4096];
    let mut got = 0;
    while !answer[..got].ends_with(b"\r\n0\r\n\r\n") {
        let n = s.read(&mut answer[got..]).await.expect("answer");
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(String::from_utf8_lossy(&answer[..got]).contains("first"));
    // The same connection now trickles its next head: once it has begun,
    // it has the head deadline, however the bytes come.
    let before = gw
        .metric("sluice_client_connections_closed_total{reason=\"head_timeout\"}")
        .await;
    let (closed, out) = trickle_head(s).await;
    assert!(closed, "a trickling second head was still open after 15 s");
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(
        gw.metric("sluice_client_connections_closed_total{reason=\"head_timeout\"}")
            .await,
        before + 1.0
    );
    ordinary_call(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_the_longest_waiting_connection_is_shed() {
    let demo = demo(DemoOptions::default()).await;
    let gw = Gateway::start(&config(
        &demo.url(),
        "max_connections_per_address: 4, head_timeout_ms: 60000",
    ))
    .await;
    // Four connections that never send a head fill this address's share.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(
            TcpStream::connect(("127.0.0.1", gw.port))
                .await
                .expect("connect"),
        );
    }
    eventually("four connections counted", async || {
        gw.metric("sluice_client_connections_open").await >= 4.0
    })
    .await;
    // A real call still gets through: the oldest idle one makes room.
    ordinary_call(&gw).await;
    // One of the four (the one that waited longest) was closed for it.
    eventually("an idle connection is shed", async || {
        idle.iter()
            .filter(|s| matches!(s.try_read(&mut [0u8; 1]), Ok(0)))
            .count()
            == 1
    })
    .await;
    assert!(
        gw.metric("sluice_client_connections_closed_total{reason=\"shed\"}")
            .await
            >= 1.0
    );
}
