//! What pinning and screening cost a virtual server's list: 200 realistic
//! tool definitions (a description, three described parameters) judged by
//! `federation::pins::Definitions::vet` on a source with `pin:
//! approve_first` and every check of `screen` on, all pinned (so all are
//! served: the steady state). Beside it, the parts: the digest alone, the
//! screening alone, and the clone of the list every variant starts from.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sluice_config::Snapshot;
use sluice_gateway::federation::pins::Definitions;
use sluice_gateway::federation::screen;

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
    g.bench_function("vet_pinned_and_screened", |b| {
        b.iter(|| {
            let mut page = list.clone();
            let reports = defs.vet(&snap, (src, "inv"), &mut page);
            assert!(reports.is_empty() && page.len() == TOOLS);
            black_box(page)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
