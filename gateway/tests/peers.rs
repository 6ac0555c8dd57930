//! Third-party peers through the gateway: the official Python SDK client
//! (2025 handshake and auto/discover), and the MCP conformance suite against
//! the reference server-everything (same per-scenario results through the
//! gateway as direct) and against the demo server (zero failures) — on a
//! plain route and through virtual servers of one and of three sources.
//!
//! The peers are installed by `.ci/setup` under `.peers/` (or where
//! `SLUICE_PEERS` points); these tests fail, rather than skip, without them.

mod support;

use std::collections::BTreeMap;

use std::process::Command;

use support::peers::{node22, start_everything, SdkServer};
use support::*;

/// Runs the official Python SDK client; returns its stdout.
fn python_client(url: &str, mode: &str) -> String {
    let out = Command::new(need(peers().join("venv/bin/python")))
        .arg(test_peer("sdk_client.py"))
        .args([url, "get-sum", r#"{"a":2,"b":3}"#, mode])
        .output()
        .expect("python client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client ({mode}) failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_client_legacy_and_auto() {
    for json_response in [false, true] {
        let demo = demo(DemoOptions {
            json_response,
            ..Default::default()
        })
        .await;
        let gw = Gateway::start(&one_route(&demo.url())).await;
        let url = gw.url("/mcp");
        for mode in ["legacy", "auto"] {
            let u = url.clone();
            let out = tokio::task::spawn_blocking(move || python_client(&u, mode))
                .await
                .expect("join");
            assert!(out.contains("get-sum"), "{mode}: {out}");
            assert!(out.contains("False ['5']"), "{mode}: {out}");
        }
        demo.shutdown().await;
    }
}

/// Run the conformance suite against `url`; per-scenario pass/fail.
async fn conformance(url: String) -> BTreeMap<String, bool> {
    let out_dir = tempfile::tempdir().expect("dir");
    let out_path = out_dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node22())
            .arg(need(peers().join(
                "node_modules/@modelcontextprotocol/conformance/dist/index.js",
            )))
            .args(["server", "--url", &url, "-o"])
            .arg(&out_path)
            .output()
            .expect("conformance suite")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let results: BTreeMap<String, bool> = text
        .lines()
        .filter_map(|l| {
            let (passed, rest) = if let Some(r) = l.strip_prefix("✓ ") {
                (true, r)
            } else {
                (false, l.strip_prefix("✗ ")?)
            };
            Some((rest.split(':').next()?.trim().to_owned(), passed))
        })
        .collect();
    assert!(
        results.len() >= 20,
        "suite output not understood:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_server_everything_same_through_the_gateway() {
    let (_everything, port) = start_everything().await;
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    // `/open/mcp` turns the gateway's own Host/Origin checks off, so the
    // comparison is of pure pass-through; `/mcp` keeps them on.
    let yaml = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: everything, url: \"{upstream}\" }}\n\
         routes:\n  - {{ name: guarded, path: /mcp, upstream: everything }}\n  \
         - {{ name: open, path: /open/mcp, upstream: everything, hosts: {{ allowed_hosts: [\"*\"], allowed_origins: [\"*\"] }} }}\n"
    );
    let gw = Gateway::start(&yaml).await;
    let direct = conformance(upstream).await;
    let open = conformance(gw.url("/open/mcp")).await;
    assert_eq!(direct, open, "pass-through changes no scenario");
    let guarded = conformance(gw.url("/mcp")).await;
    for (scenario, passed) in &direct {
        if scenario == "dns-rebinding-protection" {
            // server-everything accepts any Origin; the gateway does not.
            assert!(
                guarded[scenario],
                "the gateway adds DNS-rebinding protection"
            );
        } else {
            assert_eq!(guarded.get(scenario), Some(passed), "{scenario}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_full_active_suite_passes_through_the_gateway() {
    let demo = demo(DemoOptions {
        allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into()]),
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&one_route(&demo.url())).await;
    let results = conformance(gw.url("/mcp")).await;
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| s)
        .collect();
    assert!(failed.is_empty(), "failed through the gateway: {failed:?}");
}

/// Virtual servers over real peers: `/v/ev` (server-everything alone,
/// Host/Origin left to it as on the plain route `/ev`), `/v/demo` (the demo
/// alone) and `/v/three` (the demo unprefixed, server-everything and the
/// Python SDK's server prefixed).
struct Federated {
    gw: Gateway,
    _everything: support::peers::Everything,
    _sdk: SdkServer,
    _demo: DemoServer,
}

async fn federated() -> Federated {
    let (everything, port) = start_everything().await;
    let sdk = SdkServer::start().await;
    let demo = demo(DemoOptions {
        allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into()]),
        ..Default::default()
    })
    .await;
    let everything_url = format!("http://127.0.0.1:{port}/mcp");
    let open = "hosts: { allowed_hosts: [\"*\"], allowed_origins: [\"*\"] }";
    let yaml = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         limits: {{ max_body_bytes: 2097152, max_json_depth: 32 }}\n\
         upstreams:\n  - {{ name: everything, url: \"{everything_url}\" }}\n  \
         - {{ name: demo, url: \"{demo}\" }}\n  \
         - {{ name: sdk, url: \"http://127.0.0.1:{sdk}/mcp\" }}\n\
         routes:\n  - {{ name: direct, path: /ev, upstream: everything, {open} }}\n  \
         - {{ name: ev, path: /v/ev, server: ev, {open} }}\n  \
         - {{ name: demo, path: /v/demo, server: demo }}\n  \
         - {{ name: three, path: /v/three, server: three }}\n\
         servers:\n  - {{ name: ev, sources: [{{ upstream: everything, prefix: \"\" }}] }}\n  \
         - {{ name: demo, sources: [{{ upstream: demo, prefix: \"\" }}] }}\n  \
         - {{ name: three, sources: [{{ upstream: demo, prefix: \"\" }}, {{ upstream: everything }}, {{ upstream: sdk }}] }}\n",
        demo = demo.url(),
        sdk = sdk.port,
    );
    Federated {
        gw: Gateway::start(&yaml).await,
        _everything: everything,
        _sdk: sdk,
        _demo: demo,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_a_virtual_server_is_as_direct() {
    let f = federated().await;
    let gw = &f.gw;
    let direct = conformance(gw.url("/ev")).await;
    let federated = conformance(gw.url("/v/ev")).await;
    assert_eq!(direct, federated, "one source: the verdicts of direct");
    for path in ["/v/demo", "/v/three"] {
        let results = conformance(gw.url(path)).await;
        let failed: Vec<_> = results
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(s, _)| s)
            .collect();
        assert!(failed.is_empty(), "failed through {path}: {failed:?}");
    }
}

/// The MCP Inspector's command-line mode against `url`: its JSON output.
async fn inspector(url: String, args: &[&str]) -> serde_json::Value {
    inspector_over("http", url, args).await
}

/// The Inspector's command line over `transport` (`http`, or `sse`: the
/// legacy HTTP+SSE transport).
async fn inspector_over(transport: &str, url: String, args: &[&str]) -> serde_json::Value {
    let shown = args.join(" ");
    let transport = transport.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let home = tempfile::tempdir().expect("dir");
    let home_path = home.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node22())
            .arg(need(peers().join("node_modules/.bin/mcp-inspector")))
            .args(["--cli", "--transport", &transport, "--server-url", &url])
            .args(&args)
            .env("HOME", &home_path)
            .env("MCP_CATALOG_PATH", home_path.join("mcp.json"))
            .output()
            .expect("the inspector")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "inspector {shown}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_uses_three_sources_as_one_server() {
    let f = federated().await;
    let url = f.gw.url("/v/three");
    let tools = inspector(url.clone(), &["--method", "tools/list"]).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for want in ["test_simple_text", "everything_echo", "sdk_echo"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let said = inspector(
        url.clone(),
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "sdk_echo",
            "--tool-arg",
            "message=hi",
        ],
    )
    .await;
    assert_eq!(said["content"][0]["text"], "hi", "{said}");
    // The same call over the legacy HTTP+SSE transport.
    let call = [
        "--method",
        "tools/call",
        "--tool-name",
        "sdk_echo",
        "--tool-arg",
        "message=old",
    ];
    let said = inspector_over("sse", url.clone(), &call).await;
    assert_eq!(said["content"][0]["text"], "old", "{said}");
    let echoed = inspector(
        url.clone(),
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "everything_echo",
            "--tool-arg",
            "message=hi",
        ],
    )
    .await;
    assert_eq!(echoed["content"][0]["text"], "Echo: hi", "{echoed}");
    let templates = inspector(url.clone(), &["--method", "resources/templates/list"]).await;
    let uris: Vec<&str> = templates["resourceTemplates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert!(uris.contains(&"test://template/{id}/data"), "{uris:?}");
    let read = inspector(
        url.clone(),
        &[
            "--method",
            "resources/read",
            "--uri",
            "test://template/42/data",
        ],
    )
    .await;
    let text = read["contents"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("42"),
        "read from the source whose template matches: {read}"
    );
    let prompt = inspector(
        url,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "test_simple_prompt",
        ],
    )
    .await;
    assert!(prompt["messages"].is_array(), "{prompt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_uses_three_sources_as_one_server() {
    use rmcp::model::{CallToolRequestParams, ClientConfig, ReadResourceRequestParams};
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::ServiceExt;
    let f = federated().await;
    let t = rmcp::transport::StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(f.gw.url("/v/three")),
    );
    let client = ClientConfig::default().serve(t).await.expect("initialize");
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for want in ["test_simple_text", "everything_echo", "sdk_echo"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let mut args = serde_json::Map::new();
    args.insert("message".into(), "from rmcp".into());
    let said = client
        .call_tool(CallToolRequestParams::new("sdk_echo").with_arguments(args))
        .await
        .expect("call");
    let text = serde_json::to_value(&said.content).expect("json");
    assert_eq!(text[0]["text"], "from rmcp", "{text}");
    let resources = client.list_all_resources().await.expect("resources");
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert!(uris.contains(&"file:///pub/readme.txt"), "{uris:?}");
    let read = client
        .read_resource(ReadResourceRequestParams::new("file:///pub/readme.txt"))
        .await
        .expect("read");
    let contents = serde_json::to_value(&read.contents).expect("json");
    assert_eq!(contents[0]["text"], "public\n", "{contents}");
    client.cancel().await.expect("close");
}
