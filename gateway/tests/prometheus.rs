//! The Prometheus rules shipped in `config/prometheus`: `promtool` (from
//! Debian's `prometheus` package, installed by .ci/setup) checks them and
//! runs their unit tests on synthetic series; and every `sluice_*` metric
//! they read is one the gateway exports, so the rules cannot drift from
//! the metric names.

mod support;

use std::process::Command;

use support::workspace;

fn promtool(args: &[&str]) -> String {
    let dir = workspace().join("config/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus; .ci/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_load_and_their_alerts_fire_where_they_should() {
    let checked = promtool(&["check", "rules", "sluice.rules.yml"]);
    assert!(checked.contains("SUCCESS: 14 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "sluice.rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_metric_the_rules_read_is_exported() {
    let rules = std::fs::read_to_string(workspace().join("config/prometheus/sluice.rules.yml"))
        .expect("rules");
    let metrics =
        std::fs::read_to_string(workspace().join("gateway/src/metrics.rs")).expect("metrics.rs");
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("sluice_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let base = name
            .trim_start_matches("sluice_")
            .trim_end_matches("_bucket");
        assert!(
            metrics.contains(&format!("\"{base}\"")),
            "the rules read {name}, which gateway/src/metrics.rs does not register"
        );
    }
}

/// A real Prometheus scraping a running gateway under a short, mixed load
/// (tool calls through a demo MCP server, calls to an upstream that is
/// down, malformed bodies): every panel query of the Grafana dashboard
/// (`config/grafana/sluice-dashboard.json`, `$__rate_interval` as 10s)
/// parses and returns data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_query_returns_data_from_a_real_prometheus() {
    let demo = support::demo(support::DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let (_gone, gone) = support::closed_port();
    let config = format!(
        "listeners: [{{ name: main, address: \"{{listen}}\" }}]\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n  - {{ name: demo, url: \"{}\" }}\n  - {{ name: down, url: \"http://127.0.0.1:{gone}/mcp\", retries: {{ attempts: 0 }} }}\n\
         routes:\n  - {{ name: mcp, path: /mcp, upstream: demo }}\n  - {{ name: down, path: /down, upstream: down }}\n",
        demo.url()
    );
    let gw = support::Gateway::start(&config).await;
    // Load in the background for as long as the test runs.
    let (mcp, down) = (gw.url("/mcp"), gw.url("/down"));
    let load = tokio::spawn(async move {
        let call = serde_json::json!({"name": "test_simple_text", "arguments": {}});
        for i in 0u64.. {
            support::stateless_rpc(
                &mcp,
                None,
                ("tools/call", serde_json::json!(i), call.clone()),
            )
            .await;
            support::stateless_rpc(
                &down,
                None,
                ("tools/call", serde_json::json!(i), call.clone()),
            )
            .await;
            let client = reqwest::Client::new();
            let _ = support::post(&client, &mcp, String::from("{not json"), &[]).await;
        }
    });
    let dir = tempfile::tempdir().expect("dir");
    let prom_port = support::free_port();
    let scrape = dir.path().join("prometheus.yml");
    std::fs::write(
        &scrape,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs: [{{ targets: [\"127.0.0.1:{}\"] }}]\n",
            gw.admin
        ),
    )
    .expect("prometheus config");
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", scrape.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus; .ci/setup installs it)"),
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("config/grafana/sluice-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    let client = reqwest::Client::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("expr")
                .replace("$__rate_interval", "10s");
            let url = format!("http://127.0.0.1:{prom_port}/api/v1/query");
            let mut last = String::new();
            support::eventually_for(&format!("panel `{title}` to return data"), 60, async || {
                let query: String = expr
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect();
                let Ok(resp) = client.get(format!("{url}?query={query}")).send().await else {
                    return false;
                };
                last = resp.text().await.unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
                // A query that does not parse is an error at once, not a wait.
                assert_ne!(v["errorType"], "bad_data", "panel `{title}`: {last}");
                v["status"] == "success"
                    && v["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
            })
            .await;
        }
    }
    load.abort();
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
