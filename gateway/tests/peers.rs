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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_a_virtual_server_is_as_direct() {
    let (_everything, port) = start_everything().await;
    let sdk = SdkServer::start().await;
    let demo = demo(DemoOptions {
        allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into()]),
        ..Default::default()
    })
    .await;
    let everything = format!("http://127.0.0.1:{port}/mcp");
    // `open` routes leave Host/Origin to the upstream, as on the plain
    // route compared with; the others keep the gateway's checks.
    let open = "hosts: { allowed_hosts: [\"*\"], allowed_origins: [\"*\"] }";
    let yaml = format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         limits: {{ max_body_bytes: 2097152, max_json_depth: 32 }}\n\
         upstreams:\n  - {{ name: everything, url: \"{everything}\" }}\n  \
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
    let gw = Gateway::start(&yaml).await;
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
