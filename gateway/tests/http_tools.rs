//! HTTP tools: a virtual server whose source declares tools that are HTTP
//! requests to a local billing API (axum, on a real socket), beside an MCP
//! source (the official Python SDK's server). The API records every
//! request it gets, which is the proof of what the gateway sent: the path
//! and query filled from the arguments (percent-encoded), the JSON body,
//! the upstream's own credential from a secret (never the client's), and
//! nothing at all for arguments the input schema refuses or a call the
//! policy denies.

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post as post_route};
use axum::{Json, Router};
use serde_json::{json, Value};
use support::peers::SdkServer;
use support::*;

/// What the API was sent: method, path and query, authorization, body.
type Seen = Arc<Mutex<Vec<(String, String, String, Value)>>>;

fn auth(h: &HeaderMap) -> String {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn billing() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route(
            "/api/invoices/{id}",
            get(
                |State(seen): State<Seen>,
                 Path(id): Path<String>,
                 Query(q): Query<Vec<(String, String)>>,
                 h: HeaderMap| async move {
                    let query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let at = format!("/api/invoices/{id}?{}", query.join("&"));
                    seen.lock()
                        .expect("lock")
                        .push(("GET".into(), at, auth(&h), Value::Null));
                    if id == "INV-404" {
                        return (StatusCode::NOT_FOUND, "no such invoice").into_response();
                    }
                    let body = json!({"id": id, "total": 120, "currency": "EUR"}).to_string();
                    (StatusCode::OK, body).into_response()
                },
            ),
        )
        .route(
            "/api/refunds",
            post_route(
                |State(seen): State<Seen>, h: HeaderMap, Json(body): Json<Value>| async move {
                    seen.lock().expect("lock").push((
                        "POST".into(),
                        "/api/refunds".into(),
                        auth(&h),
                        body.clone(),
                    ));
                    (
                        StatusCode::CREATED,
                        Json(json!({"refund": "R-1", "amount": body["amount"]})),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    (serve_router(router).await, seen)
}

async fn call(gw: &Gateway, key: &str, tool: &str, arguments: Value) -> Value {
    let params = json!({"name": tool, "arguments": arguments});
    stateless_rpc(&gw.url("/hub"), Some(key), ("tools/call", json!(5), params)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tools_are_called_as_declared_under_the_same_decisions() {
    let (addr, seen) = billing().await;
    let sdk = SdkServer::start().await;
    let config = format!(
        r#"{head}roles:
  - name: finance
    allow: ["tools:billing/*:call", "tools:sdk/echo:call"]
    deny:
      - scope: "tools:billing/refund:call"
        when: [{{ pointer: /amount, min: 1000 }}]
  - name: viewer
    allow: ["tools:billing/get_invoice:call"]
upstreams:
  - name: billing
    url: "http://{addr}/api"
    inject:
      credential: {{ header: authorization, prefix: "Bearer ", secret: {{ env: BILLING_TOKEN }} }}
  - {{ name: sdk, url: "http://127.0.0.1:{sdk}/mcp" }}
routes:
  - {{ name: hub, path: /hub, server: hub }}
servers:
  - name: hub
    sources:
      - {{ upstream: sdk, tools: {{ include: [echo] }} }}
      - upstream: billing
        prefix: ""
        http_tools:
          - name: get_invoice
            description: "One invoice, by id."
            input_schema:
              type: object
              required: [id]
              properties:
                id: {{ type: string, pattern: "^INV-[0-9]+$" }}
                lines: {{ type: boolean }}
              additionalProperties: false
            path: "/invoices/{{id}}"
            query: {{ lines: "{{lines}}", v: "2" }}
          - name: refund
            description: "Refund an invoice."
            input_schema:
              type: object
              required: [invoice, amount]
              properties:
                invoice: {{ type: string }}
                amount: {{ type: integer, minimum: 1 }}
            method: POST
            path: /refunds
            body: {{ invoice: "{{invoice}}", amount: "{{amount}}", reason: "via {{invoice}}" }}
"#,
        head = keyed_head(&[("alice", "finance"), ("victor", "viewer")]),
        sdk = sdk.port,
    );
    let gw = Gateway::start_with_env(&config, &[("BILLING_TOKEN", "billing-secret-7")]).await;

    // Listed beside the MCP source's tools, as declared.
    let list = stateless_rpc(
        &gw.url("/hub"),
        Some("alice-key"),
        ("tools/list", json!(1), json!({})),
    )
    .await;
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["get_invoice", "refund", "sdk_echo"], "{list}");

    // A GET with the path and query filled; the JSON comes back structured.
    let got = call(
        &gw,
        "alice-key",
        "get_invoice",
        json!({"id": "INV-7", "lines": true}),
    )
    .await;
    assert_eq!(got["result"]["structuredContent"]["total"], 120, "{got}");
    assert_eq!(got["result"]["isError"], false);
    // A POST with the body filled, typed where a value stands alone.
    let refunded = call(
        &gw,
        "alice-key",
        "refund",
        json!({"invoice": "INV-7", "amount": 30}),
    )
    .await;
    assert_eq!(
        refunded["result"]["structuredContent"]["refund"], "R-1",
        "{refunded}"
    );
    // An error status is a tool error with the status and the body.
    let missing = call(&gw, "alice-key", "get_invoice", json!({"id": "INV-404"})).await;
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    assert_eq!(
        missing["result"]["content"][0]["text"],
        "HTTP 404: no such invoice"
    );
    {
        let seen = seen.lock().expect("lock");
        let calls: Vec<(&str, &str, &str)> = seen
            .iter()
            .map(|(m, p, a, _)| (m.as_str(), p.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                (
                    "GET",
                    "/api/invoices/INV-7?lines=true&v=2",
                    "Bearer billing-secret-7"
                ),
                ("POST", "/api/refunds", "Bearer billing-secret-7"),
                (
                    "GET",
                    "/api/invoices/INV-404?v=2",
                    "Bearer billing-secret-7"
                ),
            ],
            "the upstream's credential, never alice-key"
        );
        assert_eq!(
            seen[1].3,
            json!({"invoice": "INV-7", "amount": 30, "reason": "via INV-7"})
        );
    }

    // Arguments the schema refuses: -32602 naming where; nothing is sent.
    let bad = call(&gw, "alice-key", "get_invoice", json!({"id": "../admin"})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/id")),
        "{bad}"
    );
    let extra = call(
        &gw,
        "alice-key",
        "get_invoice",
        json!({"id": "INV-1", "admin": true}),
    )
    .await;
    assert_eq!(extra["error"]["code"], -32602, "{extra}");
    // The policy decides as on any tool: a condition, and a hidden tool.
    let big = call(
        &gw,
        "alice-key",
        "refund",
        json!({"invoice": "INV-7", "amount": 5000}),
    )
    .await;
    assert!(big["error"].is_object(), "{big}");
    let hidden = call(
        &gw,
        "victor-key",
        "refund",
        json!({"invoice": "INV-7", "amount": 3}),
    )
    .await;
    let unknown = call(&gw, "victor-key", "nothing", json!({})).await;
    assert_eq!(
        hidden.to_string().replace("refund", "nothing"),
        unknown.to_string()
    );
    assert_eq!(
        seen.lock().expect("lock").len(),
        3,
        "nothing more reached the API"
    );

    // The MCP source beside it still works.
    let echoed = call(&gw, "alice-key", "sdk_echo", json!({"message": "hi"})).await;
    assert_eq!(echoed["result"]["content"][0]["text"], "hi", "{echoed}");
}

#[test]
fn an_input_schema_that_does_not_compile_refuses_the_config() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gateway.yaml");
    let yaml = format!(
        "listeners: [{{ name: main, address: \"127.0.0.1:{}\" }}]\n\
         upstreams: [{{ name: api, url: \"http://127.0.0.1:1/api\" }}]\n\
         routes: [{{ name: s, path: /s, server: s }}]\n\
         servers:\n  - name: s\n    sources:\n      - upstream: api\n        http_tools:\n\
         \x20         - {{ name: t, input_schema: {{ type: object, properties: {{ a: {{ type: nonsense }} }} }}, path: /t }}\n",
        free_port()
    );
    std::fs::write(&path, yaml).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .arg("-c")
        .arg(&path)
        .output()
        .expect("sluice-gateway");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("error: servers[0].sources[0].http_tools[0].input_schema:"),
        "{said}"
    );
}
