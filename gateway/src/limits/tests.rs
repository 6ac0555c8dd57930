//! Limits compiled from config: selectors, keys, state kept across reloads,
//! and bounded memory under key churn.

use super::*;
use crate::metrics::Metrics;

fn snapshot(yaml_limits: &str) -> Snapshot {
    let yaml = format!(
        "listeners: [{{ name: main, address: \"127.0.0.1:0\" }}]\n\
         upstreams: [{{ name: github, url: \"http://127.0.0.1:9/mcp\" }}]\n\
         routes: [{{ name: mcp, path: /mcp, upstream: github }}]\n{yaml_limits}"
    );
    sluice_config::load(&yaml, 1).expect("valid config")
}

fn input<'a>(subject: &'a str, tool: &'a str) -> LimitInput<'a> {
    LimitInput {
        tenant: None,
        subject,
        roles: &[],
        route: "mcp",
        upstream: "github",
        method: "tools/call",
        target: Some(tool),
        model: None,
    }
}

const PER_SUBJECT: &str = "rate_limits:\n  rules:\n    - { name: calls, match: { methods: [tools/call], upstreams: [github] }, per: [subject], rate: 1/h, burst: 3 }\n";

#[tokio::test]
async fn a_request_must_pass_every_limit_that_applies() {
    let m = Metrics::new();
    let snap = snapshot(
        "rate_limits:\n  rules:\n    - { name: per-subject, per: [subject], rate: 1/h, burst: 5 }\n    - { name: echo, match: { tools: [echo] }, rate: 1/h, burst: 2 }\n",
    );
    let l = Limits::build(&snap, None, &m).unwrap();
    assert!(l.check_rate(&input("alice", "echo"), &m).await.is_ok());
    assert!(l.check_rate(&input("bob", "echo"), &m).await.is_ok());
    // `echo` is global (no `per`): its burst of 2 is spent.
    let err = l.check_rate(&input("carol", "echo"), &m).await.unwrap_err();
    assert_eq!(err.limit(), "echo");
    assert!(err.retry_after() > Duration::from_secs(3000));
    // Other tools still pass until alice's own burst of 5 is spent.
    for _ in 0..4 {
        assert!(l.check_rate(&input("alice", "other"), &m).await.is_ok());
    }
    let err = l
        .check_rate(&input("alice", "other"), &m)
        .await
        .unwrap_err();
    assert_eq!(err.limit(), "per-subject");
    assert_eq!(
        m.limit_refusals.with_label_values(&["per-subject"]).get(),
        1
    );
}

#[tokio::test]
async fn selectors_scope_limits() {
    let m = Metrics::new();
    let l = Limits::build(&snapshot(PER_SUBJECT), None, &m).unwrap();
    let mut list = input("alice", "x");
    list.method = "tools/list";
    for _ in 0..10 {
        assert!(l.check_rate(&list, &m).await.is_ok(), "not a tools/call");
    }
    let mut other = input("alice", "x");
    other.upstream = "slack";
    for _ in 0..10 {
        assert!(l.check_rate(&other, &m).await.is_ok(), "another upstream");
    }
}

#[tokio::test]
async fn reload_keeps_state_of_unchanged_limits_only() {
    let m = Metrics::new();
    let first = Limits::build(&snapshot(PER_SUBJECT), None, &m).unwrap();
    for _ in 0..3 {
        first.check_rate(&input("alice", "x"), &m).await.unwrap();
    }
    assert!(first.check_rate(&input("alice", "x"), &m).await.is_err());
    // The same limit under a different selector: the state is kept.
    let same = snapshot(&PER_SUBJECT.replace("upstreams: [github]", "upstreams: [git*]"));
    let second = Limits::build(&same, Some(&first), &m).unwrap();
    assert!(
        second.check_rate(&input("alice", "x"), &m).await.is_err(),
        "no burst refill on reload"
    );
    // A changed quota is a new limit with fresh state.
    let changed = snapshot(&PER_SUBJECT.replace("burst: 3", "burst: 4"));
    let third = Limits::build(&changed, Some(&second), &m).unwrap();
    assert!(third.check_rate(&input("alice", "x"), &m).await.is_ok());
}

#[test]
fn keys_differ_by_dimension_and_value() {
    let a = input("alice", "x");
    let b = input("bob", "x");
    assert_ne!(
        key_hash(&[KeyPart::Subject], &a),
        key_hash(&[KeyPart::Subject], &b)
    );
    assert_eq!(
        key_hash(&[KeyPart::Tool], &a),
        key_hash(&[KeyPart::Tool], &b)
    );
    let mut t = input("acme", "x");
    t.tenant = Some("acme");
    assert_ne!(
        key_hash(&[KeyPart::Tenant], &t),
        key_hash(&[KeyPart::Subject], &t),
        "the dimension is part of the key"
    );
}

#[test]
fn concurrency_caps_apply_per_key_and_release() {
    let m = Metrics::new();
    let snap = snapshot(
        "concurrency_limits:\n  - { name: inflight, per: [subject], max: 2 }\n  - { name: upstream, per: [upstream], max: 3 }\n",
    );
    let l = Limits::build(&snap, None, &m).unwrap();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    l.acquire(&input("alice", "x"), &mut a, &m).unwrap();
    l.acquire(&input("alice", "x"), &mut b, &m).unwrap();
    let err = l.acquire(&input("alice", "x"), &mut c, &m).unwrap_err();
    assert_eq!(err.limit(), "inflight");
    assert!(c.is_empty(), "a refused request holds nothing");
    l.acquire(&input("bob", "x"), &mut c, &m).unwrap();
    let mut d = Vec::new();
    assert_eq!(
        l.acquire(&input("carol", "x"), &mut d, &m)
            .unwrap_err()
            .limit(),
        "upstream"
    );
    drop(a);
    l.acquire(&input("carol", "x"), &mut d, &m).unwrap();
}
