//! Operations: health, readiness and metrics on the admin listener, bounded
//! tool labels, the SSE gauge, `--validate`, and every example config.

mod support;

use std::process::Command;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_bounded_tool_labels() {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&demo.url())).await;
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(gw.admin_url("/healthz"))
            .send()
            .await
            .expect("h")
            .status(),
        200
    );
    assert_eq!(
        c.get(gw.admin_url("/readyz"))
            .send()
            .await
            .expect("r")
            .status(),
        200
    );
    assert_eq!(gw.generation().await, 1);

    let url = gw.url("/mcp");
    let sid = initialize(&c, &url).await;
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2}}}"#;
    // Before the upstream listed its tools, names fold into `other`.
    let (s, _, _) = post(&c, &url, call, &h).await;
    assert_eq!(s, 200);
    assert_eq!(
        gw.metric(r#"sluice_tool_calls_total{outcome="ok",route="demo",tool="other"}"#)
            .await,
        1.0
    );
    let (s, _, _) = post(
        &c,
        &url,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        &h,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = post(&c, &url, call, &h).await;
    assert_eq!(s, 200);
    let unknown = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"no-such-tool-5d1f","arguments":{}}}"#;
    post(&c, &url, unknown, &h).await;
    let m = gw.metrics().await;
    assert_eq!(
        metric_value(
            &m,
            r#"sluice_tool_calls_total{outcome="ok",route="demo",tool="get-sum"}"#
        ),
        1.0,
        "{m}"
    );
    assert!(
        !m.contains("no-such-tool-5d1f"),
        "raw names never become labels"
    );
    for series in [
        r#"sluice_requests_total{method="POST",route="demo",status="200"}"#,
        r#"sluice_mcp_messages_total{direction="client",method="initialize",route="demo"}"#,
        r#"sluice_upstream_latency_seconds_count{route="demo"}"#,
        r#"sluice_gateway_time_seconds_count{route="demo"}"#,
        r#"sluice_config_reloads_total{outcome="applied"}"#,
        "sluice_config_generation",
    ] {
        assert!(metric_value(&m, series) >= 1.0, "{series} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_are_counted_while_open() {
    use futures::StreamExt;
    let demo = demo(DemoOptions {
        sse_interval_ms: 300,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&demo.url())).await;
    let c = reqwest::Client::new();
    let sid = initialize(&c, &gw.url("/mcp")).await;
    let resp = c
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ticker","arguments":{"count":3},"_meta":{"progressToken":1}}}"#)
        .send()
        .await
        .expect("ticker");
    let mut stream = resp.bytes_stream();
    let mut body = String::new();
    while !body.contains("notifications/progress") {
        body.push_str(&String::from_utf8_lossy(
            &stream.next().await.expect("open").expect("chunk"),
        ));
    }
    assert_eq!(
        gw.metric(r#"sluice_sse_streams_active{route="demo"}"#)
            .await,
        1.0
    );
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    assert!(body.contains("done 3"), "{body}");
    // The gauge drops once the gateway has logged the finished request.
    eventually("the SSE gauge to drop", async || {
        gw.metric(r#"sluice_sse_streams_active{route="demo"}"#)
            .await
            == 0.0
    })
    .await;
    let m = gw.metrics().await;
    assert!(
        metric_value(
            &m,
            r#"sluice_mcp_messages_total{direction="server",method="notifications/progress",route="demo"}"#
        ) >= 3.0,
        "{m}"
    );
}

#[test]
fn validate_prints_every_error_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners:\n  - { name: main, address: \"127.0.0.1:1\" }\nupstreams:\n  - { name: u, url: \"gopher://x\" }\nroutes:\n  - { name: r, path: /mcp, upstream: nope }\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .args(["--validate", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("upstreams[0].url"), "{stderr}");
    assert!(stderr.contains("routes[0].upstream"), "{stderr}");

    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    for entry in std::fs::read_dir(examples).expect("examples") {
        let path = entry.expect("entry").path();
        // Configs; a directory holds a deployment's templates.
        if path.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
            .args(["--validate", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The embedded default validates too.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .arg("--validate")
        .output()
        .expect("run");
    assert!(out.status.success());
}
