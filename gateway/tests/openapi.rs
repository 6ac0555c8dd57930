//! `sluice-gateway openapi import` on real OpenAPI documents — the OpenAPI
//! examples' petstore (3.0 and 3.1, JSON and YAML) and GitHub's own
//! description of its REST API (installed from npm by .ci/setup) — each
//! printed source loaded as config; then the petstore's tools called
//! through a gateway against a local petstore that records what it got.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use support::*;

fn document(rel: &str) -> PathBuf {
    need(peers().join("node_modules").join(rel))
}

/// The printed source entry, and what stderr said.
fn import(spec: &std::path::Path, upstream: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .args(["openapi", "import"])
        .arg(spec)
        .args(["--source", upstream])
        .output()
        .expect("sluice-gateway openapi import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A config with one server over the printed `source` entry.
fn config(source: &str, upstream_url: &str, listen: (&str, &str)) -> String {
    let indented: String = source.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "listeners: [{{ name: main, address: \"{}\" }}]\nadmin: {{ address: \"{}\" }}\n\
         upstreams: [{{ name: api, url: \"{upstream_url}\" }}]\n\
         routes: [{{ name: s, path: /s, server: s }}]\nservers:\n  - name: s\n    sources:\n{indented}",
        listen.0, listen.1
    )
}

fn operations(printed: &str) -> usize {
    printed
        .lines()
        .filter(|l| l.starts_with("  - name: "))
        .count()
}

#[test]
fn real_documents_import_into_configs_that_load() {
    let cases = [
        ("@readme/oas-examples/3.0/json/petstore.json", 18),
        ("@readme/oas-examples/3.0/yaml/petstore.yaml", 18),
        ("@readme/oas-examples/3.1/json/petstore.json", 18),
        ("@readme/oas-examples/3.1/json/train-travel.json", 7),
        ("@octokit/openapi/generated/api.github.com.json", 1000),
    ];
    for (rel, at_least) in cases {
        let printed = import(&document(rel), "api");
        let n = operations(&printed);
        assert!(n >= at_least, "{rel}: {n} operations");
        assert!(
            printed.starts_with(&format!("# {n} operations of ")),
            "{rel}"
        );
        let yaml = config(
            &printed,
            "http://127.0.0.1:1/api",
            ("127.0.0.1:1", "127.0.0.1:2"),
        );
        let snap = sluice_config::load(&yaml, 1).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(snap.servers[0].sources[0].http_tools.len(), n, "{rel}");
    }
    // What cannot become a tool is said, not dropped silently.
    let petstore = import(
        &document("@readme/oas-examples/3.0/json/petstore.json"),
        "api",
    );
    assert!(
        petstore.contains("# left out: POST /pet/{petId}: its request body is not JSON"),
        "{petstore}"
    );
    // A document that is not OpenAPI 3 is refused with the reason.
    let dir = tempfile::tempdir().expect("dir");
    let swagger = dir.path().join("swagger.json");
    std::fs::write(&swagger, r#"{"swagger": "2.0", "paths": {}}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-gateway"))
        .args(["openapi", "import"])
        .arg(&swagger)
        .args(["--source", "api"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OpenAPI 3.0 or 3.1"));
}

/// What the petstore got: method, path and query, body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_petstore_tools_call_a_real_service() {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route(
            "/api/pet/{id}",
            get(|State(s): State<Seen>, Path(id): Path<String>| async move {
                s.lock().expect("lock").push(("GET".into(), format!("/api/pet/{id}"), Value::Null));
                Json(json!({"id": id.parse::<i64>().unwrap_or(0), "name": "doggie", "photoUrls": []}))
            }),
        )
        .route(
            "/api/pet/findByStatus",
            get(|State(s): State<Seen>, RawQuery(q): RawQuery| async move {
                let at = format!("/api/pet/findByStatus?{}", q.unwrap_or_default());
                s.lock().expect("lock").push(("GET".into(), at, Value::Null));
                Json(json!([]))
            }),
        )
        .route(
            "/api/pet",
            axum::routing::post(|State(s): State<Seen>, Json(body): Json<Value>| async move {
                s.lock().expect("lock").push(("POST".into(), "/api/pet".into(), body.clone()));
                Json(body)
            }),
        )
        .with_state(seen.clone());
    let addr = serve_router(router).await;
    let printed = import(
        &document("@readme/oas-examples/3.0/json/petstore.json"),
        "api",
    );
    let gw = Gateway::start(&config(
        &printed,
        &format!("http://{addr}/api"),
        ("{listen}", "{admin}"),
    ))
    .await;
    let url = gw.url("/s");
    let call = async |tool: &str, arguments: Value| {
        let params = json!({"name": tool, "arguments": arguments});
        stateless_rpc(&url, None, ("tools/call", json!(1), params)).await
    };
    let pet = call("api_getPetById", json!({"petId": 7})).await;
    assert_eq!(
        pet["result"]["structuredContent"]["name"], "doggie",
        "{pet}"
    );
    let found = call(
        "api_findPetsByStatus",
        json!({"status": ["sold", "pending"]}),
    )
    .await;
    assert_eq!(found["result"]["isError"], false, "{found}");
    let added = call(
        "api_addPet",
        json!({"body": {"name": "Rex", "photoUrls": ["http://x.test/rex.png"]}}),
    )
    .await;
    assert_eq!(
        added["result"]["structuredContent"]["name"], "Rex",
        "{added}"
    );
    // The imported schema is enforced: a pet without its required name.
    let bad = call("api_addPet", json!({"body": {"photoUrls": []}})).await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/body")),
        "{bad}"
    );
    let bad_enum = call("api_findPetsByStatus", json!({"status": ["lost"]})).await;
    assert_eq!(bad_enum["error"]["code"], -32602, "{bad_enum}");
    let seen = seen.lock().expect("lock").clone();
    let paths: Vec<&str> = seen.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/pet/7",
            "/api/pet/findByStatus?status=sold&status=pending",
            "/api/pet"
        ]
    );
    assert_eq!(
        seen[2].2,
        json!({"name": "Rex", "photoUrls": ["http://x.test/rex.png"]})
    );
}
