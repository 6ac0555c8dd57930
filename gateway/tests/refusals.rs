//! Hostile and broken input: every refusal is the right HTTP status with a
//! JSON-RPC error carrying the request's id, counted in a metric, and the
//! upstream never sees the request.

mod support;

use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_status_id_and_metric() {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&demo.url())).await;
    let c = reqwest::Client::new();
    let url = gw.url("/mcp");

    // Malformed JSON: -32700 with the id it could still read.
    let (s, _, b) = post(
        &c,
        &url,
        r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"#,
        &[],
    )
    .await;
    assert_eq!(s, 400);
    let v = rpc_json(&b);
    assert_eq!(
        (v["id"].as_i64(), v["error"]["code"].as_i64()),
        (Some(42), Some(-32700)),
        "{b}"
    );

    // Not JSON-RPC 2.0, a duplicate member, nested too deep: -32600 with the id.
    for body in [
        r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","method":"ping","params":{"name":"x"}}"#
            .to_owned(),
        format!(
            r#"{{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{{"name":"x","arguments":{{"v":{}{}}}}}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        ),
    ] {
        let (s, _, b) = post(&c, &url, body, &[]).await;
        let v = rpc_json(&b);
        assert_eq!(s, 400, "{b}");
        assert_eq!(
            (v["id"].as_str(), v["error"]["code"].as_i64()),
            (Some("a"), Some(-32600)),
            "{b}"
        );
    }

    // Over the body cap (2 MiB here): 413, declared or streamed.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "x".repeat(3 << 20)
    );
    let (s, _, _) = post(&c, &url, big.clone(), &[]).await;
    assert_eq!(s, 413);
    let chunked = reqwest::Body::wrap_stream(futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    ));
    let (s, _, _) = post(&c, &url, chunked, &[]).await;
    assert_eq!(s, 413);

    // 2026-07-28: mirrored headers must match the body.
    let (s, _, b) = post(
        &c,
        &url,
        CALL,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "echo"),
        ],
    )
    .await;
    let v = rpc_json(&b);
    assert_eq!(
        (s, v["id"].as_i64(), v["error"]["code"].as_i64()),
        (400, Some(42), Some(-32020)),
        "{b}"
    );
    let (s, _, b) = post(
        &c,
        &url,
        CALL,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?b3RoZXI=?="),
        ],
    )
    .await;
    assert_eq!(
        (s, rpc_json(&b)["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{b}"
    );
    let (s, _, b) = post(&c, &url, CALL, &[("mcp-protocol-version", "2026-07-28")]).await;
    assert_eq!(
        (s, rpc_json(&b)["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{b}"
    );
    // ...and a matching request passes (base64-encoded name included).
    let (s, _, b) = post(
        &c,
        &url,
        CALL,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?ZWNobw==?="),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        rpc_json(&b)["result"]["content"][0]["text"].as_str(),
        Some("hi"),
        "{b}"
    );

    // DNS rebinding: a foreign Origin or Host is 403.
    let (s, _, _) = post(&c, &url, CALL, &[("origin", "https://evil.example")]).await;
    assert_eq!(s, 403);
    let resp = c
        .post(&url)
        .header("host", "evil.example")
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .body(CALL)
        .send()
        .await
        .expect("resp");
    assert_eq!(resp.status(), 403);

    // Unknown path, unsupported method.
    assert_eq!(
        c.get(gw.url("/nope")).send().await.expect("resp").status(),
        404
    );
    assert_eq!(
        c.put(&url).body("{}").send().await.expect("resp").status(),
        405
    );

    // Request smuggling shape: both Content-Length and Transfer-Encoding.
    let resp = raw_http(
        gw.port,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");

    let m = gw.metrics().await;
    for (reason, at_least) in [
        ("parse_error", 1.0),
        ("invalid_request", 2.0),
        ("too_deep", 1.0),
        ("body_too_large", 2.0),
        ("header_mismatch", 3.0),
        ("bad_origin", 1.0),
        ("bad_host", 1.0),
        ("method_not_allowed", 1.0),
        ("framing", 1.0),
    ] {
        let route = "demo";
        let v = metric_value(
            &m,
            &format!(r#"sluice_refusals_total{{reason="{reason}",route="{route}"}}"#),
        );
        assert!(v >= at_least, "{reason}: {v}\n{m}");
    }
    assert!(
        metric_value(
            &m,
            r#"sluice_refusals_total{reason="no_route",route="none"}"#
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_jsonrpc_error_with_the_id() {
    let (_closed, port) = closed_port();
    let gw = Gateway::start(&one_route(&format!("http://127.0.0.1:{port}/mcp"))).await;
    let (s, _, b) = post(&reqwest::Client::new(), &gw.url("/mcp"), CALL, &[]).await;
    let v = rpc_json(&b);
    assert_eq!(s, 502, "{b}");
    assert_eq!(
        (v["id"].as_i64(), v["error"]["code"].as_i64()),
        (Some(42), Some(-32603)),
        "{b}"
    );
    assert!(
        gw.metric(r#"sluice_upstream_errors_total{kind="connect_refused",route="demo"}"#)
            .await
            >= 1.0,
        "{}",
        gw.metrics().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_corpus_and_json_bombs_never_reach_the_upstream() {
    use std::sync::atomic::Ordering;
    let (addr, rec) = recording_upstream().await;
    let count = rec.calls;
    let gw = Gateway::start(&one_route(&format!("http://{addr}/mcp"))).await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let n = body.len();
    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n";
    let corpus = [
        format!("{head}Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"),
        format!("{head}Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n{body}"),
        format!(
            "{head}Content-Length: {n}\r\nContent-Length: {}\r\n\r\n{body}",
            n + 1
        ),
        format!("{head}Content-Length: {n}, {}\r\n\r\n{body}", n + 5),
        format!("{head}Content-Length: -{n}\r\n\r\n{body}"),
        format!("{head}Content-Length: 0x{n:x}\r\n\r\n{body}"),
        format!("{head}Transfer-Encoding: chunked, identity\r\n\r\n{body}"),
        format!("{head}Transfer-Encoding: xchunked\r\n\r\n{body}"),
        format!("{head}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n{body}"),
        format!("{head}Content-Length : {n}\r\n\r\n{body}"),
    ];
    for (i, req) in corpus.iter().enumerate() {
        let resp = raw_http(gw.port, req).await;
        let status_line = resp.lines().next().unwrap_or("");
        assert!(
            status_line.starts_with("HTTP/1.1 400") || resp.is_empty(),
            "case {i}: {status_line}\n{req}"
        );
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "a smuggling attempt reached the upstream"
    );

    let c = reqwest::Client::new();
    let url = gw.url("/mcp");
    // Depth 10,000: refused before any parser recurses.
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{}{}}}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (s, _, b) = post(&c, &url, deep, &[]).await;
    assert_eq!((s, rpc_json(&b)["id"].as_i64()), (400, Some(3)), "{b}");
    // Invalid UTF-8 is a parse error.
    let mut bad =
        br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":{"s":""#
            .to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    bad.extend_from_slice(br#""}}}"#);
    let (s, _, b) = post(&c, &url, bad, &[]).await;
    assert_eq!(
        (s, rpc_json(&b)["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{b}"
    );
    // A million-element array under the body cap: over the array cap.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"x","arguments":{{"a":[{}0]}}}}}}"#,
        "0,".repeat(1_000_000)
    );
    let (s, _, b) = post(&c, &url, huge, &[]).await;
    let v = rpc_json(&b);
    assert_eq!(
        (s, v["id"].as_i64(), v["error"]["code"].as_i64()),
        (400, Some(5), Some(-32600)),
        "{b}"
    );
    let fine = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"x","arguments":{{"a":[{}0]}}}}}}"#,
        "0,".repeat(50_000)
    );
    let (s, _, b) = post(&c, &url, fine, &[]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "only the valid call reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_body_is_cut_off() {
    use std::sync::atomic::Ordering;
    let (addr, rec) = recording_upstream().await;
    let count = rec.calls;
    let yaml = one_route(&format!("http://{addr}/mcp")).replace(
        "limits: { max_body_bytes: 2097152, max_json_depth: 32 }",
        "limits: { client_read_timeout_ms: 300 }",
    );
    let gw = Gateway::start(&yaml).await;
    // Stalled in its first 64 KiB: the gateway's intake waits no longer
    // than the read timeout and answers 408, as nginx does.
    let started = std::time::Instant::now();
    let resp = raw_http(
        gw.port,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the gateway did not wait for the stalled body forever"
    );
    assert_eq!(
        gw.metric(r#"sluice_client_connections_closed_total{reason="body_timeout"}"#)
            .await,
        1.0
    );
    // Stalled past them: the proxy's body reader refuses it.
    let mut long = String::from(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"jsonrpc\":",
    );
    long.push_str(&" ".repeat(70_000));
    let resp = raw_http(gw.port, &long).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
    assert!(
        gw.metric(r#"sluice_refusals_total{reason="body_read",route="demo"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_is_checked_on_the_resolved_address() {
    use std::sync::atomic::Ordering;
    let (addr, rec) = recording_upstream().await;
    let count = rec.calls;
    let base = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: demo, url: \"http://localhost:{}/mcp\" }}\n\
         routes:\n  - {{ name: demo, path: /mcp, upstream: demo }}\n",
        addr.port()
    );
    // `localhost` matches the name rule, but resolves to loopback: refused.
    let gw = Gateway::start(&format!(
        "{base}egress_allow: [\"localhost\", \"*.example.com\"]\n"
    ))
    .await;
    let (s, _, b) = post(&reqwest::Client::new(), &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(
        (s, rpc_json(&b)["error"]["code"].as_i64()),
        (502, Some(-32603)),
        "{b}"
    );
    assert!(gw.log().contains("egress refused"), "{}", gw.log());
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // An explicit IP rule allows it.
    let gw = Gateway::start(&format!("{base}egress_allow: [\"127.0.0.0/8\"]\n")).await;
    let (s, _, b) = post(&reqwest::Client::new(), &gw.url("/mcp"), CALL, &[]).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
