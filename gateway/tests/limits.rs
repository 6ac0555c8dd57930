//! Rate limits and concurrency caps through the real gateway: 429 with
//! `Retry-After` and the call's id, per-subject keys that headers cannot
//! move, metrics and audit, and concurrency permits given back on every
//! way a call can end (answered, client gone mid-stream, upstream reset).

mod support;

use futures::StreamExt;
use sluice_gateway::identity::hash_key;
use support::*;

fn config(rec: &str, flaky: &str, resetting: &str, audit: &std::path::Path) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
tenants: [acme]
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, tenants: [acme], roles: [user] }}
    - {{ id: bob, sha256: "{bob}", subject: bob, tenants: [acme], roles: [user] }}
roles:
  - {{ name: user, allow: ["tools:*/*:call"] }}
upstreams:
  - {{ name: rec, url: "{rec}" }}
  - {{ name: slow, url: "{flaky}" }}
  - {{ name: resetting, url: "{resetting}" }}
routes:
  - {{ name: rec, path: /mcp, upstream: rec }}
  - {{ name: slow, path: /slow/mcp, upstream: slow }}
  - {{ name: resetting, path: /reset/mcp, upstream: resetting }}
rate_limits:
  rules:
    - {{ name: calls-per-subject, match: {{ methods: [tools/call], upstreams: [rec] }}, per: [subject], rate: 1/h, burst: 3 }}
concurrency_limits:
  - {{ name: inflight-per-subject, match: {{ upstreams: [slow, resetting] }}, per: [subject], max: 1 }}
audit: {{ file: "{audit}", sample_rate: 0.0 }}
"#,
        alice = hash_key("alice-key"),
        bob = hash_key("bob-key"),
        audit = audit.display(),
    )
}

fn call_body(id: u32) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    )
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    id: u32,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let auth = format!("Bearer {key}");
    let mut h = vec![
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ];
    h.extend_from_slice(extra);
    let (s, headers, body) = post(client, url, call_body(id), &h).await;
    (s, headers, rpc_json(&body))
}

struct Env {
    gw: Gateway,
    rec: Recorder,
    slow: Fault,
    resetting: Fault,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let (rec_addr, rec) = recording_upstream().await;
    let slow = fault_upstream(Mode::SseThenHang).await;
    let resetting = fault_upstream(Mode::SseThenReset).await;
    let dir = tempfile::tempdir().expect("test setup");
    let audit = dir.path().join("audit.jsonl");
    let gw = Gateway::start(&config(
        &format!("http://{rec_addr}/mcp"),
        &slow.url(),
        &resetting.url(),
        &audit,
    ))
    .await;
    Env {
        gw,
        rec,
        slow,
        resetting,
        audit,
        _dir: dir,
    }
}

#[tokio::test]
async fn past_the_burst_a_subject_gets_429_with_retry_after_and_its_id() {
    let e = env().await;
    let client = reqwest::Client::new();
    let url = e.gw.url("/mcp");
    for id in 1..=3 {
        let (s, _, v) = call(&client, &url, "alice-key", id, &[]).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, headers, v) = call(&client, &url, "alice-key", 4, &[]).await;
    assert_eq!(s, 429, "{v}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        retry_after > 3000,
        "1/h: the next call is most of an hour away"
    );
    assert_eq!(v["id"], 4);
    assert_eq!(v["error"]["data"]["reason"], "rate_limited");
    assert!(v["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 3_000_000);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("calls-per-subject"));
    assert_eq!(e.rec.calls.load(std::sync::atomic::Ordering::SeqCst), 3);

    // Headers a client controls do not move it to another bucket.
    for (i, spoof) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-tenant-id", "globex"),
        ("mcp-session-id", "another-session"),
        ("x-sluice-subject", "bob"),
    ]
    .iter()
    .enumerate()
    {
        let (s, _, _) = call(&client, &url, "alice-key", 10 + i as u32, &[*spoof]).await;
        assert_ne!(s, 200, "{spoof:?} must not escape the limit");
    }
    assert_eq!(e.rec.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    // Another subject has its own bucket.
    let (s, _, _) = call(&client, &url, "bob-key", 20, &[]).await;
    assert_eq!(s, 200);
    assert!(
        e.gw.metric("sluice_limit_refusals_total{limit=\"calls-per-subject\"}")
            .await
            >= 1.0
    );
    eventually("the refusal is audited", async || {
        std::fs::read_to_string(&e.audit)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("\"rate_limited\"") && l.contains("\"alice\""))
    })
    .await;
}

/// Start a streamed call on a connection of its own; the response is
/// returned as soon as its header arrives.
async fn start_call(url: &str, key: &str, id: u32) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("authorization", format!("Bearer {key}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(call_body(id))
        .send()
        .await
        .expect("response")
}

/// A started call that got through, once its first event arrived.
async fn in_flight(url: &str, key: &str, id: u32) -> Option<reqwest::Response> {
    let mut resp = start_call(url, key, id).await;
    if resp.status() != 200 {
        return None;
    }
    let chunk = resp.chunk().await.expect("read").expect("an event");
    assert!(String::from_utf8_lossy(&chunk).contains("notifications/progress"));
    Some(resp)
}

#[tokio::test]
async fn concurrency_permits_come_back_on_disconnect_and_reset() {
    let e = env().await;
    let client = reqwest::Client::new();
    let slow = e.gw.url("/slow/mcp");
    let reset = e.gw.url("/reset/mcp");

    // One call in flight; a second one for the same subject is refused.
    let a = in_flight(&slow, "alice-key", 1).await.expect("first call");
    let (s, headers, v) = call(&client, &slow, "alice-key", 2, &[]).await;
    assert_eq!(s, 429, "{v}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(v["error"]["data"]["reason"], "concurrency_limited");
    assert_eq!(v["id"], 2);
    // The cap spans both upstreams it names, per subject.
    assert_eq!(start_call(&reset, "alice-key", 3).await.status(), 429);
    // Another subject is not affected.
    let b = in_flight(&slow, "bob-key", 4).await.expect("bob's call");

    // The client goes away mid-stream: its slot comes back.
    drop(a);
    let mut d = None;
    eventually(
        "alice's slot is released after her disconnect",
        async || {
            d = in_flight(&reset, "alice-key", 5).await;
            d.is_some()
        },
    )
    .await;

    // The upstream resets mid-stream: the call ends, the slot comes back.
    e.resetting.reset();
    let mut rest = d.take().expect("in flight").bytes_stream();
    while let Some(Ok(_)) = rest.next().await {}
    eventually("the slot comes back after an upstream reset", async || {
        in_flight(&slow, "alice-key", 6).await.is_some()
    })
    .await;
    assert_eq!(e.slow.requests(), 3, "alice twice, bob once");
    assert_eq!(e.resetting.requests(), 1);
    drop(b);
}

#[tokio::test]
async fn without_identity_the_key_is_the_socket_address_not_a_header() {
    let (rec_addr, rec) = recording_upstream().await;
    let gw = Gateway::start(&format!(
        "{}rate_limits:\n  rules:\n    - {{ name: per-client, per: [subject], rate: 1/h, burst: 2 }}\n",
        one_route(&format!("http://{rec_addr}/mcp"))
    ))
    .await;
    let client = reqwest::Client::new();
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    for _ in 0..2 {
        let (s, _, _) = post(&client, &gw.url("/mcp"), body, &[]).await;
        assert_eq!(s, 200);
    }
    for spoof in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        let (s, _, text) = post(&client, &gw.url("/mcp"), body, &[(spoof, "198.51.100.7")]).await;
        assert_eq!(s, 429, "{spoof} must not pick the bucket: {text}");
    }
    assert_eq!(rec.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_config_push_does_not_refill_the_burst() {
    let (rec_addr, _rec) = recording_upstream().await;
    let limits =
        "rate_limits:\n  rules:\n    - { name: per-client, per: [subject], rate: 1/h, burst: 2 }\n";
    let base = one_route(&format!("http://{rec_addr}/mcp"));
    let gw = Gateway::start(&format!("{base}{limits}")).await;
    let client = reqwest::Client::new();
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    for _ in 0..2 {
        assert_eq!(post(&client, &gw.url("/mcp"), body, &[]).await.0, 200);
    }
    assert_eq!(post(&client, &gw.url("/mcp"), body, &[]).await.0, 429);
    // An unrelated change: the limit's state survives it.
    let generation = gw.generation().await;
    gw.write_config(&format!("{base}{limits}tenants: [unrelated]\n"));
    eventually("the new snapshot is live", async || {
        gw.generation().await > generation
    })
    .await;
    assert_eq!(
        post(&client, &gw.url("/mcp"), body, &[]).await.0,
        429,
        "no refill"
    );
    // A changed quota is a new limit: fresh state.
    let generation = gw.generation().await;
    gw.write_config(&format!("{base}{}", limits.replace("burst: 2", "burst: 3")));
    eventually("the new snapshot is live", async || {
        gw.generation().await > generation
    })
    .await;
    assert_eq!(post(&client, &gw.url("/mcp"), body, &[]).await.0, 200);
}
