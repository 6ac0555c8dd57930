//! Idempotent tool calls on a virtual server over the official Python SDK's
//! server: a call with `_meta["sluice/idempotency-key"]` runs at most once
//! per caller, tool and key — a repeat with the same arguments gets the
//! stored result, other arguments are refused — on one replica, and across
//! two replicas through a real `redis-server`. The SDK server's own log
//! counts what ran.

mod support;

use serde_json::{json, Value};
use support::peers::SdkServer;
use support::redis_server::Redis;
use support::*;

fn config(sdk: &SdkServer, shared: &str) -> String {
    format!(
        r#"{head}roles:
  - name: payer
    allow: ["tools:sdk/*:call"]
upstreams:
  - {{ name: sdk, url: "http://127.0.0.1:{port}/mcp" }}
routes:
  - {{ name: ws, path: /ws, server: ws }}
servers:
  - name: ws
    sources: [{{ upstream: sdk, prefix: "" }}]
{shared}"#,
        head = keyed_head(&[("alice", "payer"), ("bob", "payer")]),
        port = sdk.port,
    )
}

/// A stateless `tools/call` as `key`, with an idempotency key when given.
async fn pay(gw: &Gateway, key: &str, idem: Option<&str>, a: i64, id: u64) -> Value {
    pay_keyed(gw, key, idem.map(|k| json!(k)), a, id).await
}

/// As `pay`, the idempotency key any JSON value.
async fn pay_keyed(gw: &Gateway, key: &str, idem: Option<Value>, a: i64, id: u64) -> Value {
    let mut params = json!({"name": "pay", "arguments": {"a": a}});
    if let Some(k) = idem {
        params["_meta"] = json!({"sluice/idempotency-key": k});
    }
    stateless_rpc(&gw.url("/ws"), Some(key), ("tools/call", json!(id), params)).await
}

fn paid(sdk: &SdkServer) -> usize {
    sdk.ran().iter().filter(|r| r["tool"] == "pay").count()
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_call_runs_once_and_its_repeats_get_the_stored_result() {
    let sdk = SdkServer::start().await;
    let gw = Gateway::start(&config(&sdk, "")).await;
    let first = pay(&gw, "alice-key", Some("order-1"), 5, 1).await;
    assert_eq!(text(&first), "paid 5", "{first}");
    assert_eq!(paid(&sdk), 1);
    // The same call again: the stored result, with the new request's id.
    let again = pay(&gw, "alice-key", Some("order-1"), 5, 2).await;
    assert_eq!(again["id"], 2, "{again}");
    assert_eq!(again["result"], first["result"]);
    assert_eq!(paid(&sdk), 1, "ran once");
    // Other arguments under the same key: refused, nothing runs.
    let other = pay(&gw, "alice-key", Some("order-1"), 6, 3).await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    assert!(
        other["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("other arguments")),
        "{other}"
    );
    assert_eq!(other["id"], 3);
    // Keys are the caller's own; another key, or no key, runs.
    assert_eq!(
        text(&pay(&gw, "bob-key", Some("order-1"), 6, 4).await),
        "paid 6"
    );
    assert_eq!(
        text(&pay(&gw, "alice-key", Some("order-2"), 6, 5).await),
        "paid 6"
    );
    assert_eq!(text(&pay(&gw, "alice-key", None, 5, 6).await), "paid 5");
    assert_eq!(paid(&sdk), 4);
    // A key that is not a string is refused.
    let bad = pay_keyed(&gw, "alice-key", Some(json!(42)), 1, 7).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(paid(&sdk), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_store_agree_on_a_key() {
    let sdk = SdkServer::start().await;
    let redis = Redis::start(free_port()).await;
    let shared = format!(
        "rate_limits:\n  shared_store: {{ redis_url: \"redis://127.0.0.1:{}\", on_unavailable: closed, timeout_ms: 500 }}\n  \
         rules:\n    - {{ name: calls, match: {{ methods: [tools/call] }}, rate: 1000/min, burst: 1000, shared: true }}\n",
        redis.port
    );
    let a = Gateway::start(&config(&sdk, &shared)).await;
    let b = Gateway::start(&config(&sdk, &shared)).await;
    let first = pay(&a, "alice-key", Some("order-9"), 9, 1).await;
    assert_eq!(text(&first), "paid 9", "{first}");
    let again = pay(&b, "alice-key", Some("order-9"), 9, 2).await;
    assert_eq!(again["result"], first["result"], "{again}");
    let other = pay(&b, "alice-key", Some("order-9"), 8, 3).await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    assert_eq!(paid(&sdk), 1, "one run across both replicas");
    // With the store gone a keyed call is refused rather than risk a
    // second run; an unkeyed one is decided as the limits say (closed).
    drop(redis);
    let down = pay(&a, "alice-key", Some("order-10"), 1, 4).await;
    assert_eq!(down["error"]["code"], -32603, "{down}");
    assert_eq!(paid(&sdk), 1);
}
