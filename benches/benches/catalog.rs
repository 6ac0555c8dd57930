//! The tool catalog's costs. (1) Pinning and screening a virtual server's
//! list: 200 realistic tool definitions (a description, three described
//! parameters) judged by `federation::pins::Definitions::vet` on a source
//! with `pin: approve_first` and every check of `screen` on, all pinned (so
//! all are served: the steady state); beside it the parts — the digest
//! alone, the screening alone, and the clone of the list every variant
//! starts from. (2) `search_tools` over 10,000 tools: one query against a
//! built index, its percentiles printed from 10,000 timed queries, and the
//! bytes a meta-tool session puts in an agent's context against the full
//! list of the same catalog.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sluice_config::Snapshot;
use sluice_gateway::federation::pins::Definitions;
use sluice_gateway::federation::screen;
use sluice_gateway::federation::search::{meta_tools, summary, Filters, Index};
use std::time::Instant;

const TOOLS: usize = 200;

fn tools() -> Vec<Value> {
    (0..TOOLS)
        .map(|i| {
            json!({
                "name": format!("tool_{i}"),
                "title": format!("Tool {i}"),
                "description": format!("Looks up record {i} in the inventory service and returns its fields, \
                    the owner, the last change and links to https://docs.example.com/tools/{i}. \
                    Use it when the user names a record by id."),
                "inputSchema": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string", "description": "The record's id, e.g. INV-0042."},
                    "fields": {"type": "array", "items": {"type": "string"}, "description": "Which fields to return; all when absent."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Most rows."}
                }},
                "annotations": {"readOnlyHint": true, "openWorldHint": false}
            })
        })
        .collect()
}

fn snapshot(tools: &[Value]) -> Snapshot {
    let mut y = String::from(
        "listeners:\n  - { name: main, address: \"127.0.0.1:8080\" }\n\
         upstreams:\n  - { name: inv, url: \"http://127.0.0.1:9000/mcp\" }\n\
         routes:\n  - { name: ws, path: /ws, server: ws }\n\
         servers:\n  - name: ws\n    sources:\n      - upstream: inv\n        pin: approve_first\n\
         \x20       screen: { link_domains: [example.com], phrases: [\"send the token\"] }\npins:\n",
    );
    for t in tools {
        y.push_str(&format!(
            "  - {{ upstream: inv, tool: {}, digest: \"{}\" }}\n",
            t["name"].as_str().unwrap_or_default(),
            sluice_config::definition_digest(t)
        ));
    }
    sluice_config::load(&y, 1).expect("a valid config")
}

fn bench(c: &mut Criterion) {
    let list = tools();
    let snap = snapshot(&list);
    let src = &snap.servers[0].sources[0];
    let screen = src.screen.clone().expect("screen");
    let defs = Definitions::default();
    let mut g = c.benchmark_group("definitions_200_tools");
    g.bench_function("clone_only", |b| b.iter(|| black_box(list.clone())));
    g.bench_function("digest", |b| {
        b.iter(|| {
            for t in &list {
                black_box(sluice_config::definition_digest(t));
            }
        })
    });
    g.bench_function("screen", |b| {
        b.iter(|| {
            for t in &list {
                black_box(screen::check(&screen, t));
            }
        })
    });
    // Steady state: every definition already judged under this config.
    g.bench_function("vet_pinned_and_screened", |b| {
        b.iter(|| {
            let mut page = list.clone();
            let reports = defs.vet(&snap, (src, "inv"), &mut page);
            assert!(reports.is_empty() && page.len() == TOOLS);
            black_box(page)
        })
    });
    // First sight (a new process, or a new config): screened as well.
    g.bench_function("vet_first_sight", |b| {
        b.iter(|| {
            let fresh = Definitions::default();
            let mut page = list.clone();
            let reports = fresh.vet(&snap, (src, "inv"), &mut page);
            assert!(reports.is_empty() && page.len() == TOOLS);
            black_box(page)
        })
    });
    g.finish();
}

/// 10,000 tools named and described from a vocabulary of actions,
/// objects and systems (every combination distinct), with parameters.
fn big_catalog() -> Vec<Value> {
    let actions = [
        "create", "get", "list", "update", "delete", "search", "archive", "export", "import",
        "approve", "assign", "close", "merge", "sync", "validate", "preview", "restore", "share",
        "tag", "schedule",
    ];
    let objects = [
        "invoice",
        "customer",
        "ticket",
        "repository",
        "branch",
        "commit",
        "file",
        "folder",
        "calendar event",
        "message",
        "channel",
        "user",
        "team",
        "project",
        "task",
        "document",
        "spreadsheet",
        "dashboard",
        "alert",
        "incident",
        "deployment",
        "container",
        "database",
        "table",
        "query",
        "report",
        "contract",
        "order",
        "payment",
        "refund",
        "shipment",
        "product",
        "price",
        "coupon",
        "lead",
        "opportunity",
        "campaign",
        "email",
        "note",
        "comment",
        "label",
        "milestone",
        "release",
        "build",
        "pipeline",
        "secret",
        "certificate",
        "domain",
        "record",
        "backup",
    ];
    let systems = [
        "github",
        "jira",
        "slack",
        "salesforce",
        "stripe",
        "notion",
        "gdrive",
        "postgres",
        "k8s",
        "zendesk",
    ];
    let mut tools = Vec::with_capacity(10_000);
    'all: for system in systems {
        for object in objects {
            for action in actions {
                let obj = object.replace(' ', "_");
                tools.push(json!({
                    "name": format!("{system}_{action}_{obj}"),
                    "description": format!("{action} a {object} in {system}. Returns the {object} as JSON; \
                        fails when the caller lacks access to the {object}."),
                    "inputSchema": {"type": "object", "properties": {
                        format!("{obj}_id"): {"type": "string", "description": format!("The {object}'s id in {system}.")},
                        "fields": {"type": "array", "description": "Fields to return."}
                    }},
                    "annotations": {"readOnlyHint": matches!(action, "get" | "list" | "search" | "preview")}
                }));
                if tools.len() == 10_000 {
                    break 'all;
                }
            }
        }
    }
    tools
}

fn search(c: &mut Criterion) {
    let tools = big_catalog();
    assert_eq!(tools.len(), 10_000);
    let full_list = serde_json::to_vec(&json!({ "tools": tools })).map_or(0, |b| b.len());
    let source = |t: &Value| t["name"].as_str()?.split('_').next().map(str::to_owned);
    let built = Instant::now();
    let index = Index::build(tools, source);
    let build_ms = built.elapsed().as_secs_f64() * 1e3;
    let none = Filters::default();
    let queries = [
        "refund a stripe payment",
        "list open jira tickets",
        "archive slack channel",
        "restore the postgres database from backup",
        "who owns this github repository",
        "schedule a calendar event",
        "export the sales report",
        "merge a branch",
    ];
    // Percentiles of single searches, timed one by one.
    let mut times: Vec<f64> = (0..10_000)
        .map(|i| {
            let t = Instant::now();
            black_box(index.search(queries[i % queries.len()], 5, &none));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    // What a meta-tool session puts in the context: the meta-tools' list,
    // one search's results and one tool's whole definition.
    let listed = serde_json::to_vec(meta_tools()).map_or(0, |b| b.len());
    let hits: Vec<Value> = index
        .search(queries[0], 5, &none)
        .into_iter()
        .map(summary)
        .collect();
    let found = serde_json::to_vec(&hits).map_or(0, |b| b.len());
    let best = hits
        .first()
        .and_then(|h| h["name"].as_str())
        .unwrap_or_default();
    let details = index
        .get(best)
        .and_then(|t| serde_json::to_vec(t).ok())
        .map_or(0, |b| b.len());
    println!(
        "search_tools over 10,000 tools: index built in {build_ms:.1} ms; one search p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "context: full tools/list {full_list} bytes; meta-tool session {} bytes (list {listed} + 5 results {found} + one definition {details})",
        listed + found + details
    );
    let mut g = c.benchmark_group("search_10k_tools");
    g.bench_function("search_limit_5", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(index.search(queries[i % queries.len()], 5, &none))
        })
    });
    g.finish();
}

criterion_group!(benches, bench, search);
criterion_main!(benches);
