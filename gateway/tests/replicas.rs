//! The multi-replica deployment example as a whole:
//! `config/examples/replicas/run.sh` starts PostgreSQL, Redis, two control
//! processes on the database, two gateways taking their config from either
//! control (each on its own ports with `--bind`), nginx balancing over them,
//! and the demo MCP server and model API behind. Calls through the balancer
//! reach both gateways; an approval filed through one control process is
//! decided on the other; every gateway's audit chain is in the shared store
//! and verifies; SIGTERM stops everything.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

/// A stateless (2026-07-28) `tools/call` of the demo's `get-sum` through
/// `url`; the JSON-RPC answer.
async fn sum(client: &reqwest::Client, url: &str, a: i64, b: i64) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": a, "method": "tools/call",
        "params": {"name": "get-sum", "arguments": {"a": a, "b": b},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let (_, _, text) = post(
        client,
        url,
        body.to_string(),
        &[
            ("authorization", "Bearer alice-demo-key"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "get-sum"),
        ],
    )
    .await;
    rpc_json(&text)
}

/// A gateway's count of answered MCP requests with status 200.
async fn answered(client: &reqwest::Client, admin: u16) -> f64 {
    let text = client
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("sluice_requests_total{") && l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_replica_example_balances_shares_one_control_and_stops_whole() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    // The control binary next to the gateway's (built once if missing).
    support::control::control_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    let names = [
        "PORT_LB",
        "PORT_GW1",
        "PORT_GW2",
        "PORT_ADMIN1",
        "PORT_ADMIN2",
        "PORT_CONTROL_A",
        "PORT_CONTROL_B",
        "PORT_PG",
        "PORT_REDIS",
        "PORT_DEMO",
        "PORT_LLM",
    ];
    let ports: Vec<(&str, u16)> = names.iter().map(|n| (*n, free_port())).collect();
    let port = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("port")
    };
    let out = dir.path().join("run.out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config/examples/replicas/run.sh");
    let mut run = Command::new("bash")
        .arg(&script)
        .env("BIN_DIR", &bin_dir)
        .env("STATE", dir.path().join("state"))
        .envs(ports.iter().map(|(n, p)| (*n, p.to_string())))
        .stdout(std::fs::File::create(&out).expect("out"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run.sh");
    eventually_for("the replicas to be ready", 120, async || {
        if let Ok(Some(status)) = run.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = run.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("run.sh exited with {status}: {err}");
        }
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("replicas ready"))
    })
    .await;
    let client = reqwest::Client::new();
    let lb = format!("http://127.0.0.1:{}/mcp", port("PORT_LB"));

    // Through the balancer, calls reach both gateways.
    for a in 1..=10 {
        let v = sum(&client, &lb, a, 1).await;
        assert_eq!(
            v["result"]["content"][0]["text"],
            json!((a + 1).to_string()),
            "{v}"
        );
    }
    for admin in ["PORT_ADMIN1", "PORT_ADMIN2"] {
        assert!(
            answered(&client, port(admin)).await >= 1.0,
            "{admin} served some of the calls"
        );
    }

    // A large sum waits for a person: filed through whichever control the
    // gateway reached, decided on control B, then let through on either
    // gateway.
    let v = sum(&client, &lb, 200, 3).await;
    assert_eq!(v["error"]["data"]["reason"], "approval_pending", "{v}");
    let id = v["error"]["data"]["approval_id"]
        .as_str()
        .expect("approval id")
        .to_owned();
    let control_b = format!("http://127.0.0.1:{}", port("PORT_CONTROL_B"));
    let r = client
        .post(format!("{control_b}/v1/approvals/{id}/decision"))
        .bearer_auth("ops-demo-token")
        .json(&json!({"decision": "approve", "reason": "checked"}))
        .send()
        .await
        .expect("decision");
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let v = sum(&client, &lb, 200, 3).await;
    assert_eq!(v["result"]["content"][0]["text"], "203", "{v}");

    // Both gateways' audit chains are in the one store, and verify.
    let control_a = format!("http://127.0.0.1:{}", port("PORT_CONTROL_A"));
    eventually("both gateways' events stored", async || {
        let events: Value = client
            .get(format!("{control_a}/v1/audit?limit=1000"))
            .bearer_auth("ops-demo-token")
            .send()
            .await
            .expect("audit")
            .json()
            .await
            .unwrap_or(Value::Null);
        let chains: std::collections::BTreeSet<_> = events
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["chain"]["id"].as_str().map(str::to_owned))
            .collect();
        chains.len() == 2 && events.as_array().is_some_and(|e| e.len() >= 12)
    })
    .await;
    let verify = Command::new(support::control::control_bin())
        .arg("--config")
        .arg(dir.path().join("state").join("control-b.yaml"))
        .args(["audit", "verify"])
        .env("SLUICE_GATEWAY_TOKEN", "unused-for-verify")
        .output()
        .expect("audit verify");
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // SIGTERM stops the whole deployment.
    let _ = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status();
    let status = run.wait().expect("run.sh ends");
    assert!(status.success(), "{status}");
    for name in ["PORT_LB", "PORT_GW1", "PORT_CONTROL_A", "PORT_PG"] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port(name))).is_err(),
            "{name} closed"
        );
    }
}
