//! The limit check on the hot path: key hashing, selector matching and the
//! GCRA step, with one limit and with four limits applying to a call (plus
//! a concurrency permit taken and given back), over 10,000 distinct
//! subjects so the keyed maps are warm and realistic. Local limits never
//! wait, so the future is polled once (`now_or_never`): no runtime overhead.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use futures::FutureExt;
use sluice_gateway::limits::{LimitInput, Limits};
use sluice_gateway::metrics::Metrics;

fn limits(rules: &str, caps: &str) -> Limits {
    let y = format!(
        "listeners: [{{ name: main, address: \"127.0.0.1:8080\" }}]\n\
         tenants: [acme]\nroles: [{{ name: dev, allow: [\"tools:*/*:call\"] }}]\n\
         upstreams: [{{ name: github, url: \"http://127.0.0.1:9/mcp\" }}]\n\
         routes: [{{ name: mcp, path: /mcp, upstream: github }}]\n\
         rate_limits:\n  rules:\n{rules}concurrency_limits:\n{caps}"
    );
    let snap = sluice_config::load(&y, 1).expect("valid config");
    Limits::build(&snap, None, &Metrics::new()).expect("limits")
}

fn bench(c: &mut Criterion) {
    let m = Metrics::new();
    let subjects: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let roles: Vec<Box<str>> = vec!["dev".into()];
    let input = |s: &'static str| LimitInput {
        tenant: Some("acme"),
        subject: s,
        roles: &[],
        route: "mcp",
        upstream: "github",
        method: "tools/call",
        target: Some("create_issue"),
        model: None,
    };
    // Generous quotas: the bench measures the allowed path.
    let one = limits(
        "    - { name: per-subject, match: { methods: [tools/call] }, per: [subject], rate: 1000000/s, burst: 1000000 }\n",
        "  []\n",
    );
    let four = limits(
        "    - { name: per-subject, match: { methods: [tools/call] }, per: [subject], rate: 1000000/s, burst: 1000000 }\n\
         \x20   - { name: per-tenant, per: [tenant], rate: 1000000/s, burst: 1000000 }\n\
         \x20   - { name: per-tool, match: { upstreams: [git*], tools: [\"create_*\"] }, per: [upstream, tool], rate: 1000000/s, burst: 1000000 }\n\
         \x20   - { name: per-role, match: { roles: [dev] }, per: [role, subject], rate: 1000000/s, burst: 1000000 }\n",
        "  - { name: inflight, per: [subject], max: 1000 }\n",
    );
    let mut g = c.benchmark_group("limits");
    let mut i = 0usize;
    g.bench_function("one_limit", |b| {
        b.iter(|| {
            i = (i + 1) % subjects.len();
            let subject: &str = &subjects[i];
            let mut inp = input("");
            inp.subject = subject;
            one.check_rate(black_box(&inp), &m).now_or_never()
        })
    });
    g.bench_function("four_limits_and_a_permit", |b| {
        b.iter(|| {
            i = (i + 1) % subjects.len();
            let subject: &str = &subjects[i];
            let mut inp = input("");
            inp.subject = subject;
            inp.roles = &roles;
            let ok = four.check_rate(black_box(&inp), &m).now_or_never();
            let mut permits = Vec::new();
            let held = four.acquire(&inp, &mut permits, &m);
            (ok, held)
        })
    });
    g.bench_function("no_limit_applies", |b| {
        let mut inp = input("user-1");
        inp.method = "tools/list";
        b.iter(|| one.check_rate(black_box(&inp), &m).now_or_never())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
