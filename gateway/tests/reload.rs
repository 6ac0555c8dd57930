//! Snapshots under load: switching a route's upstream while requests flow
//! loses none of them, a broken file keeps the old snapshot serving (and is
//! counted), SIGHUP reloads, and SIGTERM lets an open SSE stream finish.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// A stateless (2026-07-28) `tools/call`: valid on any replica, no session.
async fn stateless_sum(c: &reqwest::Client, url: &str, a: u64) -> Result<(), String> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{a},"method":"tools/call","params":{{"name":"get-sum","arguments":{{"a":{a},"b":1}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    );
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get-sum")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let v = rpc_json(&text);
    let want = (a + 1).to_string();
    if status != 200 || v["result"]["content"][0]["text"].as_str() != Some(want.as_str()) {
        return Err(format!("{status}: {text}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_routes_upstream_under_load_fails_no_request() {
    let a = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let b = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&a.url())).await;
    let url = gw.url("/mcp");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (stop, ok, failures, url) = (stop.clone(), ok.clone(), failures.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut i = t * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match stateless_sum(&c, &url, i).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failures.lock().expect("lock").push(e);
                        0
                    }
                };
            }
        }));
    }
    let ok_after = |n: u64| {
        let ok = ok.clone();
        async move || ok.load(Ordering::Relaxed) >= n
    };
    eventually("load to flow", ok_after(50)).await;

    gw.write_config(&one_route(&b.url()));
    eventually("generation 2", async || gw.generation().await == 2).await;
    let at_switch = ok.load(Ordering::Relaxed);
    eventually("load after the switch", ok_after(at_switch + 100)).await;
    // The old upstream goes away: everything must now reach the new one.
    a.shutdown().await;
    let after_a = ok.load(Ordering::Relaxed);
    eventually("load without the old upstream", ok_after(after_a + 100)).await;

    // A broken file is refused and counted; the old snapshot keeps serving.
    gw.write_config("listeners: [ this is not yaml");
    eventually("the invalid reload to be counted", async || {
        gw.metric(r#"sluice_config_reloads_total{outcome="invalid"}"#)
            .await
            >= 1.0
    })
    .await;
    assert_eq!(gw.metric("sluice_config_last_reload_ok").await, 0.0);
    let after_bad = ok.load(Ordering::Relaxed);
    eventually("load after the broken file", ok_after(after_bad + 50)).await;
    assert_eq!(gw.generation().await, 2);

    // SIGHUP reloads the (now valid again) file; unchanged content keeps the generation.
    gw.write_config(&one_route(&b.url()));
    eventually("the valid file to be re-read", async || {
        gw.metric("sluice_config_last_reload_ok").await == 1.0
    })
    .await;
    let unchanged = gw
        .metric(r#"sluice_config_reloads_total{outcome="unchanged"}"#)
        .await;
    gw.signal("HUP");
    eventually("SIGHUP reload", async || {
        gw.metric(r#"sluice_config_reloads_total{outcome="unchanged"}"#)
            .await
            > unchanged
    })
    .await;
    assert_eq!(gw.generation().await, 2);

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let failures = failures.lock().expect("lock");
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok.load(Ordering::Relaxed) > 300);
}

/// A 4-tick ticker call streaming on `url` in session `sid`, once its first
/// event arrived: the stream and what was read so far.
async fn ticker_started(
    c: &reqwest::Client,
    url: &str,
    sid: &str,
) -> (
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>>,
    String,
) {
    use futures::StreamExt;
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ticker","arguments":{"count":4},"_meta":{"progressToken":"p"}}}"#)
        .send()
        .await
        .expect("ticker");
    assert_eq!(resp.status(), 200);
    let mut stream = Box::pin(resp.bytes_stream());
    let mut body = String::new();
    while !body.contains("notifications/") {
        let chunk = stream.next().await.expect("open").expect("chunk");
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    (stream, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_sse_stream_finish() {
    use futures::StreamExt;
    let demo = demo(DemoOptions {
        sse_interval_ms: 400,
        ..Default::default()
    })
    .await;
    let yaml = one_route(&demo.url()) + "shutdown: { grace_period_s: 5 }\n";
    let mut gw = Gateway::start(&yaml).await;
    let c = reqwest::Client::new();
    let sid = initialize(&c, &gw.url("/mcp")).await;
    // First event in, then the process is asked to go.
    let (mut stream, mut body) = ticker_started(&c, &gw.url("/mcp"), &sid).await;
    gw.signal("TERM");
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.expect("stream kept alive")));
    }
    assert!(body.contains("done 4"), "the stream finished: {body}");
    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some(), "gateway exits after the grace period");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_upgrade_keeps_an_open_sse_stream_and_hands_over_new_calls() {
    use futures::StreamExt;
    let demo = demo(DemoOptions {
        sse_interval_ms: 400,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("upgrade.sock");
    let yaml = one_route(&demo.url())
        + &format!(
            "shutdown: {{ grace_period_s: 5, upgrade_sock: \"{}\" }}\n",
            sock.display()
        );
    let mut old = Gateway::start(&yaml).await;
    let c = reqwest::Client::new();
    let sid = initialize(&c, &old.url("/mcp")).await;
    // First event in, then the process is asked to go.
    let (mut stream, mut body) = ticker_started(&c, &old.url("/mcp"), &sid).await;
    let new = old.upgrade().await;
    // New connections reach the new process once it holds the listeners.
    eventually("the new process serves new calls", async || {
        let fresh = reqwest::Client::new();
        let (s, _, _) = post(
            &fresh,
            &new.url("/mcp"),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            &[("mcp-protocol-version", "2025-06-18")],
        )
        .await;
        s == 200 || s == 400
    })
    .await;
    while let Some(chunk) = stream.next().await {
        body.push_str(&String::from_utf8_lossy(&chunk.expect("stream kept alive")));
    }
    assert!(
        body.contains("done 4"),
        "the stream finished on the old process: {body}"
    );
    assert!(
        old.wait_exit(Duration::from_secs(20)).await.is_some(),
        "the old process exits"
    );
    let fresh = reqwest::Client::new();
    let sid = initialize(&fresh, &new.url("/mcp")).await;
    assert!(!sid.is_empty(), "the new process serves on the same port");
    assert!(new.log().contains("snapshot applied"));
}

/// Validate each JSON file of `docs` against `schema` with the Python
/// `jsonschema` package (a validator no one here wrote); every error.
fn json_schema_errors(schema: &str, docs: &[(String, serde_json::Value)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("schema.json"), schema).expect("schema");
    let mut names = Vec::new();
    for (i, (name, doc)) in docs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, doc.to_string()).expect("doc");
        names.push((name.clone(), path));
    }
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
for name, path in zip(sys.argv[2::2], sys.argv[3::2]):
    for e in v.iter_errors(json.load(open(path))):
        print(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
"#;
    let mut cmd = std::process::Command::new(need(peers().join("venv/bin/python")));
    cmd.args(["-c", script]).arg(dir.path().join("schema.json"));
    for (name, path) in &names {
        cmd.arg(name).arg(path);
    }
    let out = cmd.output().expect("python jsonschema");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn yaml_file(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("example");
    serde_yaml::from_str(&text).expect("yaml")
}

#[test]
fn every_example_config_follows_the_printed_schema() {
    let print = |bin: std::path::PathBuf| {
        let out = std::process::Command::new(bin)
            .arg("--print-schema")
            .output()
            .expect("--print-schema");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let gateway = print(env!("CARGO_BIN_EXE_sluice-gateway").into());
    let mut examples: Vec<(String, serde_json::Value)> =
        std::fs::read_dir(workspace().join("config/examples"))
            .expect("examples")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| (p.display().to_string(), yaml_file(&p)))
            .collect();
    assert!(examples.len() >= 5, "{examples:?}");
    let errors = json_schema_errors(&gateway, &examples);
    assert!(errors.is_empty(), "{errors:#?}");
    // What the loader refuses the schema refuses too: a misspelt field, a
    // string where a list goes.
    let mut bad = examples.swap_remove(0).1;
    bad["routes"][0]["uptream"] = "x".into();
    bad["listeners"] = "main".into();
    let errors = json_schema_errors(&gateway, &[("bad".into(), bad)]);
    assert!(errors.iter().any(|e| e.contains("uptream")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("bad: listeners")),
        "{errors:?}"
    );

    let control = print(support::control::control_bin());
    let example = workspace().join("control/examples/control.yaml");
    let settings = yaml_file(&example);
    assert!(json_schema_errors(&control, &[("control.yaml".into(), settings.clone())]).is_empty());
    let mut bad = settings;
    bad["database"] = serde_json::json!(["x"]);
    assert_eq!(
        json_schema_errors(&control, &[("bad".into(), bad)]).len(),
        1
    );
}

#[tokio::test]
async fn every_request_gets_one_access_log_line_without_secrets() {
    let up = demo(DemoOptions::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("access.jsonl");
    let config = format!(
        "{}access_log: {{ file: \"{}\" }}\n",
        one_route(&up.url()),
        path.display()
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let call = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get-sum"),
        ("authorization", "Bearer sk-secret-token-123"),
    ];
    let (status, _, _) = post(&client, &gw.url("/mcp"), call, &headers).await;
    assert_eq!(status, 200);
    let (status, _, _) = post(&client, &gw.url("/mcp"), "{not json", &[]).await;
    assert_eq!(status, 400);
    let read = || {
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .collect::<Vec<_>>()
    };
    eventually("two lines", async || read().len() == 2).await;
    let lines = read();
    let ok = &lines[0];
    assert_eq!(ok["route"], "demo", "{ok}");
    assert_eq!(ok["upstream"], "demo");
    assert_eq!(ok["http_method"], "POST");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["rpc_method"], "tools/call");
    assert_eq!(ok["target"], "get-sum");
    assert_eq!(ok["revision"], "2026-07-28");
    assert!(ok["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(ok["duration_ms"].as_f64().is_some_and(|d| d > 0.0));
    assert!(ok.as_object().is_some_and(|o| o.contains_key("trace_id")));
    let bad = &lines[1];
    assert_eq!(bad["status"], 400, "{bad}");
    assert_eq!(bad["rpc_error"], -32700, "{bad}");
    assert!(bad["refused"].is_string(), "{bad}");
    let text = std::fs::read_to_string(&path).expect("log");
    assert!(
        !text.contains("sk-secret") && !text.contains("\"a\":1"),
        "{text}"
    );
    // What the client was sent: the demo's answer, byte for byte.
    let (_, _, body) = post(&client, &gw.url("/mcp"), call, &headers).await;
    eventually("three lines", async || read().len() == 3).await;
    assert_eq!(read()[2]["bytes_out"], body.len(), "{}", read()[2]);
    assert!(bad["bytes_out"].as_u64().is_some_and(|b| b > 0), "{bad}");

    // Rotated away (as logrotate does), then SIGHUP: the log goes on in a
    // new file of the same name.
    let rotated = dir.path().join("access.jsonl.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    gw.signal("HUP");
    eventually("the next line in a new file", async || {
        post(&client, &gw.url("/mcp"), call, &headers).await;
        !read().is_empty()
    })
    .await;
    assert!(read()[0]["status"] == 200, "{:?}", read());
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    assert!(old.lines().count() >= 3, "{old}");
}
