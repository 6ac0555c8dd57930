//! Tests for the audit module: event shape, redaction, sampling, the
//! non-blocking queue, file rotation and the writer's shutdown drain.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::*;

fn event(n: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        "default",
        "tools/call",
        Decision::Allow,
        "v1",
        format!("req-{n}"),
    );
    e.target = Some("get-sum".into());
    e.status = 200;
    e.latency_ms = 1.25;
    e
}

fn read_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read audit file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

#[test]
fn event_json_shape() {
    let mut e = event(1);
    e.decision = Decision::Deny;
    e.reason = Some("tool not allowed".into());
    let v = serde_json::to_value(&e).expect("serialize");
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "event_id",
        "time",
        "tenant",
        "subject",
        "session",
        "route",
        "upstream",
        "method",
        "target",
        "decision",
        "reason",
        "policy_version",
        "arguments_digest",
        "arguments",
        "outcome",
        "status",
        "latency_ms",
        "request_id",
        "llm",
        "approval",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["tenant"], Value::Null);
    assert_eq!(v["status"], 200);
    for (d, s) in [
        (Decision::Allow, "allow"),
        (Decision::Deny, "deny"),
        (Decision::Error, "error"),
    ] {
        assert_eq!(serde_json::to_value(d).expect("serialize"), json!(s));
    }
    // One line per event: no embedded newlines.
    assert!(!serde_json::to_string(&e).expect("serialize").contains('\n'));
}

#[test]
fn event_ids_are_unique_hex_and_time_ordered() {
    let a = new_event_id();
    std::thread::sleep(Duration::from_millis(2));
    let b = new_event_id();
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
    assert!(a < b);
}

#[test]
fn time_is_rfc3339_utc_millis() {
    assert_eq!(
        format_rfc3339_millis(UNIX_EPOCH),
        "1970-01-01T00:00:00.000Z"
    );
    // 2024-02-29T12:34:56.789Z: a leap day.
    let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
    assert_eq!(format_rfc3339_millis(t), "2024-02-29T12:34:56.789Z");
    let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000); // 2000-02-29
    assert_eq!(format_rfc3339_millis(t), "2000-02-29T00:00:00.000Z");
    let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799); // end of 2099
    assert_eq!(format_rfc3339_millis(t), "2099-12-31T23:59:59.000Z");
}

#[test]
fn digest_is_hex_sha256() {
    assert_eq!(
        digest(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn redact_nested_and_missing_pointers() {
    let args = json!({
        "password": "hunter2",
        "auth": {"token": "t0k", "user": "ann"},
        "items": [{"secret": 1}, {"secret": 2}],
        "a/b": "slash",
        "keep": true
    });
    let pointers: Vec<String> = [
        "/password",
        "/auth/token",
        "/items/1/secret",
        "/a~1b",
        "/missing",
        "/auth/missing/deeper",
        "/items/9",
        "not-a-pointer",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = redact(&args, &pointers);
    assert_eq!(
        out,
        json!({
            "password": "[REDACTED]",
            "auth": {"token": "[REDACTED]", "user": "ann"},
            "items": [{"secret": 1}, {"secret": "[REDACTED]"}],
            "a/b": "[REDACTED]",
            "keep": true
        })
    );
    // The input is untouched.
    assert_eq!(args["password"], "hunter2");
    assert_eq!(redact(&args, &[]), args);
}

#[test]
fn sampler_is_deterministic_per_key() {
    let s = Sampler::new(0.3);
    for i in 0..1_000 {
        let key = format!("session-{i}");
        let first = s.keep(Decision::Allow, &key);
        for _ in 0..3 {
            assert_eq!(s.keep(Decision::Allow, &key), first);
        }
    }
}

#[test]
fn sampler_keeps_roughly_rate() {
    for rate in [0.1, 0.5, 0.9] {
        let s = Sampler::new(rate);
        let kept = (0..10_000)
            .filter(|i| s.keep(Decision::Allow, &format!("session-{i}")))
            .count();
        let frac = kept as f64 / 10_000.0;
        assert!((frac - rate).abs() < 0.03, "rate {rate}: kept {frac}");
    }
}

#[test]
fn sampler_always_keeps_denials_and_errors() {
    for rate in [0.0, 0.5, 1.0, -1.0, f64::NAN] {
        let s = Sampler::new(rate);
        for i in 0..1_000 {
            let key = format!("k{i}");
            assert!(s.keep(Decision::Deny, &key));
            assert!(s.keep(Decision::Error, &key));
        }
    }
    let all = Sampler::new(1.0);
    let none = Sampler::new(0.0);
    for i in 0..1_000 {
        let key = format!("k{i}");
        assert!(all.keep(Decision::Allow, &key));
        assert!(!none.keep(Decision::Allow, &key));
    }
}

#[test]
fn queue_drops_and_counts_when_full() {
    let registry_counter = prometheus::IntCounter::new("audit_dropped", "test").expect("counter");
    let (tx, mut rx) = AuditQueue::with_drop_counter(4, registry_counter.clone());
    let clone = tx.clone();
    // No runtime and nobody receiving: send must still return at once.
    for i in 0..10 {
        if i % 2 == 0 {
            tx.send(event(i));
        } else {
            clone.send(event(i));
        }
    }
    assert_eq!(tx.dropped(), 6);
    assert_eq!(clone.dropped(), 6);
    assert_eq!(rx.dropped(), 6);
    assert_eq!(registry_counter.get(), 6);
    let mut got = Vec::new();
    while let Some(e) = rx.try_recv() {
        got.push(e.request_id);
    }
    assert_eq!(got, ["req-0", "req-1", "req-2", "req-3"]);
}

#[test]
fn sender_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<AuditSender>();
}

#[test]
fn send_after_receiver_gone_counts_drop() {
    let (tx, rx) = AuditQueue::new(4);
    drop(rx);
    tx.send(event(0));
    assert_eq!(tx.dropped(), 1);
}

#[test]
fn sink_rotates_and_keeps_at_most_keep_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let keep = 3;
    let max_bytes = 2_000;
    let mut sink = JsonlFileSink::new(&path, max_bytes, keep).expect("open sink");
    let events: Vec<AuditEvent> = (0..200).map(event).collect();
    for chunk in events.chunks(7) {
        sink.write_batch(chunk).expect("write");
        sink.flush().expect("flush");
    }
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(files.len() <= keep + 1, "{files:?}");
    assert_eq!(files.len(), keep + 1, "enough data to fill every slot");
    for f in &files {
        let size = std::fs::metadata(f).expect("metadata").len();
        assert!(size <= max_bytes, "{f:?} is {size} bytes");
        assert!(!read_lines(f).is_empty());
    }
    // The newest event is in the live file; older files hold older events.
    let live = read_lines(&path);
    assert_eq!(live.last().expect("line")["request_id"], "req-199");
    let first_of = |p: &std::path::Path| -> usize {
        read_lines(p)[0]["request_id"]
            .as_str()
            .and_then(|s| s.strip_prefix("req-"))
            .and_then(|s| s.parse().ok())
            .expect("request id")
    };
    let rotated = |n: usize| dir.path().join(format!("audit.jsonl.{n}"));
    assert!(first_of(&rotated(3)) < first_of(&rotated(2)));
    assert!(first_of(&rotated(2)) < first_of(&rotated(1)));
    assert!(first_of(&rotated(1)) < first_of(&path));
}

#[test]
fn sink_appends_to_existing_file_and_keep_zero_truncates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    {
        let mut sink = JsonlFileSink::new(&path, 1 << 20, 0).expect("open");
        sink.write_batch(&[event(0)]).expect("write");
        sink.flush().expect("flush");
    }
    let mut sink = JsonlFileSink::new(&path, 1 << 20, 0).expect("reopen");
    sink.write_batch(&[event(1)]).expect("write");
    sink.flush().expect("flush");
    assert_eq!(read_lines(&path).len(), 2);

    let line_len = std::fs::metadata(&path).expect("metadata").len() / 2;
    let mut small = JsonlFileSink::new(&path, line_len * 5 / 2, 0).expect("open");
    small.write_batch(&[event(2), event(3)]).expect("write");
    small.flush().expect("flush");
    // The 2-line file had no room for a third: it was truncated, not rotated.
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["request_id"], "req-2");
    assert_eq!(lines[1]["request_id"], "req-3");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

#[tokio::test]
async fn writer_drains_queue_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlFileSink::new(&path, 1 << 30, 2).expect("open sink");
    let n = 1_000; // more than one batch
    let (tx, rx) = AuditQueue::new(n);
    for i in 0..n {
        tx.send(event(i));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    stop.send(()).expect("signal shutdown");
    // Shutdown is already signalled and the sender is still alive: only the
    // drain can write these events.
    run_writer(rx, sink, stopped).await;
    assert_eq!(tx.dropped(), 0);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), n);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["request_id"], format!("req-{i}"));
    }
    // The writer is gone: later sends are counted, not blocked on.
    tx.send(event(n));
    assert_eq!(tx.dropped(), 1);
}

#[tokio::test]
async fn writer_runs_concurrently_and_stops_on_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlFileSink::new(&path, 1 << 30, 2).expect("open sink");
    let (tx, rx) = AuditQueue::new(64);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(run_writer(rx, sink, stopped));
    let mut sent = 0;
    for i in 0..500 {
        tx.send(event(i));
        sent += 1;
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    stop.send(()).expect("signal shutdown");
    writer.await.expect("writer task");
    let written = read_lines(&path).len() as u64;
    assert_eq!(written + tx.dropped(), sent);
}

#[tokio::test]
async fn writer_stops_when_senders_are_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let sink = JsonlFileSink::new(&path, 1 << 30, 2).expect("open sink");
    let (tx, rx) = AuditQueue::new(16);
    for i in 0..5 {
        tx.send(event(i));
    }
    drop(tx);
    run_writer(rx, sink, std::future::pending::<()>()).await;
    assert_eq!(read_lines(&path).len(), 5);
}
