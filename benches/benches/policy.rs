//! The RBAC decision with 10,000 rules: 100 upstreams, 10 roles of 1,000
//! rules each (literal names, per-segment globs, argument conditions, denies).
//! A caller holds three roles; the decision must stay flat as rules grow.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sluice_config::{Kind, Snapshot};
use sluice_gateway::policy::decide::{Decide, Verdict};

fn snapshot() -> Snapshot {
    let mut y =
        String::from("listeners:\n  - { name: main, address: \"127.0.0.1:8080\" }\nupstreams:\n");
    for u in 0..100 {
        y.push_str(&format!(
            "  - {{ name: up{u}, url: \"http://127.0.0.1:9{u:03}/mcp\" }}\n"
        ));
    }
    y.push_str("routes:\n  - { name: r, path: /mcp, upstream: up0 }\nroles:\n");
    let mut rules = 0;
    for r in 0..10 {
        y.push_str(&format!("  - name: role{r}\n    allow:\n"));
        for i in 0..900 {
            let u = (r * 7 + i) % 100;
            match i % 10 {
                0 => y.push_str(&format!("      - \"tools:up{u}/grp{i}_*:call\"\n")),
                1 => y.push_str(&format!(
                    "      - {{ scope: \"tools:up{u}/tool_{i}:call\", when: [{{ pointer: /n, max: 10 }}] }}\n"
                )),
                _ => y.push_str(&format!("      - \"tools:up{u}/tool_{i}:call\"\n")),
            }
            rules += 1;
        }
        y.push_str("    deny:\n");
        for i in 0..100 {
            let u = (r * 3 + i) % 100;
            y.push_str(&format!("      - \"tools:up{u}/danger_{i}:call\"\n"));
            rules += 1;
        }
    }
    assert_eq!(rules, 10_000);
    sluice_config::load(&y, 1).expect("a valid 10,000-rule config")
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let roles = ["role3", "role7", "role9"];
    let args = br#"{"n": 5}"#;
    let mut g = c.benchmark_group("policy_10k_rules");
    g.bench_function("allow_literal", |b| {
        b.iter(|| {
            let mut parse = || serde_json::from_slice(args).ok();
            let v = snap.policy.decide(
                roles.iter().copied(),
                Kind::Tools,
                black_box("up28"),
                black_box("tool_907"),
                &mut parse,
            );
            black_box(v)
        })
    });
    g.bench_function("allow_with_condition", |b| {
        b.iter(|| {
            let mut parse = || serde_json::from_slice(args).ok();
            let v = snap.policy.decide(
                roles.iter().copied(),
                Kind::Tools,
                black_box("up22"),
                black_box("tool_1"),
                &mut parse,
            );
            black_box(v)
        })
    });
    g.bench_function("hidden_unknown_tool", |b| {
        b.iter(|| {
            let mut parse = || serde_json::from_slice(args).ok();
            let v = snap.policy.decide(
                roles.iter().copied(),
                Kind::Tools,
                black_box("up50"),
                black_box("nope"),
                &mut parse,
            );
            black_box(v)
        })
    });
    g.bench_function("list_visibility_200_tools", |b| {
        b.iter(|| {
            (0..200)
                .filter(|i| {
                    snap.policy.visible(
                        roles.iter().copied(),
                        Kind::Tools,
                        "up28",
                        &format!("tool_{i}"),
                    )
                })
                .count()
        })
    });
    g.finish();
    // Sanity: the benchmark decides what it claims to.
    let mut parse = || serde_json::from_slice(args).ok();
    assert_ne!(
        snap.policy.decide(
            roles.iter().copied(),
            Kind::Tools,
            "up50",
            "nope",
            &mut parse
        ),
        Verdict::Allow
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
