//! Identity, tenants, RBAC, injection and audit through the real gateway:
//! a role × tool matrix, tenant isolation with zero upstream calls, session
//! binding, no token passthrough (checked at a recording upstream), list
//! filtering seen by real clients, and the audit trail.

mod support;

use std::sync::atomic::Ordering;

use sluice_gateway::identity::hash_key;
use support::*;

const UPSTREAM_SECRET: &str = "upstream-secret-7f3a";
const HS_SECRET: &str = "hs256-test-secret-0123456789abcdef";

/// Per-user upstream credentials live beside the audit file: one per subject.
fn users_dir(audit: &std::path::Path) -> std::path::PathBuf {
    let dir = audit.with_file_name("users");
    std::fs::create_dir_all(&dir).expect("users dir");
    std::fs::write(dir.join("alice"), "alice-upstream-token\n").expect("alice's credential");
    dir
}

fn config(demo: &str, recorder: &str, globex: &str, audit: &std::path::Path) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
tenants: [acme, globex]
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, tenants: [acme], roles: [reader] }}
    - {{ id: bob, sha256: "{bob}", subject: bob, tenants: [acme], roles: [writer] }}
    - {{ id: gina, sha256: "{gina}", subject: gina, tenants: [globex], roles: [writer] }}
    - {{ id: multi, sha256: "{multi}", subject: multi, tenants: [acme, globex], roles: [writer] }}
  jwt:
    - {{ issuer: "https://idp.test", hs256_secret: {{ env: SLUICE_TEST_HS }}, algorithms: [HS256] }}
roles:
  - name: reader
    allow: ["tools:demo/get-sum:call", "tools:demo/echo:call", "tools:rec/*:call", "tools:recreuse/*:call", "tools:demo/ghost-tool:call", "tools:onbehalf/*:call"]
  - name: writer
    allow:
      - "tools:demo/*:call"
      - "tools:recreuse/*:call"
      - "tools:gdemo/*:call"
      - scope: "tools:rec/get-sum:call"
        when: [{{ pointer: /a, max: 100 }}]
      - scope: "tools:demo/echo:call"
        when: [{{ pointer: /no_such_argument, equals: 1 }}]
    deny: ["tools:demo/slow:call"]
upstreams:
  - {{ name: demo, url: "{demo}", tenants: [acme] }}
  - name: rec
    url: "{recorder}"
    tenants: [acme]
    inject:
      credential: {{ header: x-upstream-key, prefix: "Key ", secret: {{ env: SLUICE_TEST_UPSTREAM_KEY }} }}
      assertion_header: x-sluice-identity
  - {{ name: gdemo, url: "{globex}", tenants: [globex] }}
  - name: recreuse
    url: "{recorder}"
    tenants: [acme]
    inject: {{ assertion_header: x-sluice-identity, assertion_reuse_s: 30 }}
  - name: onbehalf
    url: "{recorder}"
    tenants: [acme]
    inject: {{ user_credentials: {{ dir: "{users}", header: authorization, prefix: "Bearer " }} }}
routes:
  - {{ name: onbehalf, path: /onbehalf/mcp, upstream: onbehalf }}
  - {{ name: demo, path: /mcp, upstream: demo }}
  - {{ name: rec, path: /rec/mcp, upstream: rec }}
  - {{ name: recreuse, path: /rec-reuse/mcp, upstream: recreuse }}
  - {{ name: gdemo, path: /globex/mcp, upstream: gdemo }}
audit: {{ file: "{audit}", sample_rate: 1.0, include_arguments: true, redact: [/secret] }}
"#,
        alice = hash_key("alice-key"),
        bob = hash_key("bob-key"),
        gina = hash_key("gina-key"),
        multi = hash_key("multi-key"),
        audit = audit.display(),
        users = users_dir(audit).display(),
    )
}

const ENV: [(&str, &str); 2] = [
    ("SLUICE_TEST_HS", HS_SECRET),
    ("SLUICE_TEST_UPSTREAM_KEY", UPSTREAM_SECRET),
];

fn call_body(tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    )
}

/// A stateless 2026-07-28 call with the given credentials and headers.
async fn call(
    url: &str,
    key: Option<&str>,
    tool: &str,
    args: &str,
    extra: &[(&str, &str)],
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let mut h = vec![
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    let auth = key.map(|k| format!("Bearer {k}"));
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    h.extend_from_slice(extra);
    let (s, headers, body) = post(&reqwest::Client::new(), url, call_body(tool, args), &h).await;
    (s, rpc_json(&body), headers)
}

struct Env {
    gw: Gateway,
    rec: Recorder,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _demos: (DemoServer, DemoServer),
}

async fn env() -> Env {
    let demo = demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await;
    let globex = demo_globex().await;
    let (addr, rec) = recording_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let audit = dir.path().join("audit.jsonl");
    let yaml = config(
        &demo.url(),
        &format!("http://{addr}/mcp"),
        &globex.url(),
        &audit,
    );
    let gw = Gateway::start_with_env(&yaml, &ENV).await;
    Env {
        gw,
        rec,
        audit,
        _dir: dir,
        _demos: (demo, globex),
    }
}

async fn demo_globex() -> DemoServer {
    demo(DemoOptions {
        json_response: true,
        ..Default::default()
    })
    .await
}

fn text(v: &serde_json::Value) -> Option<&str> {
    v["result"]["content"][0]["text"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_is_required_and_discoverable() {
    let e = env().await;
    let (s, v, h) = call(&e.gw.url("/mcp"), None, "get-sum", r#"{"a":1,"b":2}"#, &[]).await;
    assert_eq!(s, 401, "{v}");
    let challenge = h
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .expect("challenge")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer resource_metadata=\""),
        "{challenge}"
    );
    let (s, _, h) = call(
        &e.gw.url("/mcp"),
        Some("wrong-key"),
        "get-sum",
        r#"{"a":1,"b":2}"#,
        &[],
    )
    .await;
    assert_eq!(s, 401);
    assert!(h.get("www-authenticate").is_some());
    let meta: serde_json::Value =
        reqwest::get(e.gw.url("/.well-known/oauth-protected-resource/mcp"))
            .await
            .expect("metadata")
            .json()
            .await
            .expect("json");
    assert!(meta["resource"].as_str().is_some(), "{meta}");
    // JWTs: right audience passes, any other is refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = |aud: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss":"https://idp.test","sub":"jay","aud":aud,"exp":now+300,"tenant":"acme","roles":["reader"]}),
            &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
        )
        .expect("token")
    };
    let (s, v, _) = call(
        &e.gw.url("/mcp"),
        Some(&token("sluice-test")),
        "get-sum",
        r#"{"a":1,"b":2}"#,
        &[],
    )
    .await;
    assert_eq!((s, text(&v)), (200, Some("3")), "{v}");
    let (s, _, _) = call(
        &e.gw.url("/mcp"),
        Some(&token("someone-else")),
        "get-sum",
        r#"{"a":1,"b":2}"#,
        &[],
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_by_tool_matrix_and_argument_conditions() {
    let e = env().await;
    let url = e.gw.url("/mcp");
    // (key, tool, args, expected text or JSON-RPC error code)
    let cases: &[(&str, &str, &str, Result<&str, i64>)] = &[
        ("alice-key", "get-sum", r#"{"a":1,"b":2}"#, Ok("3")),
        ("alice-key", "echo", r#"{"message":"hi"}"#, Ok("hi")),
        ("alice-key", "payload", r#"{"size":3}"#, Err(-32602)),
        ("alice-key", "slow", r#"{"ms":1}"#, Err(-32602)),
        ("bob-key", "payload", r#"{"size":3}"#, Ok("xxx")),
        ("bob-key", "get-sum", r#"{"a":1,"b":2}"#, Ok("3")),
        ("bob-key", "slow", r#"{"ms":1}"#, Err(-32602)),
    ];
    for (key, tool, args, want) in cases {
        let (s, v, _) = call(&url, Some(key), tool, args, &[]).await;
        assert_eq!(s, 200, "{key} {tool}: {v}");
        match want {
            Ok(t) => assert_eq!(text(&v), Some(*t), "{key} {tool}: {v}"),
            Err(code) => {
                assert_eq!(
                    v["error"]["code"].as_i64(),
                    Some(*code),
                    "{key} {tool}: {v}"
                );
                assert_eq!(v["id"].as_i64(), Some(7));
            }
        }
    }
    // A hidden tool answers exactly like a tool that does not exist.
    let (_, hidden, _) = call(&url, Some("alice-key"), "payload", "{}", &[]).await;
    assert_eq!(
        hidden["error"]["message"].as_str(),
        Some("Unknown tool: payload")
    );
    // Conditions on arguments, decided before the upstream is touched.
    let rec = e.gw.url("/rec/mcp");
    let before = e.rec.calls.load(Ordering::SeqCst);
    let (_, v, _) = call(&rec, Some("bob-key"), "get-sum", r#"{"a":500,"b":1}"#, &[]).await;
    assert_eq!(v["error"]["code"].as_i64(), Some(-32602), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("denied by policy"),
        "{v}"
    );
    assert_eq!(
        e.rec.calls.load(Ordering::SeqCst),
        before,
        "denied calls never reach the upstream"
    );
    // A repeated key cannot smuggle other arguments past the condition.
    let (_, v, _) = call(
        &rec,
        Some("bob-key"),
        "get-sum",
        r#"{"a":50,"a":500,"b":1}"#,
        &[],
    )
    .await;
    assert_eq!(v["error"]["code"].as_i64(), Some(-32602), "{v}");
    assert_eq!(e.rec.calls.load(Ordering::SeqCst), before);
    let (_, v, _) = call(&rec, Some("bob-key"), "get-sum", r#"{"a":50,"b":1}"#, &[]).await;
    assert_eq!(text(&v), Some("recorded"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let e = env().await;
    let sum = r#"{"a":1,"b":2}"#;
    // (route, key, X-Tenant-ID, status): another tenant's upstream does not
    // exist; a caller with several tenants must name one of its own.
    let refused: &[(&str, &str, Option<&str>, u16)] = &[
        ("/rec/mcp", "gina-key", None, 404),
        ("/rec/mcp", "multi-key", None, 400),
        ("/rec/mcp", "multi-key", Some("initech"), 403),
        ("/rec/mcp", "multi-key", Some("globex"), 404),
        ("/rec/mcp", "alice-key", Some("globex"), 403),
    ];
    let before = e.rec.calls.load(Ordering::SeqCst);
    for (path, key, tenant, want) in refused {
        let extra: Vec<(&str, &str)> = tenant.iter().map(|t| ("x-tenant-id", *t)).collect();
        let (s, v, _) = call(&e.gw.url(path), Some(key), "get-sum", sum, &extra).await;
        assert_eq!(s, *want, "{path} {key} {tenant:?}: {v}");
    }
    assert_eq!(
        e.rec.calls.load(Ordering::SeqCst),
        before,
        "no refused request reached the upstream"
    );
    let (s, v, _) = call(
        &e.gw.url("/globex/mcp"),
        Some("gina-key"),
        "get-sum",
        sum,
        &[],
    )
    .await;
    assert_eq!((s, text(&v)), (200, Some("3")));
    let (s, v, _) = call(
        &e.gw.url("/rec/mcp"),
        Some("multi-key"),
        "get-sum",
        sum,
        &[("x-tenant-id", "acme")],
    )
    .await;
    assert_eq!((s, text(&v)), (200, Some("recorded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_belong_to_their_creator() {
    let e = env().await;
    let c = reqwest::Client::new();
    let url = e.gw.url("/mcp");
    let (s, h, body) = post(&c, &url, r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#, &[("authorization", "Bearer alice-key")]).await;
    assert_eq!(s, 200, "{body}");
    let sid = h
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("sid")
        .to_owned();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":1}}}"#;
    let mine = [
        ("authorization", "Bearer alice-key"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (s, _, body) = post(&c, &url, call, &mine).await;
    assert_eq!(s, 200, "{body}");
    let theirs = [
        ("authorization", "Bearer bob-key"),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (s, _, body) = post(&c, &url, call, &theirs).await;
    assert_eq!(s, 404, "another subject's session is unknown to it: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_never_sees_the_client_token_and_always_the_injected_identity() {
    let e = env().await;
    let (s, v, _) = call(
        &e.gw.url("/rec/mcp"),
        Some("alice-key"),
        "anything",
        r#"{"secret":"s3"}"#,
        &[
            ("cookie", "sid=abc"),
            ("x-api-key", "alice-key"),
            ("x-sluice-identity", "forged"),
        ],
    )
    .await;
    assert_eq!((s, text(&v)), (200, Some("recorded")), "{v}");
    let seen = e
        .rec
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    let all = format!("{seen:?}");
    assert!(
        !all.contains("alice-key"),
        "client credential leaked upstream: {all}"
    );
    assert!(seen.get("cookie").is_none() && seen.get("authorization").is_none());
    assert_eq!(
        seen.get("x-upstream-key").and_then(|v| v.to_str().ok()),
        Some(format!("Key {UPSTREAM_SECRET}").as_str())
    );
    let assertion = seen
        .get("x-sluice-identity")
        .and_then(|v| v.to_str().ok())
        .expect("assertion");
    assert_ne!(assertion, "forged");
    // Verify it with the key set the gateway publishes.
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(e.gw.url("/.well-known/sluice/jwks.json"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["rec"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation)
        .expect("valid assertion")
        .claims;
    assert_eq!(
        (claims["sub"].as_str(), claims["tenant"].as_str()),
        (Some("alice"), Some("acme")),
        "{claims}"
    );
    assert!(claims["exp"].as_u64().unwrap_or(0) <= claims["iat"].as_u64().unwrap_or(0) + 120);
}

/// The claims of the last assertion the recording upstream received.
fn last_assertion(rec: &Recorder) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let seen = rec
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    let token = seen
        .get("x-sluice-identity")
        .and_then(|v| v.to_str().ok())
        .expect("assertion")
        .to_owned();
    let payload = token.split('.').nth(1).expect("jwt payload");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    (token, serde_json::from_slice(&claims).expect("claims"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_are_per_request_unless_the_upstream_allows_reuse() {
    let e = env().await;
    let mut per_request = Vec::new();
    let mut reused = Vec::new();
    for _ in 0..2 {
        for (path, seen) in [
            ("/rec/mcp", &mut per_request),
            ("/rec-reuse/mcp", &mut reused),
        ] {
            let (s, v, _) = call(&e.gw.url(path), Some("alice-key"), "anything", "{}", &[]).await;
            assert_eq!(s, 200, "{v}");
            seen.push(last_assertion(&e.rec));
        }
    }
    assert_ne!(
        per_request[0].0, per_request[1].0,
        "one assertion per request"
    );
    assert!(per_request[0].1["request_id"].is_string());
    assert_ne!(
        per_request[0].1["request_id"],
        per_request[1].1["request_id"]
    );
    assert_eq!(reused[0].0, reused[1].0, "reused within the window");
    assert_eq!(reused[0].1["aud"], "recreuse");
    assert_eq!(reused[0].1["sub"], "alice");
    assert!(reused[0].1.get("request_id").is_none(), "{}", reused[0].1);
    // Another caller never gets alice's.
    let (s, v, _) = call(
        &e.gw.url("/rec-reuse/mcp"),
        Some("bob-key"),
        "anything",
        "{}",
        &[],
    )
    .await;
    assert_eq!((s, text(&v)), (200, Some("recorded")), "{v}");
    let (token, claims) = last_assertion(&e.rec);
    assert_ne!(token, reused[0].0);
    assert_eq!(claims["sub"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_results_show_only_what_the_caller_may_use() {
    use rmcp::model::ClientConfig;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::ServiceExt;
    let demo = demo(DemoOptions::default()).await;
    let globex = demo_globex().await;
    let (addr, _rec) = recording_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let yaml = config(
        &demo.url(),
        &format!("http://{addr}/mcp"),
        &globex.url(),
        &dir.path().join("a.jsonl"),
    );
    let gw = Gateway::start_with_env(&yaml, &ENV).await;
    // rmcp, over SSE responses.
    let t = rmcp::transport::StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gw.url("/mcp")).auth_header("alice-key"),
    );
    let client = ClientConfig::default().serve(t).await.expect("initialize");
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["echo", "get-sum"]);
    client.cancel().await.expect("close");
    // The official Python SDK, both lifecycles.
    let py = std::env::var_os("SLUICE_PEERS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers"))
        .join("venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/sdk_client.py");
    assert!(py.exists() && script.exists(), "run `bash .ci/setup` first");
    for mode in ["legacy", "auto"] {
        let out = std::process::Command::new(&py)
            .arg(&script)
            .args([
                gw.url("/mcp").as_str(),
                "get-sum",
                r#"{"a":2,"b":3}"#,
                mode,
                "Authorization=Bearer alice-key",
            ])
            .output()
            .expect("python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("['get-sum', 'echo']") || stdout.starts_with("['echo', 'get-sum']"),
            "{mode}: {stdout}"
        );
        assert!(stdout.contains("False ['5']"), "{mode}: {stdout}");
    }
    assert!(
        gw.metric(r#"sluice_list_items_hidden_total{route="demo"}"#)
            .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_audited_without_secrets() {
    let e = env().await;
    let url = e.gw.url("/rec/mcp");
    call(
        &url,
        Some("alice-key"),
        "get-sum",
        r#"{"a":1,"b":2,"secret":"hunter2"}"#,
        &[],
    )
    .await;
    call(&url, Some("bob-key"), "get-sum", r#"{"a":900,"b":2}"#, &[]).await;
    call(
        &e.gw.url("/mcp"),
        Some("alice-key"),
        "slow",
        r#"{"ms":1}"#,
        &[],
    )
    .await;
    call(&url, Some("nobody-key"), "get-sum", "{}", &[]).await;
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&e.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    eventually("four audit events", async || read().len() >= 4).await;
    let lines = read();
    assert!(lines.len() >= 4, "{lines:?}");
    let raw = std::fs::read_to_string(&e.audit).expect("audit");
    for secret in ["hunter2", "alice-key", UPSTREAM_SECRET, HS_SECRET] {
        assert!(!raw.contains(secret), "{secret} in the audit trail");
    }
    let allowed = lines
        .iter()
        .find(|l| l["subject"] == "alice" && l["route"] == "rec")
        .expect("allowed event");
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["tenant"], "acme");
    assert_eq!(allowed["target"], "get-sum");
    assert_eq!(allowed["arguments"]["secret"], "[REDACTED]");
    assert_eq!(allowed["arguments_digest"].as_str().map(str::len), Some(64));
    assert!(allowed["policy_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("1-")));
    let denied = lines
        .iter()
        .find(|l| l["subject"] == "bob")
        .expect("denied event");
    assert_eq!(
        (denied["decision"].as_str(), denied["reason"].as_str()),
        (Some("deny"), Some("policy_conditions"))
    );
    let hidden = lines
        .iter()
        .find(|l| l["target"] == "slow")
        .expect("hidden event");
    assert_eq!(hidden["reason"], "policy_hidden");
    assert!(lines
        .iter()
        .any(|l| l["reason"] == "invalid_api_key" && l["decision"] == "deny"));
    let ids: std::collections::HashSet<_> =
        lines.iter().map(|l| l["event_id"].to_string()).collect();
    assert_eq!(ids.len(), lines.len(), "event ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_credentials_for_upstreams_acting_on_behalf_of_the_caller() {
    let e = env().await;
    let url = e.gw.url("/onbehalf/mcp");
    let (s, v, _) = call(&url, Some("alice-key"), "anything", "{}", &[]).await;
    assert_eq!((s, text(&v)), (200, Some("recorded")), "{v}");
    let seen = e
        .rec
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request");
    assert_eq!(
        seen.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer alice-upstream-token"),
        "the upstream sees alice's own credential, not her gateway key"
    );
    let before = e.rec.calls.load(Ordering::SeqCst);
    let (s, v, _) = call(&url, Some("bob-key"), "anything", "{}", &[]).await;
    assert_eq!(s, 403, "bob has connected no account: {v}");
    assert_eq!(e.rec.calls.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_and_batches_cannot_slip_past_policy() {
    let e = env().await;
    let c = reqwest::Client::new();
    let before = e.rec.calls.load(Ordering::SeqCst);
    let auth = [
        ("authorization", "Bearer alice-key"),
        ("mcp-protocol-version", "2025-03-26"),
    ];
    // A call sent as a notification (no id) is still decided.
    let bob = [
        ("authorization", "Bearer bob-key"),
        ("mcp-protocol-version", "2025-03-26"),
    ];
    let (s, _, body) = post(&c, &e.gw.url("/rec/mcp"), r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get-sum","arguments":{"a":999}}}"#, &bob).await;
    assert_eq!(
        (s, rpc_json(&body)["error"]["code"].as_i64()),
        (200, Some(-32602)),
        "{body}"
    );
    // A 2025-03-26 batch: each call is decided; a list inside it cannot be filtered, so it is refused.
    let (s, _, body) = post(&c, &e.gw.url("/rec/mcp"), r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#, &auth).await;
    assert_eq!(s, 400, "{body}");
    let (s, _, body) = post(&c, &e.gw.url("/mcp"), r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":1,"b":1}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"ms":1}}}]"#, &auth).await;
    assert_eq!(
        (s, rpc_json(&body)["error"]["code"].as_i64()),
        (200, Some(-32602)),
        "one hidden call refuses the batch: {body}"
    );
    assert_eq!(e.rec.calls.load(Ordering::SeqCst), before);
}
