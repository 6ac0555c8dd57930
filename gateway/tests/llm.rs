//! Model traffic through the gateway against the project's mock provider:
//! identity injection, byte-identical streams, `include_usage` added and
//! stripped, fallback before the first byte and never after, model RBAC in
//! the OpenAI error shape, token-per-minute reservations, budgets, metrics
//! and audit.

mod support;

use futures::StreamExt;
use sluice_demo::llm::{spawn_llm, LlmOptions, LlmServer};
use sluice_gateway::identity::hash_key;
use support::*;

const LLM_KEY: &str = "sk-upstream-7a1c";

struct Env {
    /// Holds the port of the `gone` upstream: nothing listens there.
    _gone: tokio::net::TcpSocket,
    gw: Gateway,
    primary: LlmServer,
    backup: LlmServer,
    fragile: Fault,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let primary = spawn_llm("127.0.0.1:0".parse().expect("addr"), LlmOptions::default())
        .await
        .expect("mock");
    let backup = spawn_llm("127.0.0.1:0".parse().expect("addr"), LlmOptions::default())
        .await
        .expect("mock");
    let fragile = fault_upstream(Mode::SseThenReset).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let fragile_url = format!("http://{}/v1", fragile.addr);
    let (gone_socket, gone_port) = closed_port();
    let config = format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
tenants: [acme, globex]
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, tenants: [acme], roles: [dev] }}
    - {{ id: bob, sha256: "{bob}", subject: bob, tenants: [acme], roles: [intern] }}
    - {{ id: carol, sha256: "{carol}", subject: carol, tenants: [globex], roles: [dev] }}
roles:
  - {{ name: dev, allow: ["models:primary/*:use"] }}
  - {{ name: intern, allow: ["models:primary/mock-mini:use"] }}
upstreams:
  - name: primary
    url: "{primary}"
    inject:
      credential: {{ secret: {{ env: SLUICE_TEST_LLM_KEY }} }}
      tenant_credentials: [{{ tenant: globex, secret: {{ env: SLUICE_TEST_GLOBEX_KEY }} }}]
      llm_metadata: true
  - {{ name: backup, url: "{backup}" }}
  - {{ name: fragile, url: "{fragile}" }}
  - {{ name: gone, url: "{gone}", retries: {{ attempts: 0 }} }}
routes:
  - {{ name: llm, path: /v1, upstream: primary, transport: llm }}
llm:
  models:
    - name: mock-gpt
      targets: [{{ upstream: primary }}, {{ upstream: backup, model: backup-gpt, weight: 0 }}]
    - {{ name: mock-mini, targets: [{{ upstream: primary }}] }}
    - name: fragile-gpt
      targets: [{{ upstream: fragile, model: mock-gpt }}, {{ upstream: backup, weight: 0 }}]
    - {{ name: dead-gpt, targets: [{{ upstream: gone }}] }}
    - name: gone-gpt
      targets: [{{ upstream: gone, model: mock-gpt }}, {{ upstream: backup, model: rescued, weight: 0 }}]
  prices:
    - {{ model: mock-gpt, input_per_mtok: 1000000, output_per_mtok: 2000000 }}
  budgets:
    - {{ name: globex-daily, tenant: globex, tokens: 60 }}
  audit_text: true
  token_limits:
    - {{ name: tpm-mini, match: {{ models: [mock-mini] }}, per: [subject], tokens_per_minute: 2000 }}
audit: {{ file: "{audit}", sample_rate: 1.0, redact: [/messages/0/content] }}
"#,
        alice = hash_key("alice-key"),
        bob = hash_key("bob-key"),
        carol = hash_key("carol-key"),
        primary = primary.url(),
        backup = backup.url(),
        fragile = fragile_url,
        gone = format_args!("http://127.0.0.1:{gone_port}/v1"),
        audit = audit.display(),
    );
    let gw = Gateway::start_with_env(
        &config,
        &[
            ("SLUICE_TEST_LLM_KEY", LLM_KEY),
            ("SLUICE_TEST_GLOBEX_KEY", "sk-globex-team"),
        ],
    )
    .await;
    Env {
        gw,
        primary,
        backup,
        fragile,
        audit,
        _dir: dir,
        _gone: gone_socket,
    }
}

async fn chat(
    url: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .json(&body)
        .send()
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

fn hello(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "say hello to the gateway"}]})
}

#[tokio::test]
async fn a_call_goes_upstream_as_the_gateway_with_the_user_named() {
    let e = env().await;
    let (s, _, body) = chat(
        &e.gw.url("/v1/chat/completions"),
        "alice-key",
        hello("mock-gpt"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["usage"]["total_tokens"], 16,
        "6 prompt words, 10 answer words"
    );
    let seen = e.primary.last_headers().expect("a request");
    assert_eq!(seen["authorization"], format!("Bearer {LLM_KEY}"));
    assert!(
        !format!("{seen:?}").contains("alice-key"),
        "the client's key stops at the gateway"
    );
    let sent = e.primary.last_body().expect("body");
    assert_eq!(sent["user"], "alice");
    assert_eq!(
        sent["metadata"]["end_user"], "alice",
        "LiteLLM's metadata names the user"
    );
    assert_eq!(sent["metadata"]["tags"][0], "tenant:acme");
    // Another tenant's callers go upstream with that tenant's own key.
    let (s, _, _) = chat(
        &e.gw.url("/v1/chat/completions"),
        "carol-key",
        hello("mock-gpt"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        e.primary.last_headers().expect("a request")["authorization"],
        "Bearer sk-globex-team"
    );
    assert!(e.gw.metric("sluice_gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"mock-gpt\",gen_ai_token_type=\"output\"}").await >= 10.0);
    // 6 prompt tokens at $1 each, 10 completion tokens at $2 each.
    assert_eq!(
        e.gw.metric("sluice_llm_cost_usd_total{model=\"mock-gpt\",tenant=\"acme\"}")
            .await,
        26.0
    );
    eventually(
        "the call is audited with tokens, cost and text",
        async || {
            std::fs::read_to_string(&e.audit)
                .unwrap_or_default()
                .lines()
                .any(|l| {
                    l.contains("\"total_tokens\":16")
                        && l.contains("\"cost_usd\":26.0")
                        && l.contains("\"alice\"")
                        && l.contains("\"completion\":\"word word")
                        && l.contains("[REDACTED]")
                })
        },
    )
    .await;
    let trail = std::fs::read_to_string(&e.audit).unwrap_or_default();
    assert!(
        !trail.contains("say hello to the gateway"),
        "redacted prompt text never lands"
    );
    assert!(
        !trail.contains(LLM_KEY) && !trail.contains("alice-key"),
        "no secrets in audit"
    );
    let models = reqwest::Client::new()
        .get(e.gw.url("/v1/models"))
        .header("authorization", "Bearer bob-key")
        .send()
        .await
        .expect("models")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["mock-mini"], "only the models bob may use");
}

#[tokio::test]
async fn a_model_not_granted_is_a_403_in_the_openai_shape() {
    let e = env().await;
    let (s, _, body) = chat(
        &e.gw.url("/v1/chat/completions"),
        "bob-key",
        hello("mock-gpt"),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["type"], "permission_error");
    assert_eq!(v["error"]["code"], "model_not_allowed");
    let (s, _, body) = chat(
        &e.gw.url("/v1/chat/completions"),
        "alice-key",
        hello("no-such-model"),
    )
    .await;
    assert_eq!(s, 404, "{body}");
    assert_eq!(e.primary.requests(), 0, "nothing reached the upstream");
}

/// The raw SSE bytes of a streamed chat call.
async fn stream_bytes(url: &str, key: Option<&str>, body: &serde_json::Value) -> String {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = req.send().await.expect("response");
    assert_eq!(resp.status(), 200);
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn streams_are_byte_identical_and_usage_is_counted_either_way() {
    let e = env().await;
    let url = e.gw.url("/v1/chat/completions");
    let direct = format!("{}/chat/completions", e.primary.url());
    for asked in [false, true] {
        let mut body = hello("mock-gpt");
        body["stream"] = true.into();
        body["user"] = "alice".into();
        if asked {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        let through = stream_bytes(&url, Some("alice-key"), &body).await;
        let upstream_saw = e.primary.last_body().expect("body");
        assert_eq!(upstream_saw["stream_options"]["include_usage"], true);
        let expected = stream_bytes(&direct, None, &body).await;
        assert_eq!(through, expected, "asked for usage: {asked}");
        assert_eq!(through.contains("\"usage\""), asked);
    }
    assert!(
        e.gw.metric("sluice_gen_ai_client_token_usage_count{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"mock-gpt\",gen_ai_token_type=\"output\"}")
            .await
            >= 2.0,
        "both streams were accounted"
    );
    assert!(
        e.gw.metric("sluice_gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"mock-gpt\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_failing_target_falls_back_before_the_first_byte_only() {
    let e = env().await;
    let url = e.gw.url("/v1/chat/completions");
    for status in [500, 429] {
        e.primary.fail_with(status);
        let (s, _, body) = chat(&url, "alice-key", hello("mock-gpt")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(e.backup.last_body().expect("backup")["model"], "backup-gpt");
    }
    assert_eq!(e.backup.requests(), 2);
    // Nothing listens behind `gone`: the connect fails, the backup answers.
    let (s, _, body) = chat(&url, "alice-key", hello("gone-gpt")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(e.backup.last_body().expect("backup")["model"], "rescued");
    assert_eq!(e.backup.requests(), 3);
    e.primary.fail_with(0);
    // The fragile target starts answering, then dies: the client sees the
    // start and a cut, and the call is not replayed elsewhere.
    let mut body = hello("fragile-gpt");
    body["stream"] = true.into();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("authorization", "Bearer alice-key")
        .json(&body)
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut s = resp.bytes_stream();
    let first = s.next().await.expect("a chunk").expect("bytes");
    assert!(!first.is_empty());
    e.fragile.reset();
    while let Some(Ok(_)) = s.next().await {}
    assert_eq!(e.backup.requests(), 3, "no fallback after the first byte");
    assert!(
        e.gw.metric("sluice_llm_fallbacks_total{reason=\"5xx\",upstream=\"primary\"}")
            .await
            >= 1.0
    );
    assert!(
        e.gw.metric("sluice_llm_fallbacks_total{reason=\"429\",upstream=\"primary\"}")
            .await
            >= 1.0
    );
    assert!(
        e.gw.metric("sluice_llm_fallbacks_total{reason=\"connect\",upstream=\"gone\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn token_limits_reserve_then_reconcile_and_budgets_run_out() {
    let e = env().await;
    let url = e.gw.url("/v1/chat/completions");
    // 2000 tokens a minute: each call reserves ~1550 (prompt + max_tokens)
    // and uses ~15, so only reconciliation lets the next one in.
    for _ in 0..3 {
        let mut body = hello("mock-mini");
        body["max_tokens"] = 1500.into();
        let (s, _, text) = chat(&url, "bob-key", body).await;
        assert_eq!(s, 200, "{text}");
    }
    let mut too_big = hello("mock-mini");
    too_big["max_tokens"] = 5000.into();
    let (s, _, text) = chat(&url, "bob-key", too_big).await;
    assert_eq!(s, 429, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["error"]["code"], "tokens_exceed_limit");
    assert_eq!(e.primary.requests(), 3, "refused before the upstream");

    // globex has 60 tokens a day; each call uses 16: four calls start
    // below the budget, the fifth finds it spent.
    let mut calls = 0;
    loop {
        let (s, headers, text) = chat(&url, "carol-key", hello("mock-gpt")).await;
        if s == 429 {
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            assert_eq!(v["error"]["type"], "insufficient_quota");
            assert!(v["error"]["message"]
                .as_str()
                .expect("message")
                .contains("globex-daily"));
            assert!(headers.contains_key("retry-after"));
            break;
        }
        assert_eq!(s, 200, "{text}");
        calls += 1;
        assert!(calls <= 4, "the budget must stop calls");
    }
    assert_eq!(calls, 4);
    assert_eq!(
        e.gw.metric("sluice_llm_budget_remaining{budget=\"globex-daily\",unit=\"tokens\"}")
            .await,
        0.0
    );
    // Beside what is left, what the budget allows: the near-exhaustion
    // alert (config/prometheus) divides one by the other.
    assert_eq!(
        e.gw.metric("sluice_llm_budget_limit{budget=\"globex-daily\",unit=\"tokens\"}")
            .await,
        60.0
    );
}

#[tokio::test]
async fn every_endpoint_is_governed_and_accounted() {
    let e = env().await;
    let cases = [
        (
            "/v1/embeddings",
            serde_json::json!({"model": "mock-gpt", "input": "three little words"}),
            "embeddings",
        ),
        (
            "/v1/completions",
            serde_json::json!({"model": "mock-gpt", "prompt": "once upon a time"}),
            "text_completion",
        ),
        (
            "/v1/responses",
            serde_json::json!({"model": "mock-gpt", "input": "hello there", "stream": true}),
            "chat",
        ),
        (
            "/v1/messages",
            serde_json::json!({"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": true}),
            "chat",
        ),
        (
            "/v1/messages",
            serde_json::json!({"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
            "chat",
        ),
    ];
    for (path, body, op) in cases {
        let (s, _, text) = chat(&e.gw.url(path), "alice-key", body).await;
        assert_eq!(s, 200, "{path}: {text}");
        let series = format!(
            "sluice_gen_ai_client_token_usage_count{{gen_ai_operation_name=\"{op}\",gen_ai_request_model=\"mock-gpt\",gen_ai_token_type=\"input\"}}"
        );
        eventually("usage read from the answer", async || {
            e.gw.metric(&series).await >= 1.0
        })
        .await;
        let (s, _, _) = chat(
            &e.gw.url(path),
            "bob-key",
            serde_json::json!({"model": "mock-gpt"}),
        )
        .await;
        assert_eq!(s, 403, "{path}: the grant applies to every endpoint");
    }
    // The Anthropic stream's output tokens come from `message_delta`.
    assert!(
        e.gw.metric("sluice_gen_ai_client_token_usage_sum{gen_ai_operation_name=\"chat\",gen_ai_request_model=\"mock-gpt\",gen_ai_token_type=\"output\"}")
            .await
            >= 10.0
    );
    // Every target down: a 502 in the OpenAI shape.
    let (s, _, text) = chat(
        &e.gw.url("/v1/chat/completions"),
        "alice-key",
        hello("dead-gpt"),
    )
    .await;
    assert_eq!(s, 502, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["error"]["type"], "server_error");
    let (s, _, text) = chat(&e.gw.url("/v1/nope"), "alice-key", hello("mock-gpt")).await;
    assert_eq!(s, 404, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).expect("json")["error"]["code"],
        "unknown_endpoint"
    );
}

#[tokio::test]
async fn an_http2_client_reaches_an_http1_provider() {
    let e = env().await;
    // The gateway's listener speaks h2c; the provider only HTTP/1.1, so the
    // upstream request must go out as HTTP/1.1 whatever the client spoke.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = client
        .post(e.gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer alice-key")
        .json(&serde_json::json!({"model": "mock-gpt", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("stream");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}
