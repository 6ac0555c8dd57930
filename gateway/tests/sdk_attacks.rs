//! Conditions, approvals and resource scopes against the official Python
//! SDK's own server (`tests/peers/sdk_server.py`), which validates leniently
//! (`"500"` reaches an `int` parameter as 500) and resolves `..` in file
//! URIs: what the gateway lets through is what that server runs, and its log
//! of what ran is the proof.

mod support;

use std::path::Path;

use sluice_gateway::identity::hash_key;
use support::peers::SdkServer;
use support::*;

fn config(upstream: &str, audit: &Path) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, roles: [payer] }}
roles:
  - name: payer
    allow:
      - "tools:sdk/pay:call"
      - "tools:sdk/refund:call"
      - "resources:sdk/file:///pub/**:read"
      - scope: "tools:sdk/echo:call"
        when: [{{ pointer: /message, glob: "hello*" }}]
    deny:
      - scope: "tools:sdk/pay:call"
        when: [{{ pointer: /a, min: 100 }}]
approvals:
  hold_ms: 0
  rules:
    - name: big-refunds
      scope: "tools:sdk/refund:call"
      when: [{{ pointer: /amount, min: 100 }}]
      approvers: [finance]
upstreams:
  - {{ name: sdk, url: "{upstream}" }}
routes:
  - {{ name: sdk, path: /mcp, upstream: sdk }}
audit: {{ file: "{audit}", sample_rate: 1.0 }}
"#,
        alice = hash_key("alice-key"),
        audit = audit.display(),
    )
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"attacks","version":"1"}}"#;

/// One stateless 2026-07-28 request as alice; the JSON-RPC answer.
async fn ask(gw: &Gateway, method: &str, name: &str, params: &str) -> serde_json::Value {
    let body =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{META},{params}}}}}"#);
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &gw.url("/mcp"),
        body,
        &[
            ("authorization", "Bearer alice-key"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("mcp-name", name),
        ],
    )
    .await;
    let answer = rpc_json(&text);
    assert!(
        answer.is_object(),
        "{method} {params}: HTTP {status}, not JSON-RPC: {text}"
    );
    answer
}

async fn call(gw: &Gateway, tool: &str, args: &str) -> serde_json::Value {
    ask(
        gw,
        "tools/call",
        tool,
        &format!(r#""name":"{tool}","arguments":{args}"#),
    )
    .await
}

async fn read(gw: &Gateway, uri: &str) -> serde_json::Value {
    ask(gw, "resources/read", uri, &format!(r#""uri":"{uri}""#)).await
}

async fn start() -> (SdkServer, Gateway, tempfile::TempDir) {
    let sdk = SdkServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let gw = Gateway::start(&config(
        &format!("http://127.0.0.1:{}/mcp", sdk.port),
        &dir.path().join("audit.jsonl"),
    ))
    .await;
    (sdk, gw, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_condition_holds_for_a_value_it_cannot_read() {
    let (sdk, gw, _dir) = start().await;
    // The server runs what it is given: a small payment goes through.
    let ok = call(&gw, "pay", r#"{"a":5}"#).await;
    assert_eq!(ok["result"]["content"][0]["text"], "paid 5", "{ok}");
    for args in [
        r#"{"a":"500"}"#,
        r#"{"a":500}"#,
        r#"{"a":100.0}"#,
        r#"{"a":5,"a":500}"#,
        r#"{"A":500}"#,
        r#"{"a":null}"#,
    ] {
        let refused = call(&gw, "pay", args).await;
        assert_eq!(refused["error"]["code"], -32602, "{args}: {refused}");
        assert_eq!(refused["id"], 1);
    }
    assert_eq!(
        sdk.ran(),
        [serde_json::json!({"tool": "pay", "a": 5})],
        "only the small payment ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_condition_does_not_match_what_it_cannot_read() {
    let (sdk, gw, _dir) = start().await;
    let ok = call(&gw, "echo", r#"{"message":"hello there"}"#).await;
    assert_eq!(ok["result"]["content"][0]["text"], "hello there", "{ok}");
    for args in [
        r#"{"message":"bye"}"#,
        r#"{"message":["hello"]}"#,
        r#"{"message":"hello","message":"bye"}"#,
        r#"{"Message":"bye","message":"hello"}"#,
    ] {
        let refused = call(&gw, "echo", args).await;
        assert_eq!(refused["error"]["code"], -32602, "{args}: {refused}");
    }
    assert_eq!(sdk.ran().len(), 1, "{:?}", sdk.ran());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_required_for_a_value_the_rule_cannot_read() {
    let (sdk, gw, dir) = start().await;
    let ok = call(&gw, "refund", r#"{"amount":5}"#).await;
    assert_eq!(ok["result"]["content"][0]["text"], "refunded 5", "{ok}");
    // These need an approver's decision (and this gateway has no control
    // process to file them with): refused, never run.
    for args in [
        r#"{"amount":"500"}"#,
        r#"{"amount":500}"#,
        r#"{"Amount":500}"#,
    ] {
        let held = call(&gw, "refund", args).await;
        assert_eq!(held["error"]["code"], -32603, "{args}: {held}");
        assert!(
            held["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("approvals are unavailable")),
            "{held}"
        );
    }
    // Arguments no approver could be shown one way are refused outright.
    let dup = call(&gw, "refund", r#"{"amount":5,"amount":500}"#).await;
    assert_eq!(dup["error"]["code"], -32602, "{dup}");
    assert_eq!(
        sdk.ran(),
        [serde_json::json!({"tool": "refund", "amount": 5})]
    );
    // The audit trail says what happened: one allow, the rest refused.
    let audit_path = dir.path().join("audit.jsonl");
    let mut decisions = Vec::new();
    eventually("five audit events", async || {
        decisions = std::fs::read_to_string(&audit_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["target"] == "refund")
            .map(|e| e["decision"].as_str().unwrap_or("").to_owned())
            .collect();
        decisions.len() == 5
    })
    .await;
    assert_eq!(
        decisions.iter().filter(|d| *d == "allow").count(),
        1,
        "{decisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_scope_cannot_be_left_by_dot_segments() {
    let (sdk, gw, _dir) = start().await;
    let ok = read(&gw, "file:///pub/readme.txt").await;
    assert_eq!(ok["result"]["contents"][0]["text"], "public\n", "{ok}");
    for uri in [
        "file:///pub/../etc/passwd",
        "file:///pub/%2e%2e/etc/passwd",
        "file:///pub/%2E%2E/etc/passwd",
        "file:///pub/.%2e/etc/passwd",
        "file:///pub//../etc/passwd",
        "file:///pub/./../etc/passwd",
        "file:///pub/..%2Fetc/passwd",
        "file:///pub/%70ub/../../etc/passwd",
    ] {
        let refused = read(&gw, uri).await;
        assert_eq!(refused["error"]["code"], -32602, "{uri}: {refused}");
        assert!(
            refused.to_string().contains("normal form"),
            "{uri}: {refused}"
        );
    }
    // Outside the scope in normal form: hidden, like a missing resource.
    let hidden = read(&gw, "file:///etc/passwd").await;
    assert_eq!(hidden["error"]["code"], -32002, "{hidden}");
    assert_eq!(sdk.ran(), [serde_json::json!({"read": "pub/readme.txt"})]);
}

/// A listen request as alice with `filter`: the first thing its answer
/// carries (an error, or the stream's first event), and the answer.
async fn listen(gw: &Gateway, filter: &str) -> (String, reqwest::Response) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{{{META},"notifications":{filter}}}}}"#
    );
    let mut answer = reqwest::Client::new()
        .post(gw.url("/mcp"))
        .header("authorization", "Bearer alice-key")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .body(body)
        .send()
        .await
        .expect("listen");
    // A stream that stays silent fails the test rather than hanging it.
    let first = tokio::time::timeout(std::time::Duration::from_secs(60), answer.chunk())
        .await
        .expect("an answer within a minute")
        .expect("a chunk")
        .expect("an answer");
    (String::from_utf8_lossy(&first).into_owned(), answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_subscribes_only_to_resources_the_caller_may_read() {
    let (_sdk, gw, _dir) = start().await;
    let refused = async |filter: &str| {
        let (first, _) = listen(&gw, filter).await;
        let v = rpc_json(&first);
        assert!(v["error"]["code"].is_i64(), "{filter}: subscribed: {first}");
        v["error"]["code"].as_i64().unwrap_or_default()
    };
    let hidden = r#"{"resourceSubscriptions":["file:///pub/readme.txt","file:///etc/passwd"]}"#;
    assert_eq!(refused(hidden).await, -32002);
    let dotted = r#"{"resourceSubscriptions":["file:///pub/../etc/passwd"]}"#;
    assert_eq!(refused(dotted).await, -32602);
    // A filter read one way by the gateway and another by the server
    // subscribes to nothing.
    for unread in [
        r#"{"resourceSubscriptions":"file:///etc/passwd"}"#,
        r#"{"resourceSubscriptions":[{"uri":"file:///etc/passwd"}]}"#,
        r#"{"resourceSubscriptions":[],"resourceSubscriptions":["file:///etc/passwd"]}"#,
    ] {
        refused(unread).await;
    }
    // Within the scope: the server's stream, acknowledged.
    let (first, answer) = listen(
        &gw,
        r#"{"resourceSubscriptions":["file:///pub/readme.txt"]}"#,
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert!(
        first.contains("notifications/subscriptions/acknowledged"),
        "{first}"
    );
}
