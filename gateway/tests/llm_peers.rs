//! Model traffic with real peers: the official `openai` Python SDK as the
//! client, through the gateway, to the project's mock provider directly and
//! to a real LiteLLM proxy in front of the same mock. Installed by
//! `.ci/setup` under `.peers/`; these tests fail, rather than skip, without.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use sluice_demo::llm::{spawn_llm, LlmOptions, LlmServer};
use support::*;

/// Run the SDK client script; its JSON report.
fn sdk(base_url: &str, key: &str, model: &str, denied: Option<&str>) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openai_client.py");
    let mut cmd = Command::new(need(peers().join("venv/bin/python")));
    cmd.arg(script).args([base_url, key, model]);
    if let Some(d) = denied {
        cmd.arg(d);
    }
    let out = cmd.output().expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("the client's JSON report")
}

fn config(upstream_url: &str, upstream_model: &str, metadata: bool) -> String {
    format!(
        r#"{head}upstreams:
  - name: provider
    url: "{upstream_url}"
    inject: {{ credential: {{ secret: {{ env: SLUICE_TEST_PROVIDER_KEY }} }}, llm_metadata: {metadata} }}
routes:
  - {{ name: llm, path: /v1, upstream: provider, transport: llm }}
llm:
  models:
    - {{ name: gpt-small, targets: [{{ upstream: provider, model: {upstream_model} }}] }}
    - {{ name: gpt-large, targets: [{{ upstream: provider, model: {upstream_model} }}] }}
"#,
        head = llm_config_head("models:provider/gpt-small:use"),
    )
}

fn check_report(r: &serde_json::Value) {
    assert_eq!(
        r["text"],
        "word word word word word word word word word word"
    );
    assert!(r["usage"].as_u64().is_some_and(|n| n > 10), "{r}");
    let plain = &r["stream"];
    assert_eq!(plain["text"], r["text"], "{r}");
    assert_eq!(
        plain["usage_chunks"], 0,
        "usage the client did not ask for is not shown: {r}"
    );
    assert_eq!(
        r["stream_asked"]["usage_chunks"], 1,
        "asked for, it arrives: {r}"
    );
    assert_eq!(r["models"], serde_json::json!(["gpt-small"]));
    assert_eq!(r["denied"], "PermissionDeniedError:403");
}

async fn mock() -> LlmServer {
    spawn_llm("127.0.0.1:0".parse().expect("addr"), LlmOptions::default())
        .await
        .expect("mock provider")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_a_provider() {
    let provider = mock().await;
    let gw = Gateway::start_with_env(
        &config(&provider.url(), "mock-gpt", false),
        &[("SLUICE_TEST_PROVIDER_KEY", "sk-provider")],
    )
    .await;
    let base = gw.url("/v1");
    let report = tokio::task::spawn_blocking(move || {
        sdk(&base, "alice-key", "gpt-small", Some("gpt-large"))
    })
    .await
    .expect("client");
    check_report(&report);
    assert_eq!(
        provider.last_headers().expect("request")["authorization"],
        "Bearer sk-provider"
    );
    assert_eq!(provider.last_body().expect("body")["model"], "mock-gpt");
    assert!(
        gw.metric("sluice_gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"gpt-small\",gen_ai_token_type=\"input\"}")
            .await
            >= 3.0,
        "every call accounted, streams included"
    );
}

struct LiteLlm {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn litellm(mock_url: &str) -> LiteLlm {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: mock-gpt\n    litellm_params: {{model: openai/mock-gpt, api_base: \"{mock_url}\", api_key: sk-mock}}\n\
             \x20 - model_name: mock-secret\n    litellm_params: {{model: openai/secret-model, api_base: \"{mock_url}\", api_key: sk-mock}}\n\
             litellm_settings: {{num_retries: 0, request_timeout: 30, telemetry: false}}\n\
             general_settings: {{master_key: sk-local-master}}\n"
        ),
    )
    .expect("litellm config");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("litellm.log")).expect("log");
    let child = Command::new(need(peers().join("litellm/bin/litellm")))
        .arg("--config")
        .arg(&cfg)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("litellm");
    let l = LiteLlm {
        child,
        port,
        _dir: dir,
    };
    let url = format!("http://127.0.0.1:{port}/health/liveliness");
    let client = reqwest::Client::new();
    eventually_for("LiteLLM is up", 120, async || {
        support::answers_ok(&client, &url).await
    })
    .await;
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_to_litellm() {
    let provider = mock().await;
    let proxy = litellm(&provider.url()).await;
    let gw = Gateway::start_with_env(
        &config(
            &format!("http://127.0.0.1:{}/v1", proxy.port),
            "mock-gpt",
            true,
        ),
        &[("SLUICE_TEST_PROVIDER_KEY", "sk-local-master")],
    )
    .await;
    // A model chosen outside the body the decision read: LiteLLM prefers a
    // `model` in the query string over the body's. Refused, and nothing
    // reaches LiteLLM's provider.
    let client = reqwest::Client::new();
    for (path, body) in [
        (
            "/v1/chat/completions?model=mock-secret",
            r#"{"model":"gpt-small","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/v1/embeddings?model=mock-secret",
            r#"{"model":"gpt-small","input":"hi"}"#,
        ),
    ] {
        let resp = client
            .post(gw.url(path))
            .bearer_auth("alice-key")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{path}");
        let text = resp.text().await.expect("body");
        assert!(text.contains("query strings are not accepted"), "{text}");
    }
    assert_eq!(provider.requests(), 0, "no model ran for a refused call");
    let base = gw.url("/v1");
    let report = tokio::task::spawn_blocking(move || {
        sdk(&base, "alice-key", "gpt-small", Some("gpt-large"))
    })
    .await
    .expect("client");
    check_report(&report);
    assert!(provider.requests() >= 3, "LiteLLM reached the provider");
    assert_eq!(
        provider.last_headers().expect("request")["authorization"],
        "Bearer sk-mock",
        "LiteLLM used its own provider key"
    );
    assert!(
        gw.metric("sluice_gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"gpt-small\",gen_ai_token_type=\"output\"}")
            .await
            >= 3.0
    );
}
