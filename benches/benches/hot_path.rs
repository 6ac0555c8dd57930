//! Criterion benchmarks of the gateway's per-request hot path: the work
//! Sluice adds on top of plain proxying.
//!
//! - `classify/*`: JSON-RPC classification of a client body (1 KB
//!   `tools/call`, `tools/list`, 64 KiB-argument `tools/call`, batch of 10).
//! - `sse_parse/*`: the incremental SSE parser on a 20-event stream, fed
//!   whole and in 64-byte chunks.
//! - `inspect/*`: matching a server answer to its request, for an
//!   `application/json` `tools/call` result and for an SSE answer with five
//!   progress notifications before the result.
//! - `legacy/endpoint_rewrite`: rewriting the legacy transport's `endpoint`
//!   event.
//! - `usage_watch/*`: the model stream's usage watcher over a 100-word chat
//!   completion (103 chunks, the usage chunk, `[DONE]`) fed event by event
//!   and read in one burst, as the gateway reads a burst of chunks: `strip`
//!   when the gateway added `include_usage` (each chunk's `"usage":null` and
//!   the usage chunk cut out), `keep` when the client asked for it.
//!
//! Run: `cargo bench -p sluice-benches` (add `-- --warm-up-time 1
//! --measurement-time 2` for a quick pass). Inputs live in `benches/lib.rs`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_benches as inputs;
use sluice_gateway::llm::request::Api;
use sluice_gateway::llm::usage::UsageWatch;
use sluice_gateway::mcp::legacy::EndpointRewriter;
use sluice_gateway::mcp::sse::SseParser;
use sluice_gateway::mcp::{classify, ResponseInspector};

fn bench_classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    let cases = [
        ("tools_call_1k", inputs::tools_call_1k()),
        ("tools_list", inputs::tools_list()),
        ("tools_call_64k", inputs::tools_call_64k()),
        ("batch_10", inputs::batch(10)),
    ];
    for (name, body) in &cases {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| classify(black_box(body), inputs::MAX_DEPTH).expect("valid body"))
        });
    }
    group.finish();
}

fn bench_sse(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_parse");
    let stream = inputs::sse_stream(20);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for (name, size) in [
        ("20_events_1_chunk", stream.len()),
        ("20_events_64b_chunks", 64),
    ] {
        let chunks = inputs::chunks(&stream, size);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut parser = SseParser::new(inputs::MAX_INSPECTED);
                let mut events = 0usize;
                for chunk in &chunks {
                    parser.feed(black_box(chunk), |ev| {
                        events += ev.data.len();
                    });
                }
                black_box(events)
            })
        });
    }
    group.finish();
}

fn bench_inspect(c: &mut Criterion) {
    let mut group = c.benchmark_group("inspect");
    let facts = classify(&inputs::tools_call_1k(), inputs::MAX_DEPTH).expect("valid body");
    let cases = [
        (
            "json_tools_call_result",
            &b"application/json"[..],
            inputs::json_call_response(),
        ),
        (
            "sse_5_progress_plus_result",
            &b"text/event-stream"[..],
            inputs::sse_call_response(),
        ),
    ];
    for (name, content_type, body) in &cases {
        // Delivered in 16 KiB reads, as Pingora hands body chunks over.
        let chunks = inputs::chunks(body, 16 * 1024);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut inspector = ResponseInspector::off();
                inspector.start(content_type, Some(&facts), inputs::MAX_INSPECTED);
                for chunk in &chunks {
                    inspector.feed(black_box(chunk));
                }
                inspector.finish();
                black_box(inspector)
            })
        });
    }
    group.finish();
}

fn bench_legacy(c: &mut Criterion) {
    let mut group = c.benchmark_group("legacy");
    let stream = bytes::Bytes::from(inputs::legacy_endpoint_stream());
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("endpoint_rewrite", |b| {
        b.iter_batched(
            || stream.clone(),
            |chunk| {
                let mut rw = EndpointRewriter::new("/legacy", "/v1");
                rw.process(Some(chunk), false)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_usage_watch(c: &mut Criterion) {
    let mut group = c.benchmark_group("usage_watch");
    let events = inputs::chat_stream_events(100);
    let bytes: usize = events.iter().map(String::len).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    for (name, strip) in [("strip", true), ("keep", false)] {
        group.bench_function(name, |b| {
            let mut out = bytes::BytesMut::with_capacity(64 * 1024);
            b.iter(|| {
                let mut watch = UsageWatch::new(Api::ChatCompletions, true, strip, 1 << 20);
                out.clear();
                for event in &events {
                    watch.feed(black_box(event.as_bytes()), &mut out);
                }
                watch.finish(&mut out);
                assert!(watch.saw_usage);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(
    hot_path,
    bench_classify,
    bench_sse,
    bench_inspect,
    bench_legacy,
    bench_usage_watch
);
criterion_main!(hot_path);
