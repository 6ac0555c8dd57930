//! The model exchange's own HTTP/1.1 client on the wire: answers framed
//! every way HTTP/1 allows arrive whole, pooled connections are reused and a
//! stale one is retried on a fresh connection, and broken framing from the
//! upstream is an error, never a hang. The provider here is raw TCP, so each
//! framing and fault is exact.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::fault::read_request;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const COMPLETION: &str = r#"{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// What the provider does with one request.
enum Reply {
    Send(Vec<u8>),
    /// Send, then close the connection without saying so.
    SendThenClose(Vec<u8>),
    /// Read the request, close without a byte of answer.
    Close,
    /// Read the request, reset the connection (RST) without an answer.
    Reset,
}

/// The reply for a request naming `model`, the `conn`-th connection's
/// `nth` request (both from 0).
type Script = fn(model: &str, conn: usize, nth: usize) -> Reply;

struct Provider {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    /// Connections the gateway closed (the provider read their end).
    ended: Arc<AtomicUsize>,
}

async fn provider(script: Script) -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let p = Provider {
        addr: listener.local_addr().expect("addr"),
        connections: Arc::default(),
        requests: Arc::default(),
        closes: Arc::default(),
        ended: Arc::default(),
    };
    let (connections, requests, closes, ended) = (
        p.connections.clone(),
        p.requests.clone(),
        p.closes.clone(),
        p.ended.clone(),
    );
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let conn = connections.fetch_add(1, Ordering::SeqCst);
            let (requests, closes, ended) = (requests.clone(), closes.clone(), ended.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut nth = 0;
                while let Some(body) = read_request(&mut sock, &mut buf).await {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let model = body["model"].as_str().unwrap_or_default().to_owned();
                    match script(&model, conn, nth) {
                        Reply::Send(bytes) => {
                            if sock.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::SendThenClose(bytes) => {
                            let _ = sock.write_all(&bytes).await;
                            return;
                        }
                        Reply::Close => {
                            closes.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Reply::Reset => {
                            closes.fetch_add(1, Ordering::SeqCst);
                            let _ = sock.set_zero_linger();
                            return;
                        }
                    }
                    nth += 1;
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    p
}

fn sized(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `body` in two chunks (the first with an extension) and a trailer.
fn chunked(content_type: &str, body: &str) -> Vec<u8> {
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n\
         {:x};note=first\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\nx-trailer: done\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

fn sse_stream() -> String {
    let chunk = |text: &str| {
        format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
        )
    };
    format!(
        "{}{}data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}}}\n\ndata: [DONE]\n\n",
        chunk("alpha"),
        chunk("beta")
    )
}

fn framings(model: &str, _conn: usize, _nth: usize) -> Reply {
    match model {
        "m-chunked" => Reply::Send(chunked("application/json", COMPLETION)),
        "m-length" => Reply::Send(sized(COMPLETION)),
        "m-close" => Reply::SendThenClose(
            format!("HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{COMPLETION}")
                .into_bytes(),
        ),
        "m-continue" => {
            let mut v = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
            v.extend(sized(COMPLETION));
            Reply::Send(v)
        }
        "m-stream" => Reply::Send(chunked("text/event-stream", &sse_stream())),
        "m-bad-length" => Reply::Send(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ten\r\n\r\n{}"
                .to_vec(),
        ),
        "m-bad-chunk" => Reply::Send(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\nzz\r\n",
                sse_stream().len(),
                sse_stream()
            )
            .into_bytes(),
        ),
        other => panic!("no script for {other}"),
    }
}

/// Every connection's second request is read and dropped unanswered —
/// closed on even connections, reset on odd ones: the gateway finds its
/// pooled connection dead only once it has written to it.
fn stale_second(_model: &str, conn: usize, nth: usize) -> Reply {
    match (nth, conn % 2) {
        (1, 0) => Reply::Close,
        (1, _) => Reply::Reset,
        _ => Reply::Send(sized(COMPLETION)),
    }
}

async fn gateway(p: &Provider) -> Gateway {
    gateway_with(p, "first_byte_ms: 5000").await
}

/// The gateway in front of `p`, with the upstream's `timeouts`.
async fn gateway_with(p: &Provider, timeouts: &str) -> Gateway {
    let mut config = format!(
        r#"{head}upstreams:
  - {{ name: raw, url: "http://{addr}/v1", timeouts: {{ {timeouts} }} }}
routes:
  - {{ name: llm, path: /v1, upstream: raw, transport: llm }}
llm:
  models:
"#,
        head = llm_config_head("models:raw/*:use"),
        addr = p.addr,
    );
    for m in [
        "m-chunked",
        "m-length",
        "m-close",
        "m-continue",
        "m-stream",
        "m-bad-length",
        "m-bad-chunk",
    ] {
        config.push_str(&format!(
            "    - {{ name: {m}, targets: [{{ upstream: raw }}] }}\n"
        ));
    }
    Gateway::start(&config).await
}

async fn call(gw: &Gateway, model: &str, stream: bool) -> reqwest::Response {
    reqwest::Client::new()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer alice-key")
        .json(&serde_json::json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        }))
        .send()
        .await
        .expect("response")
}

#[tokio::test]
async fn answers_framed_every_way_arrive_whole() {
    let p = provider(framings).await;
    let gw = gateway(&p).await;
    for model in ["m-chunked", "m-length", "m-close", "m-continue"] {
        let resp = call(&gw, model, false).await;
        assert_eq!(resp.status(), 200, "{model}");
        assert_eq!(resp.text().await.expect("body"), COMPLETION, "{model}");
    }
    let output = "sluice_gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"m-chunked\",gen_ai_token_type=\"output\"}";
    assert_eq!(
        gw.metric(output).await,
        1.0,
        "usage read from a chunked answer"
    );

    // A stream: the usage chunk the gateway asked for is read and, as the
    // client did not ask for it, not passed on; everything else is.
    let resp = call(&gw, "m-stream", true).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("stream");
    let expected: String = sse_stream()
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("\"usage\""))
        .collect();
    assert_eq!(text, expected);
    let output = "sluice_gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"m-stream\",gen_ai_token_type=\"output\"}";
    assert_eq!(gw.metric(output).await, 2.0, "usage read from the stream");
}

#[tokio::test]
async fn pooled_connections_are_reused_and_a_stale_one_is_retried_fresh() {
    let p = provider(stale_second).await;
    let gw = gateway(&p).await;
    // Calls until two have landed on a pooled connection (the provider then
    // drops it unanswered, closed and then reset: one connection is pooled
    // at a time, so they alternate): every call still gets its answer.
    let mut calls = 0;
    eventually("calls reuse pooled connections", async || {
        let resp = call(&gw, "m-length", false).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), COMPLETION);
        calls += 1;
        p.closes.load(Ordering::SeqCst) >= 2
    })
    .await;
    let closes = p.closes.load(Ordering::SeqCst);
    assert_eq!(
        p.requests.load(Ordering::SeqCst),
        calls + closes,
        "each dropped request was sent once more, on a fresh connection"
    );
    assert!(
        p.connections.load(Ordering::SeqCst) < calls + closes,
        "some calls shared a connection"
    );
}

#[tokio::test]
async fn an_idle_pooled_connection_is_closed_after_its_idle_timeout() {
    let p = provider(framings).await;
    let gw = gateway_with(&p, "first_byte_ms: 5000, pool_idle_ms: 200").await;
    let resp = call(&gw, "m-length", false).await;
    assert_eq!(resp.text().await.expect("body"), COMPLETION);
    // Kept for reuse, then closed by the gateway once idle too long,
    // without another call to notice it.
    eventually("the idle connection is closed", async || {
        p.ended.load(Ordering::SeqCst) == 1
    })
    .await;
    // The next call opens a fresh one and is answered.
    let resp = call(&gw, "m-length", false).await;
    assert_eq!(resp.text().await.expect("body"), COMPLETION);
    assert_eq!(p.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn broken_framing_from_the_model_upstream_is_an_error_not_a_hang() {
    let p = provider(framings).await;
    let gw = gateway(&p).await;
    let resp = call(&gw, "m-bad-length", false).await;
    assert_eq!(resp.status(), 502, "an unreadable head is a bad gateway");

    // Past the head, the client has its 200: the stream is cut, not ended.
    let resp = call(&gw, "m-bad-chunk", true).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text().await.is_err(),
        "a chunked body the upstream broke does not end cleanly"
    );
    // The log line may follow the close the client saw.
    eventually("the gateway says why", async || {
        gw.log().contains("invalid chunk size")
    })
    .await;
    // And it goes on serving.
    let resp = call(&gw, "m-length", false).await;
    assert_eq!(resp.text().await.expect("body"), COMPLETION);
}

/// Read one HTTP/1.1 response off `sock`, its chunked body decoded
/// strictly: (head, body). Panics on anything but exact chunk framing.
async fn read_chunked(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    use tokio::io::AsyncReadExt;
    async fn more(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
        let mut piece = [0u8; 8192];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), sock.read(&mut piece))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed mid-answer: {}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&piece[..n]);
    }
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(sock, buf).await;
    };
    let head = String::from_utf8(buf.drain(..head_end).collect()).expect("utf-8 head");
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            more(sock, buf).await;
        };
        let size = std::str::from_utf8(&buf[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .expect("a chunk size line");
        while buf.len() < line_end + 2 + size + 2 {
            more(sock, buf).await;
        }
        assert_eq!(&buf[line_end + 2 + size..line_end + 4 + size], b"\r\n");
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 4 + size);
        if size == 0 {
            return (head, String::from_utf8(body).expect("utf-8 body"));
        }
    }
}

#[tokio::test]
async fn a_streamed_answer_written_directly_is_framed_kept_alive_and_recorded() {
    let p = provider(framings).await;
    let gw = gateway(&p).await;
    let body =
        r#"{"model":"m-stream","stream":true,"messages":[{"role":"user","content":"hello"}]}"#;
    let request = |extra: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-key\r\n\
             Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let expected: String = sse_stream()
        .split_inclusive("\n\n")
        .filter(|e| !e.contains("\"usage\""))
        .collect();
    let mut sock = tokio::net::TcpStream::connect(gw.url("").trim_start_matches("http://"))
        .await
        .expect("connect");
    let mut buf = Vec::new();
    // Two answers on one connection: it goes back to Pingora after each.
    for _ in 0..2 {
        sock.write_all(request("").as_bytes()).await.expect("send");
        let (head, text) = read_chunked(&mut sock, &mut buf).await;
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(lower.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(lower.contains("connection: keep-alive\r\n"), "{head}");
        assert!(
            lower.contains("content-type: text/event-stream\r\n"),
            "{head}"
        );
        assert!(lower.contains("date: "), "{head}");
        assert_eq!(text, expected);
        assert!(buf.is_empty(), "nothing after the last chunk");
    }
    // A client that asks to close gets `Connection: close`, then the close.
    sock.write_all(request("Connection: close\r\n").as_bytes())
        .await
        .expect("send");
    let (head, text) = read_chunked(&mut sock, &mut buf).await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close\r\n"),
        "{head}"
    );
    assert_eq!(text, expected);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut sock, &mut rest),
    )
    .await
    .expect("closed in time")
    .expect("read");
    assert_eq!(n, 0, "nothing more: {}", String::from_utf8_lossy(&rest));
    // Recorded as what they were: three model calls answered 200.
    eventually("the calls are recorded", async || {
        gw.metric(r#"sluice_requests_total{method="POST",route="llm",status="200"}"#)
            .await
            == 3.0
    })
    .await;
}
