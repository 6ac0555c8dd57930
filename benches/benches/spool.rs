//! The crash-safe audit append: what one batch of audit events costs the
//! gateway's background writer when it goes to the spool under the state
//! directory before it counts as written (`control::spool::Spool::append`),
//! with each batch fsynced (`sync: batch`, the default) and without
//! (`sync: none`), for a batch of 1 event (1 % sampling at low rates: each
//! event alone) and of 64 (100 % sampling under load: the writer takes up to
//! 256 at once). Events are ~700-byte JSON lines as the gateway writes them.
//! Control's confirmation (`ack`) runs every 4096 events, as shipping does,
//! so segments rotate and old ones go.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_gateway::control::spool::Spool;

fn event(seq: u64) -> String {
    serde_json::json!({
        "event_id": format!("{seq:032x}"),
        "time": "2026-12-07T21:40:00.123Z",
        "tenant": "acme", "subject": "alice", "session": "4f1c9a7e51d2b3c4",
        "route": "mcp", "upstream": "payments", "method": "tools/call", "target": "refund",
        "decision": "allow", "reason": null, "version": "12-9f2c1b7a",
        "args_digest": "7d9f1c0b2e4a6f8d1c3b5a7e9f0d2c4b6a8e0f1d3c5b7a9e1f3d5c7b9a1e3f5d",
        "outcome": "ok", "status": 200, "latency_ms": 3.25, "request_id": format!("req-{seq}"),
        "chain": {"id": "gw-1", "seq": seq, "prev": "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"}
    })
    .to_string()
}

fn spool(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_spool");
    for (sync, label) in [(true, "sync_batch"), (false, "sync_none")] {
        for batch in [1usize, 64] {
            let dir = tempfile::tempdir().expect("temp dir");
            let dropped = prometheus::IntCounter::new("dropped", "dropped").expect("counter");
            let cfg = sluice_config::Spool {
                max_bytes: 64 << 20,
                sync_each_batch: sync,
            };
            let (mut spool, _) = Spool::open(dir.path(), cfg, dropped).expect("spool");
            let mut seq = 0u64;
            let template: Vec<String> = (0..batch as u64).map(event).collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(label, batch), |b| {
                b.iter(|| {
                    let lines: Vec<(u64, String)> = template
                        .iter()
                        .map(|l| {
                            seq += 1;
                            (seq, l.clone())
                        })
                        .collect();
                    spool.append(&lines).expect("append");
                    if seq % 4096 < batch as u64 {
                        spool.ack(seq).expect("ack");
                    }
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, spool);
criterion_main!(benches);
