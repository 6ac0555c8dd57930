//! Tests of loading whole configs: resolution, hashing, route matching and
//! error reporting.

use super::*;

const GOOD: &str = r#"
listeners:
  - { name: main, address: "127.0.0.1:8080" }
admin: { address: "127.0.0.1:9901" }
upstreams:
  - { name: everything, url: "http://127.0.0.1:3101/mcp" }
  - name: secure
    url: "https://mcp.example.com:8443/v1/"
    tls: { client_cert_file: c.pem, client_key_file: k.pem }
routes:
  - { name: root, path: /, upstream: everything }
  - { name: mcp, path: /mcp, upstream: everything }
  - { name: sec, path: /secure/, upstream: secure, hosts: { allowed_hosts: ["*"] } }
"#;

#[test]
fn resolves_a_good_config() {
    let s = load(GOOD, 7).expect("valid");
    assert_eq!(s.version.generation, 7);
    assert_eq!(s.version.hash.len(), 16);
    assert_eq!(s.routes[0].path, "/secure");
    let up = &s.upstreams[1];
    assert_eq!(up.scheme, Scheme::Https);
    assert_eq!(up.authority, "mcp.example.com:8443");
    assert_eq!(up.base_path, "/v1");
    let tls = up.tls.as_ref().expect("https has tls");
    assert!(tls.verify);
    assert_eq!(tls.sni, "mcp.example.com");
    assert_eq!(s.upstreams[0].authority, "127.0.0.1:3101");
}

#[test]
fn same_source_same_hash() {
    assert_eq!(
        load(GOOD, 1).expect("ok").version.hash,
        load(GOOD, 2).expect("ok").version.hash
    );
    let other = GOOD.replace("9901", "9902");
    assert_ne!(
        load(GOOD, 1).expect("ok").version.hash,
        load(&other, 1).expect("ok").version.hash
    );
}

#[test]
fn routes_match_on_segment_boundaries() {
    let s = load(GOOD, 1).expect("valid");
    let name = |p: &str| {
        s.route_for("main", p)
            .map(|(i, rest)| (s.routes[i].name.clone(), rest.to_owned()))
    };
    assert_eq!(name("/mcp"), Some(("mcp".into(), "".into())));
    assert_eq!(name("/mcp/sse"), Some(("mcp".into(), "/sse".into())));
    assert_eq!(name("/mcpx"), Some(("root".into(), "/mcpx".into())));
    assert_eq!(name("/secure/x"), Some(("sec".into(), "/x".into())));
}

#[test]
fn reports_every_error_with_its_path() {
    let bad = r#"
listeners:
  - { name: main, address: "nowhere:80" }
  - { name: main, address: "127.0.0.1:1" }
upstreams:
  - { name: a, url: "ftp://x/" }
  - { name: b, url: "http://user:pw@x/" }
routes:
  - { name: r, path: mcp, upstream: nope, transport: carrier-pigeon }
  - { name: r2, path: /x, upstream: b, listeners: [ghost] }
limits: { max_json_depth: 1 }
"#;
    let errs = load(bad, 1).expect_err("invalid").0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "listeners[0].address",
        "listeners[1].name",
        "upstreams[0].url",
        "upstreams[1].url",
        "routes[0].path",
        "routes[0].upstream",
        "routes[0].transport",
        "routes[1].listeners[0]",
        "limits.max_json_depth",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}

#[test]
fn unknown_fields_and_bad_yaml_are_errors_not_panics() {
    let e = load("listeners: []\nroutez: []\n", 1).expect_err("unknown field");
    assert!(e.to_string().contains("routez"), "{e}");
    assert!(load("{{{{", 1).is_err());
    assert!(load("", 1).is_err());
    assert!(load("listeners: 5", 1).is_err());
    // A YAML error names its location once.
    let e = load("listeners:\n  - { name: main\nadmin: x\n", 1).expect_err("syntax");
    let said = e.to_string();
    let at = &e.0[0].path;
    assert!(at.starts_with("line 3"), "{said}");
    assert_eq!(said.matches(at.as_str()).count(), 1, "{said}");
    assert!(
        said.contains("while parsing a flow mapping at line 2"),
        "the other place stays: {said}"
    );
}

const SERVERS: &str = include_str!("../examples/servers.yaml");

#[test]
fn servers_resolve_their_sources_prefixes_and_overrides() {
    let s = load(SERVERS, 1).expect("valid");
    let ws = &s.servers[0];
    assert_eq!(ws.name, "workspace");
    let gh = &ws.sources[0];
    assert_eq!(s.upstreams[gh.upstream].name, "github");
    assert_eq!(
        gh.prefix, "github_",
        "the upstream's name and the separator"
    );
    assert_eq!(ws.sources[1].prefix, "ev_");
    assert_eq!(ws.sources[2].prefix, "", "an empty prefix is none");
    assert_eq!(s.servers[1].sources[0].prefix, "notes.");
    assert_eq!(gh.tools.include, ["*_issue", "get_*"]);
    let tools: Vec<&str> = gh.overrides.iter().map(|o| o.tool.as_str()).collect();
    assert_eq!(tools, ["create_issue", "get_repo"], "sorted by tool");
    let repo = gh.override_for("get_repo").expect("override");
    assert_eq!(repo.title.as_deref(), Some("Repository"));
    assert_eq!(repo.fixed["owner"], "acme");
    let issue = gh.override_for("create_issue").expect("override");
    assert_eq!(issue.name.as_deref(), Some("file_issue"));
    assert_eq!(issue.defaults["labels"][0], "triage");
    assert!(gh.override_for("delete_repo").is_none());
    assert_eq!(gh.pin, Some(crate::PinMode::ApproveFirst));
    let screen = gh.screen.as_ref().expect("screen");
    assert_eq!(screen.max_description_chars, 2048);
    assert_eq!(screen.max_definition_bytes, 65_536, "the default");
    assert!(screen.unicode && screen.instructions);
    assert_eq!(
        screen.link_domains.as_deref(),
        Some(&["github.com".to_owned()][..])
    );
    assert_eq!(ws.sources[1].pin, None);
    assert_eq!(gh.state_of("get_repo"), crate::ToolState::Published);
    assert_eq!(gh.state_of("create_issue"), crate::ToolState::Deprecated);
    assert_eq!(issue.version.as_deref(), Some("3"));
    let serves = |name: &str| {
        s.routes
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.serves.clone())
    };
    use crate::ToolState::{Deprecated, Draft, Published};
    assert_eq!(serves("workspace"), Some(vec![Published, Deprecated]));
    assert_eq!(serves("staging"), Some(vec![Draft, Published, Deprecated]));
    assert!(s
        .pins
        .get("github", "get_repo")
        .is_some_and(|d| d.starts_with("4b6f")));
    assert_eq!(s.pins.get("github", "create_issue"), None);
}

#[test]
fn pins_and_screens_are_checked_with_their_paths() {
    let bad = r#"
upstreams:
  - { name: a, url: "http://127.0.0.1:3101/mcp" }
servers:
  - name: s
    sources:
      - upstream: a
        pin: tofu
        screen: { phrases: ["ok"], link_domains: ["https://x.test/"], max_definition_bytes: 0 }
pins:
  - { upstream: a, tool: t, digest: "ABC" }
  - { upstream: a, tool: u, digest: "0000000000000000000000000000000000000000000000000000000000000000" }
  - { upstream: a, tool: u, digest: "1111111111111111111111111111111111111111111111111111111111111111" }
"#;
    let errs = load(bad, 1).expect_err("invalid").0;
    let at = |p: &str| errs.iter().any(|e| e.path == p);
    for path in [
        "servers[0].sources[0].screen.phrases[0]",
        "servers[0].sources[0].screen.link_domains[0]",
        "servers[0].sources[0].screen.max_definition_bytes",
        "pins[0].digest",
        "pins[2].tool",
    ] {
        assert!(at(path), "no error at {path}: {errs:?}");
    }
    assert!(load("pins: [{ upstream: x, tool: y, digest: b }]", 1).is_err());
    let states = r#"
listeners: [{ name: main, address: "127.0.0.1:8080" }]
upstreams: [{ name: a, url: "http://127.0.0.1:3101/mcp" }]
routes:
  - { name: plain, path: /a, upstream: a, serves: [draft] }
  - { name: s, path: /s, server: s, serves: [published, disabled] }
servers: [{ name: s, sources: [{ upstream: a }] }]
"#;
    let errs = load(states, 1).expect_err("invalid").0;
    for path in ["routes[0].serves", "routes[1].serves"] {
        assert!(
            errs.iter().any(|e| e.path == path),
            "no error at {path}: {errs:?}"
        );
    }
    let gone = "listeners: [{ name: main, address: \"127.0.0.1:8080\" }]\npins: [{ upstream: gone, tool: y, digest: \"2222222222222222222222222222222222222222222222222222222222222222\" }]";
    let s = load(gone, 1).expect("a pin for a removed upstream is kept");
    assert!(
        s.warnings.iter().any(|w| w.path == "pins[0].upstream"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn http_tools_are_checked_with_their_paths() {
    let bad = r#"
listeners: [{ name: main, address: "127.0.0.1:8080" }]
upstreams: [{ name: api, url: "http://127.0.0.1:3101/v1" }]
routes:
  - { name: plain, path: /api, upstream: api }
servers:
  - name: s
    sources:
      - upstream: api
        http_tools:
          - { name: get, input_schema: { type: object, properties: { id: {} } }, path: "/x/{id}/{nope}", method: BREW,
              headers: { Authorization: "x" } }
          - { name: get, input_schema: { type: string }, path: "no-slash" }
"#;
    let errs = load(bad, 1).expect_err("invalid").0;
    let at = |p: &str| errs.iter().any(|e| e.path == p);
    for path in [
        "servers[0].sources[0].http_tools[0]",
        "servers[0].sources[0].http_tools[0].method",
        "servers[0].sources[0].http_tools[0].headers.Authorization",
        "servers[0].sources[0].http_tools[1].name",
        "servers[0].sources[0].http_tools[1].path",
        "servers[0].sources[0].http_tools[1].input_schema",
    ] {
        assert!(at(path), "no error at {path}: {errs:?}");
    }
    let good = bad
        .replace("  - { name: plain, path: /api, upstream: api }", "  - { name: s, path: /s, server: s }")
        .replace("/{nope}", "")
        .replace(", method: BREW,\n              headers: { Authorization: \"x\" }", "")
        .replace("- { name: get, input_schema: { type: string }, path: \"no-slash\" }", "- { name: put, method: put, input_schema: { type: object }, path: /y, body: { a: 1 } }");
    let s = load(&good, 1).unwrap_or_else(|e| panic!("{e}\n{good}"));
    let shared = format!("{good}  - {{ name: t, sources: [{{ upstream: api, prefix: t }}] }}\n");
    let errs = load(&shared, 1)
        .expect_err("an HTTP upstream used as MCP")
        .0;
    assert!(errs.iter().any(|e| e.path == "upstreams.api"), "{errs:?}");
    let src = &s.servers[0].sources[0];
    assert!(src.is_http());
    let put = src.http_tool("put").expect("put");
    assert_eq!(put.method, "PUT");
    assert_eq!(put.definition["inputSchema"]["type"], "object");
    assert_eq!(
        src.http_tool("get").map(|t| t.path.as_str()),
        Some("/x/{id}")
    );
}

#[test]
fn a_definition_digest_covers_what_a_model_reads_and_nothing_else() {
    let t = serde_json::json!({"name": "pay", "description": "Pay.", "inputSchema": {"type": "object"},
                               "_meta": {"x": 1}, "icons": []});
    let d = crate::definition_digest(&t);
    let mut same = t.clone();
    same["_meta"] = serde_json::json!({"x": 2});
    assert_eq!(crate::definition_digest(&same), d);
    for (field, v) in [
        ("description", "Pay more."),
        ("title", "Pay"),
        ("annotations", "x"),
    ] {
        let mut other = t.clone();
        other[field] = serde_json::json!(v);
        assert_ne!(crate::definition_digest(&other), d, "{field}");
    }
}

#[test]
fn servers_report_what_could_collide_or_never_apply_with_its_path() {
    let bad = r#"
listeners:
  - { name: main, address: "127.0.0.1:8080" }
upstreams:
  - { name: a, url: "http://127.0.0.1:3101/mcp" }
  - { name: b, url: "http://127.0.0.1:3102/mcp" }
servers:
  - name: s
    separator: "/"
    sources:
      - upstream: a
        prefix: x
        tools: { exclude: ["secret_*"] }
        overrides:
          secret_key: { title: Hidden }
          one: { name: same }
          two: { name: same }
          three: { name: "bad name", fixed: { k: 1 }, defaults: { k: 2 } }
      - { upstream: b, prefix: x }
      - { upstream: nowhere }
  - { name: s, sources: [] }
"#;
    let errs = load(bad, 1).expect_err("invalid").0;
    let at = |p: &str| errs.iter().any(|e| e.path == p);
    for path in [
        "servers[0].separator",
        "servers[0].sources[0].overrides.secret_key",
        "servers[0].sources[0].overrides.two.name",
        "servers[0].sources[0].overrides.three.name",
        "servers[0].sources[0].overrides.three.defaults.k",
        "servers[0].sources[1].prefix",
        "servers[0].sources[2].upstream",
        "servers[1].name",
        "servers[1].sources",
    ] {
        assert!(at(path), "no error at {path}: {errs:?}");
    }
}

#[test]
fn a_shared_budget_or_token_limit_needs_the_shared_store() {
    let llm = "tenants: [acme]\nllm:\n  budgets:\n    - { name: b, tenant: acme, tokens: 10, shared: true }\n  \
               token_limits:\n    - { name: t, tokens_per_minute: 10, shared: true }\n";
    let errs = load(&format!("{GOOD}{llm}"), 1).expect_err("invalid").0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"llm.budgets[0].shared"), "{paths:?}");
    assert!(paths.contains(&"llm.token_limits[0].shared"), "{paths:?}");
    let store = "rate_limits:\n  shared_store: { redis_url: \"redis://127.0.0.1:6379\" }\n";
    let s = load(&format!("{GOOD}{llm}{store}"), 1).expect("valid with a store");
    assert!(s.llm.budgets[0].shared && s.llm.token_limits[0].shared);
}

#[test]
fn a_legacy_sse_upstream_is_a_source_only() {
    let cfg = r#"
listeners:
  - { name: main, address: "127.0.0.1:8080" }
upstreams:
  - { name: old, url: "http://127.0.0.1:3101/sse", transport: legacy_sse }
  - { name: odd, url: "http://127.0.0.1:3102/mcp", transport: websocket }
routes:
  - { name: direct, path: /old, upstream: old }
  - { name: srv, path: /srv, server: s }
servers:
  - { name: s, sources: [{ upstream: old }] }
"#;
    let errs = load(cfg, 1).expect_err("invalid").0;
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["upstreams[1].transport", "routes[0].upstream"],
        "{errs:?}"
    );
    let good = cfg
        .replace(
            "  - { name: odd, url: \"http://127.0.0.1:3102/mcp\", transport: websocket }\n",
            "",
        )
        .replace("  - { name: direct, path: /old, upstream: old }\n", "");
    let snap = load(&good, 1).expect("valid");
    assert!(snap.upstreams[0].legacy_sse);
}
