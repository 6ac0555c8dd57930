//! The red team's ways around the policy, replayed against real upstreams:
//! each is refused or filtered, and the upstream side shows that nothing it
//! should not have run ran. The corpus of payloads is in this file, one test
//! per class; the payload shapes are also in the fuzz corpora.

mod support;

use std::time::Duration;

use futures::StreamExt;
use sluice_gateway::identity::hash_key;
use support::*;

/// alice may call `echo` and get one simple prompt; bob may do anything.
fn config(demo: &str, demo_base: &str, recorder: &str) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
identity:
  audience: "sluice-test"
  api_keys:
    - {{ id: alice, sha256: "{alice}", subject: alice, roles: [viewer] }}
    - {{ id: bob, sha256: "{bob}", subject: bob, roles: [admin] }}
roles:
  - name: viewer
    allow: ["tools:demo/echo:call", "tools:legacy/echo:call", "prompts:demo/test_simple_prompt:get", "tools:rec/*:call"]
  - name: admin
    allow: ["tools:demo/*:call", "tools:legacy/*:call", "prompts:demo/*:get", "tools:rec/*:call"]
upstreams:
  - {{ name: demo, url: "{demo}" }}
  - {{ name: legacy, url: "{demo_base}" }}
  - name: rec
    url: "{recorder}"
    inject: {{ assertion_header: x-sluice-identity }}
routes:
  - {{ name: demo, path: /mcp, upstream: demo }}
  - {{ name: legacy, path: /legacy, upstream: legacy, transport: legacy_sse }}
  - {{ name: rec, path: /rec/mcp, upstream: rec }}
"#,
        alice = hash_key("alice-key"),
        bob = hash_key("bob-key"),
    )
}

struct Env {
    gw: Gateway,
    _demo: DemoServer,
    rec: Recorder,
    client: reqwest::Client,
}

async fn env() -> Env {
    let demo = demo(DemoOptions::default()).await;
    let (rec_addr, rec) = recording_upstream().await;
    let gw = Gateway::start(&config(
        &demo.url(),
        &demo.base(),
        &format!("http://{rec_addr}/mcp"),
    ))
    .await;
    Env {
        gw,
        _demo: demo,
        rec,
        client: reqwest::Client::new(),
    }
}

const ALICE: (&str, &str) = ("authorization", "Bearer alice-key");
const BOB: (&str, &str) = ("authorization", "Bearer bob-key");

/// Tool names in a `tools/list` answer.
fn tool_names(answer: &serde_json::Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Read an SSE stream until `done` says what it holds is enough.
async fn read_until(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    done: impl Fn(&str) -> bool,
) {
    while !done(buf) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the stream delivers in time")
            .expect("the stream stays open")
            .expect("a chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// The JSON-RPC messages carried by `data:` lines of an SSE text.
fn sse_messages(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

const LIST_TOOLS_ID_A_ESCAPED: &str = r#"{"jsonrpc":"2.0","id":"\u0061","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_answer_is_filtered_whatever_spelling_its_id_comes_back_in() {
    let e = env().await;
    // The upstream answers `"\u0061"` as `"a"`: matched by text, the answer
    // passed unfiltered.
    let (status, _, body) = post(
        &e.client,
        &e.gw.url("/mcp"),
        LIST_TOOLS_ID_A_ESCAPED,
        &[
            ALICE,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer = rpc_json(&body);
    assert_eq!(answer["id"], "a", "the upstream respelt the id: {body}");
    assert_eq!(tool_names(&answer), ["echo"], "{body}");
    // bob sees the whole catalog through the same path.
    let (_, _, body) = post(
        &e.client,
        &e.gw.url("/mcp"),
        LIST_TOOLS_ID_A_ESCAPED,
        &[
            BOB,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
    )
    .await;
    assert!(tool_names(&rpc_json(&body)).len() > 3, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_stream_carries_the_filtered_list() {
    let e = env().await;
    let url = e.gw.url("/mcp");
    let sid = initialize_with(&e.client, &url, &[ALICE], "2025-11-25", "{}").await;
    let session = [
        ALICE,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (status, headers, body) = post(
        &e.client,
        &url,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#,
        &session,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream")),
        "the demo answers in SSE, with event ids to resume from"
    );
    assert_eq!(tool_names(&rpc_json(&body)), ["echo"], "{body}");
    // Resume from the first event: the upstream replays the list.
    let first_id = body
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(str::trim)
        .expect("an event id")
        .to_owned();
    let mut req = e
        .client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("last-event-id", &first_id);
    for (k, v) in session {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("resumed stream");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    read_until(&mut stream, &mut buf, |b| {
        sse_messages(b).iter().any(|m| m["id"] == 5)
    })
    .await;
    let replayed = sse_messages(&buf)
        .into_iter()
        .find(|m| m["id"] == 5)
        .expect("the list was replayed");
    assert_eq!(tool_names(&replayed), ["echo"], "{buf}");
}

/// Open a legacy stream as `who`; its stream and the endpoint it names.
async fn legacy_stream(
    e: &Env,
    who: (&str, &str),
) -> (
    impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    String,
    String,
) {
    let resp = e
        .client
        .get(e.gw.url("/legacy/sse"))
        .header("accept", "text/event-stream")
        .header(who.0, who.1)
        .send()
        .await
        .expect("legacy stream");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    read_until(&mut stream, &mut buf, |b| {
        b.lines().any(|l| l.starts_with("data:"))
    })
    .await;
    let endpoint = buf
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_owned())
        .expect("endpoint");
    assert!(
        endpoint.starts_with("/legacy/message?sessionId="),
        "{endpoint}"
    );
    (stream, endpoint, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_takes_posts_from_its_caller_only_and_its_lists_are_filtered() {
    let e = env().await;
    let (mut stream, endpoint, mut buf) = legacy_stream(&e, ALICE).await;
    let post_as = |who: (&'static str, &'static str), url: String, body: &'static str| {
        let c = e.client.clone();
        async move { post(&c, &url, body, &[who]).await.0 }
    };
    // Another caller cannot post into alice's session (nor answer what the
    // server asks of her).
    let url = e.gw.url(&endpoint);
    let call = r#"{"jsonrpc":"2.0","id":66,"method":"tools/call","params":{"name":"echo","arguments":{"message":"from bob"}}}"#;
    assert_eq!(post_as(BOB, url.clone(), call).await, 404);
    let twice = format!("{url}&sessionId=other");
    assert_eq!(post_as(ALICE, twice, call).await, 400);
    // Her own posts go through, and the list on her stream is filtered.
    let init = r#"{"jsonrpc":"2.0","id":11,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    assert_eq!(post_as(ALICE, url.clone(), init).await, 202);
    assert_eq!(
        post_as(
            ALICE,
            url.clone(),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        )
        .await,
        202
    );
    assert_eq!(
        post_as(
            ALICE,
            url.clone(),
            r#"{"jsonrpc":"2.0","id":12,"method":"tools/list"}"#
        )
        .await,
        202
    );
    read_until(&mut stream, &mut buf, |b| {
        sse_messages(b).iter().any(|m| m["id"] == 12)
    })
    .await;
    let messages = sse_messages(&buf);
    let list = messages
        .iter()
        .find(|m| m["id"] == 12)
        .expect("the list answer");
    assert_eq!(tool_names(list), ["echo"], "{buf}");
    assert!(
        !messages.iter().any(|m| m["id"] == 66),
        "bob's call never ran: {buf}"
    );
    assert_eq!(
        e.gw.metric("sluice_refusals_total{reason=\"foreign_session\",route=\"legacy\"}")
            .await,
        1.0,
        "the refusal is counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_prompt_completes_like_an_absent_one() {
    let e = env().await;
    let complete = |prompt: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{{"ref":{{"type":"ref/prompt","name":"{prompt}"}},"argument":{{"name":"arg1","value":"pa"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
        )
    };
    let ask = |who: (&'static str, &'static str), prompt: &str| {
        let (c, url, body) = (e.client.clone(), e.gw.url("/mcp"), complete(prompt));
        async move {
            let (status, _, text) = post(
                &c,
                &url,
                body,
                &[
                    who,
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "completion/complete"),
                ],
            )
            .await;
            assert_eq!(status, 200, "{text}");
            rpc_json(&text)
        }
    };
    // bob may see the prompt: the upstream completes it.
    let granted = ask(BOB, "test_prompt_with_arguments").await;
    assert_eq!(
        granted["result"]["completion"]["values"],
        serde_json::json!(["paris", "park", "party"])
    );
    // alice may not: her answer is the upstream's answer for no such prompt.
    let hidden = ask(ALICE, "test_prompt_with_arguments").await;
    let absent = ask(BOB, "no_such_prompt").await;
    assert_eq!(hidden["result"], absent["result"], "{hidden} / {absent}");
    assert_eq!(hidden["id"], absent["id"]);
}

fn raw_post(path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-key\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         MCP-Protocol-Version: 2026-07-28\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const CALL_ECHO: &str = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_upstream_could_read_otherwise_is_refused_or_stripped() {
    let e = env().await;
    let port = e.gw.port;
    let mirrored = "Mcp-Method: tools/call\r\nMcp-Name: echo\r\n";
    // Dot segments and hidden separators in the request path: the route
    // was matched on the text, an upstream would resolve it.
    for path in ["/rec/mcp/../../mcp", "/rec/mcp/%2e%2e/x", "/rec/mcp%2fx"] {
        let r = raw_http(port, &raw_post(path, mirrored, CALL_ECHO)).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{path}: {r}");
    }
    // A second Mcp-Name after the one the gateway checked.
    let r = raw_http(
        port,
        &raw_post(
            "/rec/mcp",
            "Mcp-Method: tools/call\r\nMcp-Name: echo\r\nMcp-Name: admin\r\n",
            CALL_ECHO,
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // A body on a GET would reach the upstream unread.
    let r = raw_http(
        port,
        "GET /rec/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer alice-key\r\n\
         Accept: text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(
        e.rec.calls.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing refused reached the upstream"
    );
    // A client naming the identity header in `Connection` (a hop-by-hop
    // proxy behind the gateway would drop it), and forwarding claims: the
    // upstream sees the gateway's identity and none of the claims.
    let r = raw_http(
        port,
        &raw_post(
            "/rec/mcp",
            &format!(
                "{mirrored}Connection: x-sluice-identity, forwarded\r\nForwarded: for=203.0.113.9\r\n\
                 X-Real-IP: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\n"
            ),
            CALL_ECHO,
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = e
        .rec
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a call");
    assert!(seen.contains_key("x-sluice-identity"), "{seen:?}");
    for h in ["forwarded", "x-real-ip", "x-forwarded-host"] {
        assert!(!seen.contains_key(h), "{h} reached the upstream: {seen:?}");
    }
    let connection = seen
        .get_all("connection")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase())
        .collect::<Vec<_>>();
    assert!(
        !connection.iter().any(|c| c.contains("x-sluice-identity")),
        "{connection:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_the_gateway_does_not_classify_is_refused_with_identity_on() {
    let e = env().await;
    for method in ["tasks/list", "tasks/result", "future/method"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"{method}","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
        );
        let (status, _, text) = post(
            &e.client,
            &e.gw.url("/rec/mcp"),
            body,
            &[
                ALICE,
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", method),
            ],
        )
        .await;
        let answer = rpc_json(&text);
        assert_eq!(answer["error"]["code"], -32601, "{method}: {status} {text}");
        assert_eq!(answer["id"], 4);
    }
    assert_eq!(e.rec.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}
