//! Catalog mode: a virtual server over the official Python SDK's server and
//! the rmcp demo lists only `search_tools`, `get_tool_details` and
//! `execute_tool`. Search ranks what the caller may see and nothing else;
//! `execute_tool` is answered exactly as the direct call of the tool it
//! names — policy, argument conditions, approvals, limits, pins — and is
//! audited under the tool's own name. The SDK server's log proves what ran.

mod support;

use serde_json::{json, Value};
use support::peers::SdkServer;
use support::*;

struct Env {
    gw: Gateway,
    sdk: SdkServer,
    audit: std::path::PathBuf,
    _demo: DemoServer,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let sdk = SdkServer::start().await;
    let demo = demo(DemoOptions::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let config = format!(
        r#"{head}roles:
  - name: builder
    allow: ["tools:sdk/*:call", "tools:demo/*:call", "tools:strict/*:call"]
    deny:
      - scope: "tools:sdk/pay:call"
        when: [{{ pointer: /a, min: 100 }}]
  - name: payer
    allow: ["tools:sdk/pay:call"]
upstreams:
  - {{ name: sdk, url: "http://127.0.0.1:{sdk_port}/mcp" }}
  - {{ name: strict, url: "http://127.0.0.1:{sdk_port}/mcp" }}
  - {{ name: demo, url: "{demo_url}" }}
routes:
  - {{ name: cat, path: /cat, server: cat }}
servers:
  - name: cat
    catalog: true
    sources:
      - {{ upstream: sdk, prefix: "", tools: {{ include: [pay, refund, echo] }} }}
      - {{ upstream: demo }}
      - {{ upstream: strict, pin: approve_first, tools: {{ include: [echo] }} }}
rate_limits:
  rules:
    - {{ name: one-echo, match: {{ methods: [tools/call], upstreams: [sdk], tools: [echo] }}, per: [subject], rate: 1/min, burst: 1 }}
approvals:
  rules:
    - {{ name: refunds, scope: "tools:sdk/refund:call", approvers: [finance] }}
audit: {{ file: "{audit}", sample_rate: 1.0 }}
"#,
        head = keyed_head(&[("alice", "builder"), ("bob", "payer")]),
        sdk_port = sdk.port,
        demo_url = demo.url(),
        audit = audit.display(),
    );
    Env {
        gw: Gateway::start(&config).await,
        sdk,
        audit,
        _demo: demo,
        _dir: dir,
    }
}

/// A stateless (2026-07-28) request as `key`; the JSON-RPC answer.
async fn rpc(e: &Env, key: &str, method: &str, params: Value) -> Value {
    stateless_rpc(&e.gw.url("/cat"), Some(key), (method, json!(9), params)).await
}

async fn meta(e: &Env, key: &str, tool: &str, arguments: Value) -> Value {
    rpc(
        e,
        key,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

async fn direct(e: &Env, key: &str, tool: &str, arguments: Value) -> Value {
    meta(e, key, tool, arguments).await
}

async fn execute(e: &Env, key: &str, tool: &str, arguments: Value) -> Value {
    meta(
        e,
        key,
        "execute_tool",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

fn found(answer: &Value) -> Vec<String> {
    answer["result"]["structuredContent"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("search results: {answer}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn ran(e: &Env, tool: &str) -> usize {
    e.sdk.ran().iter().filter(|r| r["tool"] == tool).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_server_lists_meta_tools_and_searches_only_what_the_caller_may_see() {
    let e = env().await;
    let list = rpc(&e, "alice-key", "tools/list", json!({})).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["search_tools", "get_tool_details", "execute_tool"]);
    // A 2026-07-28 list says how long it may be cached, and by whom.
    assert_eq!(list["result"]["cacheScope"], "public", "{list}");
    assert!(list["result"]["ttlMs"].is_u64(), "{list}");

    let hits = meta(
        &e,
        "alice-key",
        "search_tools",
        json!({"query": "pay an amount of money"}),
    )
    .await;
    assert_eq!(
        found(&hits).first().map(String::as_str),
        Some("pay"),
        "{hits}"
    );
    let hits = meta(
        &e,
        "alice-key",
        "search_tools",
        json!({"query": "echo message back", "limit": 1}),
    )
    .await;
    assert_eq!(found(&hits), ["echo"], "{hits}");
    // The pinned source's echo is not pinned: never found.
    let hits = meta(
        &e,
        "alice-key",
        "search_tools",
        json!({"query": "echo", "limit": 50}),
    )
    .await;
    assert!(
        !found(&hits).iter().any(|n| n.starts_with("strict")),
        "{hits}"
    );
    let hits = meta(
        &e,
        "alice-key",
        "search_tools",
        json!({"query": "echo pay refund", "filters": {"source": "demo"}}),
    )
    .await;
    assert!(
        found(&hits).iter().all(|n| n.starts_with("demo_")),
        "{hits}"
    );

    // Bob may call pay and nothing else: that is all he can find or read,
    // and what he may not see reads exactly as what does not exist.
    let hits = meta(
        &e,
        "bob-key",
        "search_tools",
        json!({"query": "echo refund pay message amount", "limit": 50}),
    )
    .await;
    assert_eq!(found(&hits), ["pay"], "{hits}");
    let hidden = meta(&e, "bob-key", "get_tool_details", json!({"name": "echo"})).await;
    let missing = meta(&e, "bob-key", "get_tool_details", json!({"name": "ech0"})).await;
    assert_eq!(
        hidden.to_string().replace("echo", "ech0"),
        missing.to_string()
    );
    assert_eq!(hidden["result"]["isError"], true, "{hidden}");
    let details = meta(&e, "bob-key", "get_tool_details", json!({"name": "pay"})).await;
    let pay = &details["result"]["structuredContent"];
    assert_eq!(
        pay["inputSchema"]["properties"]["a"]["type"], "integer",
        "{details}"
    );

    // Bad arguments get -32602 naming what is wrong.
    let bad = meta(
        &e,
        "alice-key",
        "search_tools",
        json!({"query": "x", "limit": 500}),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit")),
        "{bad}"
    );
    let bad = meta(&e, "alice-key", "search_tools", json!({})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_tool_is_decided_exactly_as_the_direct_call() {
    let e = env().await;
    // Allowed: runs, answered as the direct call.
    let via = execute(&e, "alice-key", "pay", json!({"a": 5})).await;
    let straight = direct(&e, "alice-key", "pay", json!({"a": 5})).await;
    assert_eq!(via, straight);
    assert_eq!(via["result"]["content"][0]["text"], "paid 5", "{via}");
    assert_eq!(ran(&e, "pay"), 2);

    // Argument conditions: the same refusal, nothing runs.
    let via = execute(&e, "alice-key", "pay", json!({"a": 500})).await;
    assert_eq!(via, direct(&e, "alice-key", "pay", json!({"a": 500})).await);
    assert!(via["error"].is_object(), "{via}");
    assert_eq!(ran(&e, "pay"), 2);

    // Policy: a tool the caller may not see is an unknown tool either way.
    let via = execute(&e, "bob-key", "echo", json!({"message": "x"})).await;
    assert_eq!(
        via,
        direct(&e, "bob-key", "echo", json!({"message": "x"})).await
    );
    let missing = execute(&e, "bob-key", "ech0", json!({"message": "x"})).await;
    assert_eq!(via.to_string().replace("echo", "ech0"), missing.to_string());

    // Pins: an unpinned definition is unknown either way.
    let via = execute(&e, "alice-key", "strict_echo", json!({"message": "x"})).await;
    assert_eq!(
        via,
        direct(&e, "alice-key", "strict_echo", json!({"message": "x"})).await
    );
    let missing = execute(&e, "alice-key", "strict_nothing", json!({"message": "x"})).await;
    assert_eq!(
        via.to_string().replace("strict_echo", "strict_nothing"),
        missing.to_string()
    );

    // Approvals: held the same way (no control here: refused, fail closed).
    let via = execute(&e, "alice-key", "refund", json!({"amount": 1})).await;
    assert_eq!(
        via,
        direct(&e, "alice-key", "refund", json!({"amount": 1})).await
    );
    assert!(
        via["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("approval")),
        "{via}"
    );
    assert_eq!(ran(&e, "refund"), 0);

    // Limits: one bucket for both ways in.
    let first = execute(&e, "alice-key", "echo", json!({"message": "one"})).await;
    assert_eq!(first["result"]["content"][0]["text"], "one", "{first}");
    let second = direct(&e, "alice-key", "echo", json!({"message": "two"})).await;
    let third = execute(&e, "alice-key", "echo", json!({"message": "three"})).await;
    assert_eq!(
        second["error"]["code"], third["error"]["code"],
        "{second} {third}"
    );
    assert!(second["error"].is_object(), "{second}");
    assert_eq!(ran(&e, "echo"), 1);

    // Audit names the tool, not the meta-tool.
    let events = || -> Vec<Value> {
        std::fs::read_to_string(&e.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    eventually("the calls to be audited", async || {
        events().iter().filter(|ev| ev["target"] == "pay").count() >= 4
    })
    .await;
    assert!(
        !events().iter().any(|ev| ev["target"] == "execute_tool"),
        "{:?}",
        events()
    );
    let denied = events()
        .into_iter()
        .filter(|ev| ev["target"] == "pay" && ev["decision"] == "deny")
        .count();
    assert_eq!(denied, 2, "both refused calls of pay are audited as pay");
}

/// A stateless request to `path` on `gw` without credentials.
async fn open_rpc(gw: &Gateway, path: &str, method: &str, params: Value) -> Value {
    stateless_rpc(&gw.url(path), None, (method, json!(3), params)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_serves_the_lifecycle_states_it_names() {
    let sdk = SdkServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let config = format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
upstreams:
  - {{ name: sdk, url: "http://127.0.0.1:{port}/mcp" }}
routes:
  - {{ name: prod, path: /prod, server: tools }}
  - {{ name: staging, path: /staging, server: tools, serves: [draft, published, deprecated] }}
servers:
  - name: tools
    sources:
      - upstream: sdk
        prefix: ""
        tools: {{ include: [pay, refund, echo, touch] }}
        overrides:
          pay: {{ state: deprecated, version: "1.4" }}
          refund: {{ state: draft, version: "2.0-rc1" }}
          echo: {{ state: disabled }}
audit: {{ file: "{audit}", sample_rate: 1.0 }}
"#,
        port = sdk.port,
        audit = audit.display(),
    );
    let gw = Gateway::start(&config).await;
    let tools = async |path: &str| -> Vec<Value> {
        let list = open_rpc(&gw, path, "tools/list", json!({})).await;
        let mut t = list["result"]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{list}"));
        t.sort_by_key(|t| t["name"].as_str().unwrap_or("").to_owned());
        t
    };
    let names = |t: &[Value]| -> Vec<String> {
        t.iter()
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect()
    };
    let prod = tools("/prod").await;
    assert_eq!(names(&prod), ["pay", "touch"]);
    assert_eq!(
        prod[0]["description"], "Deprecated: Pay an amount.",
        "{}",
        prod[0]
    );
    assert_eq!(prod[0]["_meta"]["sluice/state"], "deprecated");
    assert_eq!(prod[0]["_meta"]["sluice/version"], "1.4");
    assert!(
        prod[1]
            .get("_meta")
            .is_none_or(|m| m.get("sluice/state").is_none()),
        "{}",
        prod[1]
    );
    let staging = tools("/staging").await;
    assert_eq!(names(&staging), ["pay", "refund", "touch"]);
    assert_eq!(staging[1]["_meta"]["sluice/version"], "2.0-rc1");

    // A draft is unknown in production and runs in staging; a disabled
    // tool is unknown everywhere.
    let call = async |path: &str, tool: &str, args: Value| {
        open_rpc(
            &gw,
            path,
            "tools/call",
            json!({"name": tool, "arguments": args}),
        )
        .await
    };
    let missing = call("/prod", "nothing_here", json!({})).await;
    let draft = call("/prod", "refund", json!({"amount": 3})).await;
    assert_eq!(
        draft.to_string().replace("refund", "nothing_here"),
        missing.to_string()
    );
    let ran = call("/staging", "refund", json!({"amount": 3})).await;
    assert_eq!(ran["result"]["content"][0]["text"], "refunded 3", "{ran}");
    for path in ["/prod", "/staging"] {
        let disabled = call(path, "echo", json!({"message": "x"})).await;
        let missing = call(path, "nothing_here", json!({})).await;
        assert_eq!(
            disabled.to_string().replace("echo", "nothing_here"),
            missing.to_string()
        );
    }
    let paid = call("/prod", "pay", json!({"a": 2})).await;
    assert_eq!(paid["result"]["content"][0]["text"], "paid 2", "{paid}");
    assert_eq!(sdk.ran().len(), 2, "{:?}", sdk.ran());

    // The audit says a deprecated tool was used.
    let events = || -> Vec<Value> {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &Value| e["method"] == "tools/call")
            .collect()
    };
    eventually("the calls to be audited", async || {
        events().len() >= 8 && events().iter().any(|e| e["target"] == "pay")
    })
    .await;
    let pay = events()
        .into_iter()
        .find(|e| e["target"] == "pay")
        .expect("pay's event");
    assert_eq!(pay["tool_state"], "deprecated", "{pay}");
    assert!(events()
        .iter()
        .filter(|e| e["target"] != "pay")
        .all(|e| e.get("tool_state").is_none()));
}
