//! A virtual server over real MCP servers of both kinds of SDK: the
//! reference server-everything (node), the official Python SDK's own server
//! and the project's rmcp demo server, plus a source that is down. The
//! gateway answers as the MCP server; the official Python SDK client and raw
//! JSON-RPC drive it. What the upstream ran (the SDK server's log) is the
//! proof of what was forwarded.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sluice_gateway::identity::hash_key;
use support::peers::{start_everything, SdkServer};
use support::*;

/// An MCP upstream that counts the sessions it opens and can forget them
/// (as a restarted server does): a request in a session it does not know
/// is answered 404, as the protocol says.
#[derive(Clone, Default)]
struct Forgetful {
    inits: Arc<AtomicU64>,
    known: Arc<Mutex<Vec<String>>>,
    /// Notifications received in a known session.
    notified: Arc<Mutex<Vec<Value>>>,
    /// The ids of the calls it answered.
    called: Arc<Mutex<Vec<Value>>>,
    /// Refuse the next `initialize` (503), as a server still starting.
    refuse_init: Arc<std::sync::atomic::AtomicBool>,
}

impl Forgetful {
    async fn start() -> (std::net::SocketAddr, Forgetful) {
        let me = Forgetful::default();
        let m = me.clone();
        let handler = move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let m = m.clone();
            async move { m.answer(&headers, &body) }
        };
        let ended = me.clone();
        let end = move |headers: http::HeaderMap| {
            let m = ended.clone();
            async move {
                let sid = headers
                    .get("mcp-session-id")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let mut known = m.known.lock().expect("lock");
                let before = known.len();
                known.retain(|k| k != sid);
                if known.len() < before {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::NOT_FOUND
                }
            }
        };
        // Its own stream: a list change and a request to the client.
        let listen = || async {
            let events = concat!(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"roots/list\"}\n\n",
            );
            ([(http::header::CONTENT_TYPE, "text/event-stream")], events)
        };
        let router =
            axum::Router::new().route("/mcp", axum::routing::post(handler).delete(end).get(listen));
        (serve_router(router).await, me)
    }

    fn answer(&self, headers: &http::HeaderMap, body: &[u8]) -> axum::response::Response {
        use axum::response::IntoResponse;
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        let json = |v: Value| {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                v.to_string(),
            )
        };
        if v["method"] == "initialize" {
            if self.refuse_init.swap(false, Ordering::SeqCst) {
                return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let n = self.inits.fetch_add(1, Ordering::SeqCst);
            let sid = format!("s-{n}");
            self.known.lock().expect("lock").push(sid.clone());
            let result = json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                "serverInfo": {"name": "forgetful", "version": "1"}});
            let mut resp =
                json(json!({"jsonrpc": "2.0", "id": v["id"], "result": result})).into_response();
            resp.headers_mut()
                .insert("mcp-session-id", sid.parse().expect("header value"));
            return resp;
        }
        let sid = headers
            .get("mcp-session-id")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.known.lock().expect("lock").iter().any(|k| k == sid) {
            return http::StatusCode::NOT_FOUND.into_response();
        }
        // Notifications, and the client's answers to its requests.
        if v.get("id").is_none() || v.get("method").is_none() {
            self.notified.lock().expect("lock").push(v);
            return http::StatusCode::ACCEPTED.into_response();
        }
        let result = match v["method"].as_str() {
            // Two pages.
            Some("tools/list") if v["params"]["cursor"] == "p2" => {
                json!({"tools": [{"name": "note2", "inputSchema": {"type": "object"}}]})
            }
            Some("tools/list") => {
                json!({"tools": [{"name": "note", "inputSchema": {"type": "object"}}],
                                         "nextCursor": "p2"})
            }
            _ => {
                self.called.lock().expect("lock").push(v["id"].clone());
                json!({"content": [{"type": "text", "text": format!("noted in {sid}")}]})
            }
        };
        json(json!({"jsonrpc": "2.0", "id": v["id"], "result": result})).into_response()
    }

    fn forget(&self) {
        self.known.lock().expect("lock").clear();
    }
}

struct Env {
    gw: Gateway,
    /// Holds the port of the source that is down.
    _gone: tokio::net::TcpSocket,
    mem: Forgetful,
    /// The config, for more replicas.
    config: String,
    sdk: SdkServer,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _everything: support::peers::Everything,
    _demo: DemoServer,
}

async fn env() -> Env {
    let (everything, port) = start_everything().await;
    let sdk = SdkServer::start().await;
    let demo = demo(DemoOptions::default()).await;
    let (gone_socket, gone) = closed_port();
    let (mem_addr, mem) = Forgetful::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = dir.path().join("audit.jsonl");
    let config = format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, roles: [builder] }}
    - {{ id: bob, sha256: "{bob}", subject: bob, roles: [payer] }}
roles:
  - name: builder
    allow: ["tools:sdk/*:call", "tools:demo/*:call", "tools:everything/*:call", "tools:mem/*:call",
            "prompts:sdk/*:get", "resources:sdk/file:///pub/**:read"]
  - name: payer
    allow: ["tools:sdk/pay:call"]
    deny:
      - scope: "tools:sdk/pay:call"
        when: [{{ pointer: /a, min: 100 }}]
upstreams:
  - {{ name: everything, url: "http://127.0.0.1:{port}/mcp" }}
  - {{ name: sdk, url: "http://127.0.0.1:{sdk_port}/mcp" }}
  - {{ name: demo, url: "{demo_url}" }}
  - {{ name: mem, url: "http://{mem_addr}/mcp" }}
  - name: gone
    url: "http://127.0.0.1:{gone}/mcp"
    retries: {{ attempts: 0 }}
    circuit_breaker: {{ consecutive_failures: 1, open_ms: 60000 }}
routes:
  - {{ name: ws, path: /ws, server: workspace }}
servers:
  - name: workspace
    sources:
      - {{ upstream: everything, prefix: ev }}
      - upstream: sdk
        tools: {{ include: [pay, echo] }}
        prompts: {{ exclude: ["secret_*"] }}
        overrides:
          pay: {{ title: Pay five, fixed: {{ a: 5 }} }}
          echo: {{ name: say }}
      - {{ upstream: demo, tools: {{ include: ["get-*"] }} }}
      - {{ upstream: mem }}
      - {{ upstream: gone }}
audit: {{ file: "{audit}", sample_rate: 1.0 }}
session_keys: [{{ env: SLUICE_TEST_SESSION_KEY }}]
"#,
        audit = audit.display(),
        alice = hash_key("alice-key"),
        bob = hash_key("bob-key"),
        sdk_port = sdk.port,
        demo_url = demo.url(),
    );
    Env {
        gw: Gateway::start_with_env(&config, &[(KEY_ENV, "key-one")]).await,
        _gone: gone_socket,
        mem,
        config,
        sdk,
        audit,
        _dir: dir,
        _everything: everything,
        _demo: demo,
    }
}

const KEY_ENV: &str = "SLUICE_TEST_SESSION_KEY";

/// A gateway with `upstreams` (YAML flow maps) and one route, `/ws`, to the
/// virtual server `ws` (`server`: the rest of its flow map), then `extra`.
fn ws_config(upstreams: &[String], server: &str, extra: &str) -> String {
    let upstreams: String = upstreams.iter().map(|u| format!("  - {u}\n")).collect();
    format!(
        "listeners:\n  - {{ name: main, address: \"{{listen}}\" }}\nadmin: {{ address: \"{{admin}}\" }}\n\
         upstreams:\n{upstreams}routes:\n  - {{ name: ws, path: /ws, server: ws }}\n\
         servers:\n  - {{ name: ws, {server} }}\n{extra}"
    )
}

async fn rpc(e: &Env, key: &str, body: Value) -> Value {
    let auth = format!("Bearer {key}");
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &e.gw.url("/ws"),
        body.to_string(),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    rpc_json(&text)
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_lists_and_calls_across_three_sdks_and_survives_a_source_that_is_down() {
    let e = env().await;
    let init = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
    )
    .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "workspace", "{init}");
    let list = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let listed = names(&list);
    for want in ["sdk_pay", "sdk_say", "demo_get-sum", "ev_echo"] {
        assert!(listed.iter().any(|n| n == want), "{want} in {listed:?}");
    }
    assert!(
        !listed.iter().any(|n| n == "sdk_echo"),
        "renamed: {listed:?}"
    );
    assert!(
        !listed.iter().any(|n| n == "sdk_refund"),
        "filtered: {listed:?}"
    );
    assert!(!listed.iter().any(|n| n.starts_with("gone_")), "{listed:?}");
    let pay = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "sdk_pay")
        .unwrap();
    assert_eq!(pay["title"], "Pay five");
    assert!(
        pay["inputSchema"]["properties"].get("a").is_none(),
        "a fixed argument is not advertised: {pay}"
    );
    assert!(
        e.gw.metric("sluice_upstream_errors_total{kind=\"connect_refused\",route=\"ws\"}")
            .await
            >= 1.0,
        "the source that is down is counted"
    );
    assert_eq!(
        e.gw.metric("sluice_upstream_circuit_state{upstream=\"gone\"}")
            .await,
        1.0,
        "its circuit opened: the next list does not wait on it"
    );
    let again = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    assert_eq!(names(&again), listed, "the other sources keep serving");

    // The merged list pages: the cursor carries every source's position.
    let next = list["result"]["nextCursor"].as_str().expect("a next page");
    assert!(!listed.iter().any(|n| n == "mem_note2"), "{listed:?}");
    let page2 = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"cursor": next}}),
    )
    .await;
    assert_eq!(names(&page2), ["mem_note2"], "{page2}");
    assert!(page2["result"].get("nextCursor").is_none(), "{page2}");
    let forged = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"cursor": "p2"}}),
    )
    .await;
    assert_eq!(forged["error"]["code"], -32602, "{forged}");
    assert_eq!(forged["id"], 7);

    // The client asks for 500; the upstream runs what the gateway forwards.
    let paid = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "sdk_pay", "arguments": {"a": 500}}}),
    )
    .await;
    assert_eq!(paid["id"], 3, "{paid}");
    assert_eq!(paid["result"]["content"][0]["text"], "paid 5", "{paid}");
    assert!(e.sdk.ran().contains(&json!({"tool": "pay", "a": 5})));

    let said = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
               "params": {"name": "sdk_say", "arguments": {"message": "hi"}}}),
    )
    .await;
    assert_eq!(said["result"]["content"][0]["text"], "hi", "{said}");
    let old_name = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
               "params": {"name": "sdk_echo", "arguments": {"message": "hi"}}}),
    )
    .await;
    assert_eq!(old_name["error"]["code"], -32602, "{old_name}");

    // The official Python SDK client, as a 2025 client of the gateway, over
    // Streamable HTTP and over the legacy HTTP+SSE transport.
    for mode in ["legacy", "sse"] {
        let stdout = sdk_client(e.gw.url("/ws"), "demo_get-sum", r#"{"a":2,"b":3}"#, mode).await;
        assert!(stdout.contains("demo_get-sum"), "{mode}: {stdout}");
        assert!(stdout.contains("False ['5']"), "{mode}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_sees_the_source_the_upstreams_name_and_the_arguments_as_forwarded() {
    let e = env().await;
    let list = rpc(
        &e,
        "bob-key",
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(names(&list), ["sdk_pay"], "only what bob may call");
    // Bob may not pay 100 or more; he asks for 500, the gateway forwards 5:
    // the decision is on the 5.
    let paid = rpc(
        &e,
        "bob-key",
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "sdk_pay", "arguments": {"a": 500}}}),
    )
    .await;
    assert_eq!(paid["result"]["content"][0]["text"], "paid 5", "{paid}");
    eventually(
        "the call audited with both names and its source",
        async || {
            std::fs::read_to_string(&e.audit)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|ev| {
                    ev["target"] == "sdk_pay"
                        && ev["upstream_target"] == "pay"
                        && ev["upstream"] == "sdk"
                        && ev["subject"] == "bob"
                        && ev["decision"] == "allow"
                })
        },
    )
    .await;
    let hidden = rpc(
        &e,
        "bob-key",
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
               "params": {"name": "demo_get-sum", "arguments": {"a": 1, "b": 2}}}),
    )
    .await;
    assert_eq!(hidden["error"]["code"], -32602, "{hidden}");
    assert_eq!(hidden["id"], 3);
    let (status, _, _) = post(
        &reqwest::Client::new(),
        &e.gw.url("/ws"),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).to_string(),
        &[],
    )
    .await;
    assert_eq!(status, 401, "no credential, no list");
}

/// The official Python SDK client (`tests/peers/sdk_client.py`) as alice:
/// lists the tools, calls `tool` with `args`, in `mode`; its stdout.
async fn sdk_client(url: String, tool: &str, args: &str, mode: &str) -> String {
    let (tool, args, m) = (tool.to_owned(), args.to_owned(), mode.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(need(peers().join("venv/bin/python")))
            .arg(test_peer("sdk_client.py"))
            .args([&url, &tool, &args, &m, "Authorization=Bearer alice-key"])
            .output()
            .expect("python client")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{mode}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A JSON-RPC POST to `gw` as `key` in session `sid`: status and JSON.
async fn in_session(gw: &Gateway, key: &str, sid: &str, body: Value) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &gw.url("/ws"),
        body.to_string(),
        &[("authorization", &auth), ("mcp-session-id", sid)],
    )
    .await;
    (status, rpc_json(&text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_replica_is_served_by_another_and_by_nobody_else() {
    let e = env().await;
    let replica = Gateway::start_with_env(&e.config, &[(KEY_ENV, "key-one")]).await;
    let stranger = Gateway::start_with_env(&e.config, &[(KEY_ENV, "key-two")]).await;
    let (status, headers, text) = post(
        &reqwest::Client::new(),
        &e.gw.url("/ws"),
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}})
        .to_string(),
        &[("authorization", "Bearer alice-key")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    assert!(!sid.contains("alice"), "sealed, not readable: {sid}");

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(
        e.mem.inits.load(Ordering::SeqCst),
        1,
        "opened at initialize"
    );
    let (status, listed) = in_session(&replica, "alice-key", &sid, list.clone()).await;
    assert_eq!(status, 200, "{listed}");
    assert!(names(&listed).iter().any(|n| n == "sdk_pay"), "{listed}");
    assert!(names(&listed).iter().any(|n| n == "mem_note"), "{listed}");
    assert_eq!(
        e.mem.inits.load(Ordering::SeqCst),
        1,
        "the other replica resumed the upstream session the id carries"
    );
    // A cancellation reaches the sources of the session.
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 77, "reason": "changed my mind"}});
    let auth = "Bearer alice-key";
    let (status, _, _) = post(
        &reqwest::Client::new(),
        &replica.url("/ws"),
        cancel.to_string(),
        &[("authorization", auth), ("mcp-session-id", &sid)],
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        e.mem
            .notified
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n["method"] == "notifications/cancelled" && n["params"]["requestId"] == 77),
        "the source heard the cancellation"
    );

    // The session's stream merges the sources' own; a source's request on
    // it is answered through the other replica.
    let stream = reqwest::Client::new()
        .get(replica.url("/ws"))
        .header("accept", "text/event-stream")
        .header("authorization", auth)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("listen");
    assert_eq!(stream.status().as_u16(), 200);
    let mut stream = Events::new(stream);
    let asked = stream.mems_stream().await;
    let tagged = asked["id"].as_str().unwrap_or("");
    assert!(
        tagged.starts_with("sluice:mem:") && tagged.ends_with(":5"),
        "{asked}"
    );
    let roots = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": []}});
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &e.gw.url("/ws"),
        roots.to_string(),
        &[("authorization", auth), ("mcp-session-id", &sid)],
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(
        e.mem
            .notified
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n["id"] == 5 && n["result"]["roots"].is_array()),
        "the source got its answer with its own id"
    );
    drop(stream);

    // The upstream restarts and forgets: the call is sent again in a new
    // upstream session (the 404 means it ran nothing).
    e.mem.forget();
    let note = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "mem_note", "arguments": {}}});
    let (status, noted) = in_session(&replica, "alice-key", &sid, note).await;
    assert_eq!(status, 200, "{noted}");
    assert_eq!(
        noted["result"]["content"][0]["text"], "noted in s-1",
        "{noted}"
    );
    assert_eq!(e.mem.inits.load(Ordering::SeqCst), 2);
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "sdk_say", "arguments": {"message": "elsewhere"}}});
    let (status, said) = in_session(&replica, "alice-key", &sid, call).await;
    assert_eq!(status, 200, "{said}");
    assert_eq!(said["result"]["content"][0]["text"], "elsewhere", "{said}");

    let (status, v) = in_session(&replica, "bob-key", &sid, list.clone()).await;
    assert_eq!(status, 404, "another caller's session is unknown: {v}");
    // Ending the session ends the source sessions it carries.
    let ended = reqwest::Client::new()
        .delete(replica.url("/ws"))
        .header("authorization", "Bearer alice-key")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .expect("delete");
    assert_eq!(ended.status().as_u16(), 200);
    assert!(
        e.mem.known.lock().expect("lock").is_empty(),
        "the source's session was ended"
    );
    let ended = reqwest::Client::new()
        .delete(replica.url("/ws"))
        .header("authorization", "Bearer alice-key")
        .send()
        .await
        .expect("delete");
    assert_eq!(ended.status().as_u16(), 400, "no session to end");
    let (status, v) = in_session(&stranger, "alice-key", &sid, list.clone()).await;
    assert_eq!(status, 404, "a replica with other keys cannot open it: {v}");
    let (status, v) = in_session(&e.gw, "alice-key", "forged", list).await;
    assert_eq!(status, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_client_is_served_through_2025_upstreams() {
    let e = env().await;
    // The official Python SDK, speaking 2026-07-28 and then discovering.
    for mode in ["2026-07-28", "auto"] {
        let stdout = sdk_client(
            e.gw.url("/ws"),
            "sdk_say",
            r#"{"message":"stateless"}"#,
            mode,
        )
        .await;
        assert!(stdout.contains("sdk_pay"), "{mode}: {stdout}");
        assert!(stdout.contains("False ['stateless']"), "{mode}: {stdout}");
    }
    // Stateless callers keep one upstream session per source each, not one
    // per request.
    let stateless_list = |key: &'static str| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        let url = e.gw.url("/ws");
        async move {
            let auth = format!("Bearer {key}");
            let headers = [
                ("authorization", auth.as_str()),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ];
            let (status, _, text) =
                post(&reqwest::Client::new(), &url, body.to_string(), &headers).await;
            assert_eq!(status, 200, "{text}");
        }
    };
    let before = e.mem.inits.load(Ordering::SeqCst);
    stateless_list("alice-key").await;
    stateless_list("alice-key").await;
    let alice = e.mem.inits.load(Ordering::SeqCst) - before;
    assert!(
        alice <= 1,
        "one upstream session for alice, reused: {alice}"
    );
    stateless_list("bob-key").await;
    assert_eq!(
        e.mem.inits.load(Ordering::SeqCst) - before,
        alice + 1,
        "bob's is his own"
    );
    // Two of alice's calls with one id share her upstream session: each
    // goes there with an id of its own and comes back with hers.
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "mem_note", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    for _ in 0..2 {
        let headers = [
            ("authorization", "Bearer alice-key"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "mem_note"),
        ];
        let (status, _, text) = post(
            &reqwest::Client::new(),
            &e.gw.url("/ws"),
            call.to_string(),
            &headers,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let v = rpc_json(&text);
        assert_eq!(v["id"], 5, "{text}");
        assert_eq!(v["result"]["resultType"], "complete", "{text}");
    }
    let called = e.mem.called.lock().expect("lock").clone();
    assert_eq!(called.len(), 2, "{called:?}");
    assert_ne!(
        called[0], called[1],
        "one id each at the source: {called:?}"
    );
    assert!(!called.contains(&json!(5)), "{called:?}");
    // Raw: the method header must match the body, as the revision requires.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let (status, _, text) = post(
        &reqwest::Client::new(),
        &e.gw.url("/ws"),
        body.to_string(),
        &[
            ("authorization", "Bearer alice-key"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(rpc_json(&text)["error"]["code"], -32020, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_federated_by_name_with_their_own_scopes() {
    let e = env().await;
    let list = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/list"}),
    )
    .await;
    let listed: Vec<&str> = list["result"]["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(listed.contains(&"sdk_greet"), "{list}");
    assert!(!listed.contains(&"sdk_secret_prompt"), "filtered: {list}");
    assert!(
        !listed.iter().any(|n| n.starts_with("ev_")),
        "alice may get no prompt of everything: {list}"
    );
    let got = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 2, "method": "prompts/get",
               "params": {"name": "sdk_greet", "arguments": {"name": "Ada"}}}),
    )
    .await;
    let text = got["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or("");
    assert!(text.contains("greet Ada"), "{got}");
    assert!(e.sdk.ran().contains(&json!({"prompt": "greet"})));
    let secret = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 3, "method": "prompts/get",
               "params": {"name": "sdk_secret_prompt", "arguments": {"name": "Ada"}}}),
    )
    .await;
    assert_eq!(secret["error"]["code"], -32602, "{secret}");
    assert!(!e.sdk.ran().contains(&json!({"prompt": "secret_prompt"})));
    let bob = rpc(
        &e,
        "bob-key",
        json!({"jsonrpc": "2.0", "id": 4, "method": "prompts/get",
               "params": {"name": "sdk_greet", "arguments": {"name": "Ada"}}}),
    )
    .await;
    assert_eq!(bob["error"]["code"], -32602, "no scope for prompts: {bob}");

    // Completion follows the prompt to its source, under its own name.
    let complete = |id: u64, prompt: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "completion/complete", "params": {
            "ref": {"type": "ref/prompt", "name": prompt},
            "argument": {"name": "name", "value": "al"}}})
    };
    let done = rpc(&e, "alice-key", complete(5, "sdk_greet")).await;
    assert_eq!(
        done["result"]["completion"]["values"],
        json!(["alice", "albert"]),
        "{done}"
    );
    assert!(e.sdk.ran().contains(&json!({"complete": "greet"})));
    let none = rpc(&e, "bob-key", complete(6, "sdk_greet")).await;
    assert_eq!(
        none["result"]["completion"]["values"],
        json!([]),
        "a prompt bob may not see has no completions: {none}"
    );
    let ran = e.sdk.ran();
    let asked = ran.iter().filter(|r| r["complete"] == "greet").count();
    assert_eq!(asked, 1, "bob's went nowhere: {ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_read_from_the_source_that_lists_them_within_their_scopes() {
    let e = env().await;
    let list = rpc(
        &e,
        "alice-key",
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list"}),
    )
    .await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"file:///pub/readme.txt"), "{list}");
    assert!(!uris.contains(&"file:///etc/passwd"), "not alice's: {list}");
    let read = |id: u64, uri: &str| json!({"jsonrpc": "2.0", "id": id, "method": "resources/read", "params": {"uri": uri}});
    let ok = rpc(&e, "alice-key", read(2, "file:///pub/readme.txt")).await;
    assert_eq!(ok["result"]["contents"][0]["text"], "public\n", "{ok}");
    let hidden = rpc(&e, "alice-key", read(3, "file:///etc/passwd")).await;
    assert_eq!(hidden["error"]["code"], -32002, "{hidden}");
    let dotted = rpc(&e, "alice-key", read(4, "file:///pub/../etc/passwd")).await;
    assert_eq!(dotted["error"]["code"], -32602, "{dotted}");
    let ran = e.sdk.ran();
    assert!(ran.contains(&json!({"read": "pub/readme.txt"})), "{ran:?}");
    assert!(
        !ran.iter()
            .any(|r| r["read"].as_str().is_some_and(|p| p.contains("passwd"))),
        "{ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_request_to_the_client_is_answered_through_another_replica() {
    let demo = demo(DemoOptions::default()).await;
    let config = ws_config(
        &[format!("{{ name: demo, url: \"{}\" }}", demo.url())],
        r#"separator: ".", sources: [{ upstream: demo, prefix: d }]"#,
        &format!("session_keys: [{{ env: {KEY_ENV} }}]\n"),
    );
    let a = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let b = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let client = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "t", "version": "0"}}});
    let (status, headers, text) = post(&client, &a.url("/ws"), init.to_string(), &[]).await;
    assert_eq!(status, 200, "{text}");
    // What the source declared, advertised as the server's own.
    let caps = &rpc_json(&text)["result"]["capabilities"];
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    assert_eq!(caps["tools"]["listChanged"], true, "{caps}");
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();

    // The call runs on replica b; the demo asks the client on its stream.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "d.test_elicitation", "arguments": {"message": "who are you?"}}});
    let stream = client
        .post(b.url("/ws"))
        .header("content-type", "application/json")
        .header("accept", ACCEPT_BOTH)
        .header("mcp-session-id", &sid)
        .body(call.to_string())
        .send()
        .await
        .expect("call");
    assert_eq!(stream.status().as_u16(), 200);
    let mut stream = Events::new(stream);
    let seen = stream.until(|m| m["method"] == "elicitation/create").await;
    let asked = seen.last().expect("asked").clone();
    let tag = asked["id"].as_str().expect("a string id").to_owned();
    assert!(
        tag.starts_with("sluice:demo:"),
        "the id names the source: {tag}"
    );

    // A stranger's answer reaches no source, nor one to an id the gateway
    // did not pass (its mark forged); the answer goes to replica a, which
    // sends it to the source.
    let stray = json!({"jsonrpc": "2.0", "id": "sluice:nobody:0:1", "result": {}});
    let (source, rest) = tag["sluice:".len()..].split_once(':').expect("source");
    let (_, original) = rest.split_once(':').expect("mark");
    let forged = json!({"jsonrpc": "2.0", "id": format!("sluice:{source}:0123456789abcdef:{original}"),
                        "result": {"action": "decline"}});
    let answer = json!({"jsonrpc": "2.0", "id": tag, "result": {
        "action": "accept", "content": {"username": "ann", "email": "ann@example.com"}}});
    for (message, want) in [(stray, 400), (forged, 400), (answer, 202)] {
        let headers = [("mcp-session-id", sid.as_str())];
        let (status, _, text) = post(&client, &a.url("/ws"), message.to_string(), &headers).await;
        assert_eq!(status, want, "{text}");
    }
    let (text, result) = stream.result_text(2).await;
    assert!(text.contains("ann"), "the source got the answer: {result}");

    // Progress reaches the client with its own token.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "d.test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "p-1"}}});
    let (status, _, text) = post(
        &client,
        &b.url("/ws"),
        call.to_string(),
        &[("mcp-session-id", &sid)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(r#""method":"notifications/progress""#)
            && text.contains(r#""progressToken":"p-1""#),
        "{text}"
    );
    assert_eq!(rpc_json(&text)["id"], 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_client_reaches_a_stateless_source_in_its_own_revision() {
    let demo = demo(DemoOptions::default()).await;
    let config = ws_config(
        &[format!("{{ name: demo, url: \"{}\" }}", demo.url())],
        "sources: [{ upstream: demo, prefix: d }]",
        "",
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let call = |params: Value| {
        let body = json!({"jsonrpc": "2.0", "id": "c-1", "method": "tools/call", "params": params});
        let (client, url) = (client.clone(), gw.url("/ws"));
        async move {
            let headers = [
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "d_test_elicitation"),
            ];
            let (status, _, text) = post(&client, &url, body.to_string(), &headers).await;
            assert_eq!(status, 200, "{text}");
            rpc_json(&text)
        }
    };
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    // Discovery advertises what the source that speaks this revision can do.
    let discover = json!({"jsonrpc": "2.0", "id": "d-1", "method": "server/discover",
                          "params": {"_meta": meta}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let (status, _, text) = post(&client, &gw.url("/ws"), discover.to_string(), &headers).await;
    assert_eq!(status, 200, "{text}");
    let caps = &rpc_json(&text)["result"]["capabilities"];
    assert_eq!(caps["tools"]["listChanged"], true, "{text}");
    // The demo asks for input the stateless way (no session to ask in):
    // it was reached in 2026-07-28, not through a 2025 session.
    let first = call(json!({"name": "d_test_elicitation",
                            "arguments": {"message": "who?"}, "_meta": meta}))
    .await;
    assert_eq!(first["id"], "c-1", "{first}");
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"].clone();
    assert!(state.is_string(), "{first}");
    // The retry with the answer goes back to the source that asked.
    let done = call(
        json!({"name": "d_test_elicitation", "arguments": {"message": "who?"},
        "inputResponses": {"elicitation": {"action": "accept",
            "content": {"username": "ann", "email": "ann@example.com"}}},
        "requestState": state, "_meta": meta}),
    )
    .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("ann"), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_opened_after_initialize_is_the_client_sessions_own() {
    let (addr, mem) = Forgetful::start().await;
    mem.refuse_init.store(true, Ordering::SeqCst);
    let config = ws_config(
        &[format!(
            "{{ name: mem, url: \"http://{addr}/mcp\", retries: {{ attempts: 0 }} }}"
        )],
        "sources: [{ upstream: mem }]",
        "",
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let url = gw.url("/ws");
    let open = || initialize(&client, &url);
    // The source is not up when the session begins: it is opened at the
    // first call, for this session alone, and keeps the client's ids.
    let sid = open().await;
    assert_eq!(mem.inits.load(Ordering::SeqCst), 0);
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "mem_note", "arguments": {}}});
    let headers = [("mcp-session-id", sid.as_str())];
    let (status, _, text) = post(&client, &gw.url("/ws"), call.to_string(), &headers).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        rpc_json(&text)["result"]["content"][0]["text"],
        "noted in s-0",
        "{text}"
    );
    assert_eq!(mem.called.lock().expect("lock").clone(), [json!(9)]);
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 9}});
    let (status, _, _) = post(&client, &gw.url("/ws"), cancel.to_string(), &headers).await;
    assert_eq!(status, 202);
    assert!(
        mem.notified
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n["params"]["requestId"] == 9),
        "the cancellation names the call as the source knows it"
    );
    // Another session of the same caller whose source was not up either
    // gets a source session of its own, not the first one's.
    mem.refuse_init.store(true, Ordering::SeqCst);
    let other = open().await;
    assert_eq!(mem.inits.load(Ordering::SeqCst), 1);
    let headers = [("mcp-session-id", other.as_str())];
    let (status, _, text) = post(&client, &gw.url("/ws"), call.to_string(), &headers).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(mem.inits.load(Ordering::SeqCst), 2, "{text}");
    assert_eq!(
        rpc_json(&text)["result"]["content"][0]["text"],
        "noted in s-1",
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_dies_while_a_list_is_in_flight_is_left_out() {
    use support::fault::{fault_upstream, Mode};
    let demo = demo(DemoOptions::default()).await;
    let fault = fault_upstream(Mode::Ok).await;
    let config = ws_config(
        &[
            format!("{{ name: demo, url: \"{}\" }}", demo.url()),
            format!(
                "{{ name: dying, url: \"{}\", retries: {{ attempts: 0 }} }}",
                fault.url()
            ),
        ],
        "sources: [{ upstream: demo }, { upstream: dying }]",
        "",
    );
    let gw = Gateway::start(&config).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let url = gw.url("/ws");
    // Both sources answer; then the second starts its answer and dies.
    let (status, _, text) = post(&reqwest::Client::new(), &url, list.to_string(), &[]).await;
    assert_eq!(status, 200, "{text}");
    fault.set(Mode::SseThenReset);
    let before = fault.requests();
    let listing =
        tokio::spawn(
            async move { post(&reqwest::Client::new(), &url, list.to_string(), &[]).await },
        );
    eventually("the source to die mid-answer", async || {
        if fault.requests() > before {
            fault.reset();
        }
        listing.is_finished()
    })
    .await;
    let (status, _, text) = listing.await.expect("join");
    assert_eq!(status, 200, "{text}");
    let listed = rpc_json(&text);
    assert!(
        names(&listed).iter().any(|n| n == "demo_get-sum"),
        "{listed}"
    );
    assert_eq!(
        gw.metric(r#"sluice_upstream_up{upstream="dying"}"#).await,
        0.0
    );
    assert_eq!(
        gw.metric(r#"sluice_upstream_up{upstream="demo"}"#).await,
        1.0
    );
    assert!(
        gw.metric(r#"sluice_upstream_errors_total{kind="upstream",route="ws"}"#)
            .await
            >= 1.0,
        "{}",
        gw.metrics().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_followed_to_the_source_that_created_it() {
    let (_everything, port) = start_everything().await;
    let demo = demo(DemoOptions::default()).await;
    let config = ws_config(
        &[
            format!("{{ name: demo, url: \"{}\" }}", demo.url()),
            format!("{{ name: everything, url: \"http://127.0.0.1:{port}/mcp\" }}"),
        ],
        "sources: [{ upstream: demo }, { upstream: everything, prefix: ev }]",
        "",
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"tasks": {}},
        "clientInfo": {"name": "t", "version": "0"}}});
    let (status, headers, text) = post(&client, &gw.url("/ws"), init.to_string(), &[]).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        rpc_json(&text)["result"]["capabilities"]["tasks"].is_object(),
        "{text}"
    );
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let rpc = |body: Value| {
        let (client, url, sid) = (client.clone(), gw.url("/ws"), sid.clone());
        async move {
            let (status, _, text) =
                post(&client, &url, body.to_string(), &[("mcp-session-id", &sid)]).await;
            assert_eq!(status, 200, "{text}");
            rpc_json(&text)
        }
    };
    let started = rpc(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "ev_simulate-research-query", "arguments": {"topic": "sluices"},
        "task": {"ttl": 60000}}}),
    )
    .await;
    let handle = started["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {started}"))
        .to_owned();
    let listed = rpc(json!({"jsonrpc": "2.0", "id": 3, "method": "tasks/list"})).await;
    assert!(
        listed["result"]["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["taskId"] == handle)),
        "{listed}"
    );
    // Past the source's page (10 tasks): the merged list pages too, its
    // cursor carrying the source's, until every task was listed once.
    let mut started = vec![handle.clone()];
    for i in 0..11 {
        let more = rpc(
            json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
            "params": {"name": "ev_simulate-research-query", "arguments": {"topic": "locks"},
                       "task": {"ttl": 60000}}}),
        )
        .await;
        started.push(
            more["result"]["task"]["taskId"]
                .as_str()
                .unwrap_or_else(|| panic!("a task: {more}"))
                .to_owned(),
        );
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 5, "the pages end");
        let params = cursor
            .as_ref()
            .map_or(json!({}), |c| json!({ "cursor": c }));
        let listed = rpc(
            json!({"jsonrpc": "2.0", "id": 200 + page, "method": "tasks/list",
                                "params": params}),
        )
        .await;
        let tasks = listed["result"]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        seen.extend(
            tasks
                .iter()
                .filter_map(|t| t["taskId"].as_str().map(str::to_owned)),
        );
        match listed["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "each task once: {seen:?}");
    for h in &started {
        assert!(seen.contains(h), "{h} listed: {seen:?}");
    }
    let bad = rpc(json!({"jsonrpc": "2.0", "id": 300, "method": "tasks/list",
                         "params": {"cursor": "not-ours"}}))
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let get =
        json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/get", "params": {"taskId": handle}});
    eventually("the task to complete", async || {
        rpc(get.clone()).await["result"]["status"] == "completed"
    })
    .await;
    let done = rpc(json!({"jsonrpc": "2.0", "id": 5, "method": "tasks/result",
                          "params": {"taskId": handle}}))
    .await;
    assert_eq!(done["id"], 5, "{done}");
    let text = done["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("sluices"), "{done}");
    let unknown = rpc(json!({"jsonrpc": "2.0", "id": 6, "method": "tasks/get",
                             "params": {"taskId": "no-such-task"}}))
    .await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

/// An SSE answer read message by message; what one read brings beyond a
/// message waits for the next.
struct Events {
    resp: reqwest::Response,
    carry: String,
    ready: std::collections::VecDeque<Value>,
}

impl Events {
    fn new(resp: reqwest::Response) -> Events {
        Events {
            resp,
            carry: String::new(),
            ready: Default::default(),
        }
    }

    /// The next message; a stream that ends or stays silent for a minute
    /// fails the test rather than hanging it.
    async fn next(&mut self) -> Value {
        while self.ready.is_empty() {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(60), self.resp.chunk())
                .await
                .expect("an event within a minute")
                .expect("chunk")
                .expect("the stream ended early");
            self.carry.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.carry.find("\n\n") {
                let event: String = self.carry.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                if !data.is_empty() && !data.concat().is_empty() {
                    let v: Value = serde_json::from_str(&data.join("\n")).expect("json event");
                    self.ready.push_back(v);
                }
            }
        }
        self.ready.pop_front().expect("a message")
    }

    /// A legacy stream's first event: the URL its messages go to.
    async fn endpoint(&mut self) -> String {
        loop {
            let chunk = self.resp.chunk().await.expect("chunk").expect("an event");
            self.carry.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(end) = self.carry.find("\n\n") {
                let event: String = self.carry.drain(..end + 2).collect();
                assert!(event.starts_with("event: endpoint\n"), "{event}");
                let data = event.lines().find_map(|l| l.strip_prefix("data: "));
                return data.expect("a URL").to_owned();
            }
        }
    }

    /// What `Forgetful` sends on its own stream, up to its request (which
    /// is returned): a list change, then `roots/list`.
    async fn mems_stream(&mut self) -> Value {
        let seen = self.until(|m| m["method"] == "roots/list").await;
        assert!(
            seen.iter()
                .any(|m| m["method"] == "notifications/tools/list_changed"),
            "{seen:?}"
        );
        seen.last().expect("asked").clone()
    }

    /// The answer to request `id`: its first text part, and all of it.
    async fn result_text(&mut self, id: i64) -> (String, Value) {
        let seen = self.until(|m| m["id"] == id).await;
        let result = seen.last().expect("an answer").clone();
        let text = result["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("");
        (text.to_owned(), result)
    }

    /// Messages until one for which `until` holds; all of them.
    async fn until(&mut self, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let v = self.next().await;
            let done = until(&v);
            seen.push(v);
            if done {
                return seen;
            }
        }
    }
}

/// A stateless POST to `url`: `method` mirrored, `id`, `params` with the
/// revision's `_meta`.
async fn stateless_post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    (method, id, mut params): (&str, &str, Value),
) -> reqwest::Response {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
                             "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params.get("name").and_then(Value::as_str) {
        req = req.header("mcp-name", name);
    }
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    req.body(body.to_string()).send().await.expect("a POST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_listen_merges_every_sources_changes_within_the_callers_scopes() {
    let sdk = SdkServer::start().await;
    let (mem_addr, mem) = Forgetful::start().await;
    let extra = format!(
        "identity:\n  audience: sluice-test\n  api_keys:\n    - {{ id: alice, sha256: \"{}\", subject: alice, roles: [reader] }}\n\
         roles:\n  - {{ name: reader, allow: [\"resources:sdk/file:///pub/**:read\"] }}\n",
        hash_key("alice-key")
    );
    let config = ws_config(
        &[
            format!(
                "{{ name: sdk, url: \"http://127.0.0.1:{}/mcp\" }}",
                sdk.port
            ),
            format!("{{ name: mem, url: \"http://{mem_addr}/mcp\" }}"),
        ],
        "sources: [{ upstream: sdk }, { upstream: mem }]",
        &extra,
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let url = gw.url("/ws");
    let readme = "file:///pub/readme.txt";

    // A URI the caller may not read, or one no source serves, is refused
    // with the request's id: nothing is subscribed.
    let listen = |id: &'static str, params: Value| {
        let key = Some("alice-key");
        stateless_post(&client, &url, key, ("subscriptions/listen", id, params))
    };
    for uri in ["file:///etc/passwd", "mem://nowhere"] {
        let params = json!({"notifications": {"resourceSubscriptions": [readme, uri]}});
        let resp = listen("l-0", params).await;
        let v = rpc_json(&resp.text().await.expect("body"));
        assert_eq!(v["id"], "l-0", "{v}");
        assert!(v["error"]["code"].is_i64(), "{uri}: {v}");
    }
    // A filter that cannot be read one way is invalid params.
    let params = json!({"notifications": {"toolsListChanged": "yes"}});
    let resp = listen("l-1", params).await;
    let v = rpc_json(&resp.text().await.expect("body"));
    assert_eq!(v["error"]["code"], -32602, "{v}");

    // The sessions the source has so far (the caller's, for its lists).
    let (inits, known) = (
        mem.inits.load(Ordering::SeqCst),
        mem.known.lock().expect("lock").len(),
    );
    let params = json!({"notifications": {"toolsListChanged": true,
                                          "resourceSubscriptions": [readme]}});
    let stream = listen("l-2", params).await;
    assert_eq!(stream.status(), 200);
    let mut stream = Events::new(stream);
    let seen = vec![stream.next().await];
    assert_eq!(
        seen[0]["method"], "notifications/subscriptions/acknowledged",
        "{seen:?}"
    );
    assert_eq!(
        seen[0]["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "l-2"
    );
    assert_eq!(
        seen[0]["params"]["notifications"]["resourceSubscriptions"],
        json!([readme])
    );
    // The 2025 source's own stream (a list change, then a request to the
    // client that a listen stream does not carry) through a session of its
    // own.
    let seen = stream
        .until(|v| v["method"] == "notifications/tools/list_changed")
        .await;
    let changed = seen.last().expect("an event");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "l-2"
    );
    assert_eq!(
        mem.inits.load(Ordering::SeqCst),
        inits + 1,
        "a session for the listen"
    );

    // The 2026 source publishes: a resource not subscribed, then one that
    // is. Only what the filter names arrives, stamped.
    for uri in ["file:///pub/other.txt", readme] {
        let touch = stateless_post(
            &client,
            &format!("http://127.0.0.1:{}/mcp", sdk.port),
            None,
            (
                "tools/call",
                "t-1",
                json!({"name": "touch", "arguments": {"uri": uri}}),
            ),
        )
        .await;
        assert_eq!(touch.status(), 200);
        touch.text().await.expect("touched");
    }
    let seen = stream
        .until(|v| v["method"] == "notifications/resources/updated")
        .await;
    let updated = seen.last().expect("an event");
    assert_eq!(updated["params"]["uri"], readme, "{seen:?}");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "l-2"
    );
    for v in &seen {
        assert!(
            v.get("id").is_none(),
            "no request reaches a listen stream: {v}"
        );
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "l-2",
            "{v}"
        );
    }
    // The client goes: the session opened for the listen is ended.
    drop(stream);
    eventually("the listen's source session ended", async || {
        mem.known.lock().expect("lock").len() == known
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_client_holds_a_whole_session_on_its_stream() {
    let demo = demo(DemoOptions::default()).await;
    let extra = format!(
        "identity:\n  audience: sluice-test\n  api_keys:\n\
         \x20   - {{ id: alice, sha256: \"{}\", subject: alice, roles: [all] }}\n\
         \x20   - {{ id: bob, sha256: \"{}\", subject: bob, roles: [all] }}\n\
         roles:\n  - {{ name: all, allow: [\"tools:demo/*:call\"] }}\n",
        hash_key("alice-key"),
        hash_key("bob-key")
    );
    let (mem_addr, mem) = Forgetful::start().await;
    let config = ws_config(
        &[
            format!("{{ name: demo, url: \"{}\" }}", demo.url()),
            format!("{{ name: mem, url: \"http://{mem_addr}/mcp\" }}"),
        ],
        r#"separator: ".", sources: [{ upstream: demo, prefix: d }, { upstream: mem }]"#,
        &extra,
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let stream = client
        .get(gw.url("/ws"))
        .header("accept", "text/event-stream")
        .header("authorization", "Bearer alice-key")
        .send()
        .await
        .expect("a stream");
    assert_eq!(stream.status(), 200);
    let mut stream = Events::new(stream);
    let endpoint = stream.endpoint().await;
    assert!(endpoint.starts_with("/ws/message?sessionId="), "{endpoint}");
    let url = gw.url(&endpoint);
    let send = |key: &'static str, message: Value| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let auth = format!("Bearer {key}");
            let headers = [("authorization", auth.as_str())];
            post(&client, &url, message.to_string(), &headers).await.0
        }
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "t", "version": "0"}}});
    // Another caller cannot post to alice's stream: it is unknown to them.
    assert_eq!(send("bob-key", init.clone()).await, 404);
    assert_eq!(send("alice-key", init).await, 202);
    let seen = stream.until(|m| m["id"] == 1).await;
    assert!(
        seen.last().expect("answer")["result"]["serverInfo"].is_object(),
        "{seen:?}"
    );
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send("alice-key", done).await, 202);

    // The sources' own streams reach the stream too: a list change, and a
    // request whose answer, posted, goes back to the source that asked.
    let asked = stream.mems_stream().await;
    let roots = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {"roots": []}});
    assert_eq!(send("alice-key", roots).await, 202);
    eventually("the source got its answer", async || {
        mem.notified
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n["id"] == 5)
    })
    .await;

    // A call whose source asks the client: the question comes on the
    // stream, the answer is posted, and the call's result follows.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "d.test_elicitation", "arguments": {"message": "who are you?"}}});
    assert_eq!(send("alice-key", call).await, 202);
    let seen = stream.until(|m| m["method"] == "elicitation/create").await;
    let asked = seen.last().expect("asked");
    let answer = json!({"jsonrpc": "2.0", "id": asked["id"], "result": {
        "action": "accept", "content": {"username": "ann", "email": "ann@example.com"}}});
    assert_eq!(send("alice-key", answer).await, 202);
    let (text, result) = stream.result_text(2).await;
    assert!(text.contains("ann"), "{result}");

    // A refusal reaches the stream with its id, like any answer.
    let hidden = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "d.nothing", "arguments": {}}});
    assert_eq!(send("alice-key", hidden).await, 202);
    let seen = stream.until(|m| m["id"] == 3).await;
    assert!(
        seen.last().expect("refusal")["error"]["code"].is_i64(),
        "{seen:?}"
    );

    // The stream gone, its URL names nothing.
    drop(stream);
    eventually("the stream forgotten", async || {
        send(
            "alice-key",
            json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
        )
        .await
            == 404
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_legacy_client_is_limited_by_its_own_address() {
    let demo = demo(DemoOptions::default()).await;
    // No identity: callers are known by their address.
    let config = ws_config(
        &[format!("{{ name: demo, url: \"{}\" }}", demo.url())],
        r#"sources: [{ upstream: demo, prefix: "" }]"#,
        "rate_limits:\n  rules:\n    - { name: per-client, match: { methods: [tools/call] }, per: [subject], rate: 2/min, burst: 2 }\n",
    );
    let gw = Gateway::start(&config).await;
    let client = reqwest::Client::new();
    let stream = client
        .get(gw.url("/ws"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("a stream");
    let mut stream = Events::new(stream);
    let url = gw.url(&stream.endpoint().await);
    let send = |message: Value| {
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, message.to_string(), &[]).await.0 }
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}});
    assert_eq!(send(init).await, 202);
    stream.until(|m| m["id"] == 1).await;
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(send(done).await, 202);
    // Two calls through the legacy stream spend this address's allowance.
    for id in [2, 3] {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "get-sum", "arguments": {"a": 1, "b": id}}});
        assert_eq!(send(call).await, 202);
        let (text, result) = stream.result_text(id).await;
        assert_eq!(text, (1 + id).to_string(), "{result}");
    }
    // The same address calling directly finds it spent: one bucket per
    // client, whichever transport it uses.
    let v = stateless_rpc(
        &gw.url("/ws"),
        None,
        (
            "tools/call",
            json!(4),
            json!({"name": "get-sum", "arguments": {"a": 1, "b": 1}}),
        ),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rate limit")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_its_client_ended_is_not_taken_up_again() {
    let demo = demo(DemoOptions::default()).await;
    let config = ws_config(
        &[format!("{{ name: demo, url: \"{}\" }}", demo.url())],
        r#"sources: [{ upstream: demo, prefix: "" }]"#,
        "",
    );
    let gw = Gateway::start(&config).await;
    let url = gw.url("/ws");
    let sid = initialize_with(&reqwest::Client::new(), &url, &[], "2025-11-25", "{}").await;
    let (status, _, text) = sum_in_session(&url, &sid, 1).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(end_session(&url, &sid).await, 200);
    // The old id is an unknown session now, not a way back into it.
    let (status, _, text) = sum_in_session(&url, &sid, 2).await;
    assert_eq!(status, 404, "{text}");
}

/// `get-sum` in the 2025 session `sid`: status, headers, body.
async fn sum_in_session(
    url: &str,
    sid: &str,
    id: u64,
) -> (u16, reqwest::header::HeaderMap, String) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "get-sum", "arguments": {"a": 1, "b": 2}}});
    let headers = [
        ("mcp-session-id", sid),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    post(&reqwest::Client::new(), url, body.to_string(), &headers).await
}

/// `DELETE` of the session `sid`: the status.
async fn end_session(url: &str, sid: &str) -> u16 {
    reqwest::Client::new()
        .delete(url)
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("delete")
        .status()
        .as_u16()
}

/// Two replicas sharing the limits' store (a real `redis-server`): a
/// session ended through one is unknown on the other at once; with the
/// store gone and the limits failing closed, a session that cannot be
/// checked is refused as unknown rather than served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_through_one_replica_is_unknown_on_another() {
    let demo = demo(DemoOptions::default()).await;
    let redis = support::redis_server::Redis::start(free_port()).await;
    let config = ws_config(
        &[format!("{{ name: demo, url: \"{}\" }}", demo.url())],
        r#"sources: [{ upstream: demo, prefix: "" }]"#,
        &format!(
            "session_keys: [{{ env: {KEY_ENV} }}]\n\
             rate_limits:\n  shared_store: {{ redis_url: \"redis://127.0.0.1:{}\", on_unavailable: closed, timeout_ms: 500 }}\n",
            redis.port
        ),
    );
    let a = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let b = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let client = reqwest::Client::new();
    let sid = initialize_with(&client, &a.url("/ws"), &[], "2025-11-25", "{}").await;
    let kept = initialize_with(&client, &a.url("/ws"), &[], "2025-11-25", "{}").await;
    for gw in [&a, &b] {
        let (status, _, text) = sum_in_session(&gw.url("/ws"), &sid, 1).await;
        assert_eq!(status, 200, "either replica serves the session: {text}");
    }
    assert_eq!(end_session(&a.url("/ws"), &sid).await, 200);
    for gw in [&b, &a] {
        let (status, _, text) = sum_in_session(&gw.url("/ws"), &sid, 2).await;
        assert_eq!(status, 404, "ended everywhere: {text}");
    }
    // Another session of the same caller goes on.
    let (status, _, text) = sum_in_session(&b.url("/ws"), &kept, 3).await;
    assert_eq!(status, 200, "{text}");
    // The store is gone: the limits fail closed, so a session that cannot
    // be checked is unknown (the client opens a new one).
    drop(redis);
    let (status, _, text) = sum_in_session(&b.url("/ws"), &kept, 4).await;
    assert_eq!(status, 404, "{text}");
}

/// Sources that speak only the legacy HTTP+SSE transport (server-everything
/// in its `sse` mode, and the demo's legacy endpoints) behind one virtual
/// server: a 2025 session and a stateless 2026 client list and call
/// through them; another replica (same session keys) re-opens the source
/// streams it does not hold; ending the session ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_speak_only_legacy_sse_are_federated() {
    let demo = demo(DemoOptions::default()).await;
    let (_everything, port) = support::peers::start_everything_as("sse").await;
    let config = ws_config(
        &[
            format!(
                "{{ name: demo, url: \"{}/sse\", transport: legacy_sse }}",
                demo.base()
            ),
            format!("{{ name: ev, url: \"http://127.0.0.1:{port}/sse\", transport: legacy_sse }}"),
        ],
        r#"separator: "_", sources: [{ upstream: demo, prefix: d }, { upstream: ev, prefix: e }]"#,
        &format!("session_keys: [{{ env: {KEY_ENV} }}]\n"),
    );
    let a = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let b = Gateway::start_with_env(&config, &[(KEY_ENV, "shared")]).await;
    let client = reqwest::Client::new();
    let sid = initialize_with(&client, &a.url("/ws"), &[], "2025-11-25", "{}").await;
    let in_session = |gw: &Gateway, body: Value| {
        let (url, sid) = (gw.url("/ws"), sid.clone());
        async move {
            let headers = [
                ("mcp-session-id", sid.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ];
            let (status, _, text) =
                post(&reqwest::Client::new(), &url, body.to_string(), &headers).await;
            assert_eq!(status, 200, "{text}");
            rpc_json(&text)
        }
    };
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let tools = names(&in_session(&a, list.clone()).await);
    assert!(tools.contains(&"d_get-sum".to_owned()), "{tools:?}");
    assert!(tools.contains(&"e_echo".to_owned()), "{tools:?}");
    let sum = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "d_get-sum", "arguments": {"a": 40, "b": 2}}});
    let echo = json!({"jsonrpc": "2.0", "id": "two", "method": "tools/call",
        "params": {"name": "e_echo", "arguments": {"message": "through sse"}}});
    let said = in_session(&a, sum.clone()).await;
    assert_eq!(said["result"]["content"][0]["text"], "42", "{said}");
    let said = in_session(&a, echo.clone()).await;
    assert_eq!(said["id"], "two", "the client's own id: {said}");
    assert!(
        said["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("through sse")),
        "{said}"
    );
    // The other replica holds none of the session's source streams: it
    // opens its own, and the call goes through.
    let said = in_session(&b, echo).await;
    assert!(said["result"]["content"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("through sse")));
    assert_eq!(
        in_session(&b, sum).await["result"]["content"][0]["text"],
        "42"
    );
    // A stateless client (2026-07-28) is served through them too.
    let stateless = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "d_get-sum", "arguments": {"a": 1, "b": 2},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "d_get-sum"),
    ];
    let (status, _, text) = post(&client, &a.url("/ws"), stateless.to_string(), &headers).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        rpc_json(&text)["result"]["content"][0]["text"],
        "3",
        "{text}"
    );
    // What a source sends unasked reaches the session's own stream: the
    // simulated log messages server-everything starts sending (the first
    // at once) once asked.
    let listen = client
        .get(a.url("/ws"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("listen");
    assert_eq!(listen.status(), 200);
    let logging = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "e_toggle-simulated-logging", "arguments": {}}});
    in_session(&a, logging).await;
    let mut events = listen.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("notifications/message") {
        use futures::StreamExt;
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
            .await
            .expect("a log message in time")
            .expect("the stream open")
            .expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(events);
    // Ending the session ends its source streams: two on each replica, and
    // one each for the stateless caller's.
    assert_eq!(a.metric("sluice_source_streams_open").await, 3.0);
    assert_eq!(b.metric("sluice_source_streams_open").await, 2.0);
    assert_eq!(end_session(&a.url("/ws"), &sid).await, 200);
    assert_eq!(a.metric("sluice_source_streams_open").await, 1.0);
    let (status, _, _) = sum_in_session(&a.url("/ws"), &sid, 4).await;
    assert_eq!(status, 404, "the session is over");
}
