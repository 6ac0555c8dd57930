//! The audit hash chain, as the gateway writes it and control checks it:
//! each gateway's events carry `chain: {id, seq, prev}` — the chain's id,
//! a sequence number from 1 and the hash of the event before (empty for the
//! first). An event's hash is the SHA-256 of its canonical JSON (object
//! keys sorted, no spaces), so a store that keeps the event as JSON can
//! recompute it whatever key order it writes. [`verify`] walks a set of
//! events and says where one is missing or no longer what was chained.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// An event's place in its gateway's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub seq: u64,
    /// Hex SHA-256 of the event before; empty for the first.
    pub prev: String,
}

/// `v` as canonical JSON: object keys sorted, no whitespace.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash the next event's `chain.prev` names.
pub fn event_hash(v: &Value) -> String {
    let mut text = String::with_capacity(512);
    canonical(v, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The link an event carries, if it is chained.
pub fn link(v: &Value) -> Option<Link> {
    serde_json::from_value(v.get("chain")?.clone()).ok()
}

/// Where a chain is not whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Events `from..=to` of the chain are not there.
    Missing { chain: String, from: u64, to: u64 },
    /// The event at `seq` is not what the next event chained (it, or the
    /// next one's link, was altered).
    Altered {
        chain: String,
        seq: u64,
        event_id: String,
    },
    /// Two events claim one place.
    Duplicate { chain: String, seq: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { chain, from, to } if from == to => {
                write!(f, "chain {chain}: event {from} is missing")
            }
            Problem::Missing { chain, from, to } => {
                write!(f, "chain {chain}: events {from} to {to} are missing")
            }
            Problem::Altered {
                chain,
                seq,
                event_id,
            } => write!(
                f,
                "chain {chain}: event {seq} ({event_id}) is not the event that was chained: altered"
            ),
            Problem::Duplicate { chain, seq } => {
                write!(f, "chain {chain}: two events claim place {seq}")
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Chained events checked.
    pub checked: usize,
    /// Events without a chain (written before chains, or by another tool).
    pub unchained: usize,
    pub chains: usize,
    pub problems: Vec<Problem>,
}

/// Check `events` (any order). `heads` holds, per chain, the last link
/// recorded when it was stored (`seq`, hash): a tail removed or a last
/// event altered is found against it. A chain's first event checked may be
/// anywhere in it (a range, or older events trimmed by retention).
pub fn verify(
    events: impl IntoIterator<Item = Value>,
    heads: &BTreeMap<String, (u64, String)>,
) -> Report {
    let mut report = Report::default();
    let mut chains: BTreeMap<String, Vec<(Link, String, String)>> = BTreeMap::new();
    for e in events {
        let Some(l) = link(&e) else {
            report.unchained += 1;
            continue;
        };
        let id = e
            .get("event_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let hash = event_hash(&e);
        chains.entry(l.id.clone()).or_default().push((l, id, hash));
    }
    report.chains = chains.len();
    for (chain, mut events) in chains {
        events.sort_by_key(|(l, _, _)| l.seq);
        report.checked += events.len();
        let p = &mut report.problems;
        if let Some((first, id, _)) = events.first() {
            if first.seq == 1 && !first.prev.is_empty() {
                p.push(Problem::Altered {
                    chain: chain.clone(),
                    seq: 1,
                    event_id: id.clone(),
                });
            }
        }
        for pair in events.windows(2) {
            let ((a, a_id, a_hash), (b, _, _)) = (&pair[0], &pair[1]);
            if b.seq == a.seq {
                p.push(Problem::Duplicate {
                    chain: chain.clone(),
                    seq: b.seq,
                });
            } else if b.seq > a.seq + 1 {
                p.push(Problem::Missing {
                    chain: chain.clone(),
                    from: a.seq + 1,
                    to: b.seq - 1,
                });
            } else if b.prev != *a_hash {
                p.push(Problem::Altered {
                    chain: chain.clone(),
                    seq: a.seq,
                    event_id: a_id.clone(),
                });
            }
        }
        if let (Some((head_seq, head_hash)), Some((last, last_id, last_hash))) =
            (heads.get(&chain), events.last())
        {
            if *head_seq > last.seq {
                p.push(Problem::Missing {
                    chain: chain.clone(),
                    from: last.seq + 1,
                    to: *head_seq,
                });
            } else if *head_seq == last.seq && head_hash != last_hash {
                p.push(Problem::Altered {
                    chain: chain.clone(),
                    seq: last.seq,
                    event_id: last_id.clone(),
                });
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chained(n: u64) -> Vec<Value> {
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let e = json!({"event_id": format!("e{seq}"), "b": 1, "a": [seq, 1.5],
                               "chain": {"id": "g", "seq": seq, "prev": prev}});
                prev = event_hash(&e);
                e
            })
            .collect()
    }

    fn heads(events: &[Value]) -> BTreeMap<String, (u64, String)> {
        let last = events.last().expect("events");
        BTreeMap::from([(
            "g".into(),
            (link(last).expect("link").seq, event_hash(last)),
        )])
    }

    #[test]
    fn the_hash_is_the_canonical_jsons_whatever_the_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":{"y":1,"x":[2,"z"]},"a":1.5}"#).expect("a");
        let b: Value = serde_json::from_str(r#"{"a":1.5,"b":{"x":[2,"z"],"y":1}}"#).expect("b");
        let mut text = String::new();
        canonical(&a, &mut text);
        assert_eq!(text, r#"{"a":1.5,"b":{"x":[2,"z"],"y":1}}"#);
        assert_eq!(event_hash(&a), event_hash(&b));
    }

    #[test]
    fn the_hash_survives_a_store_that_parses_and_writes_the_event_again() {
        // Floats whose shortest form parses back exactly only when parsing
        // rounds correctly (serde_json's `float_roundtrip`).
        for x in [
            43.613741,
            1.3339109999999998,
            0.1 + 0.2,
            47.565234999999994,
            1e-7,
        ] {
            let e = serde_json::json!({"latency_ms": x, "n": [x]});
            let stored: Value = serde_json::from_str(&e.to_string()).expect("parse");
            assert_eq!(event_hash(&stored), event_hash(&e), "{x}");
        }
    }

    #[test]
    fn a_whole_chain_verifies_and_every_change_is_named() {
        let events = chained(5);
        let h = heads(&events);
        let ok = verify(events.clone(), &h);
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!((ok.checked, ok.chains), (5, 1));

        let mut removed = events.clone();
        removed.remove(2);
        let r = verify(removed, &h);
        assert_eq!(
            r.problems,
            [Problem::Missing {
                chain: "g".into(),
                from: 3,
                to: 3
            }]
        );

        let mut edited = events.clone();
        edited[1]["b"] = json!(2);
        let r = verify(edited, &h);
        let altered = Problem::Altered {
            chain: "g".into(),
            seq: 2,
            event_id: "e2".into(),
        };
        assert_eq!(r.problems, [altered]);

        let mut last_edited = events.clone();
        last_edited[4]["b"] = json!(2);
        let r = verify(last_edited, &h);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].to_string().contains("event 5 (e5)"));

        let tail_gone = events[..3].to_vec();
        let r = verify(tail_gone, &h);
        assert_eq!(
            r.problems,
            [Problem::Missing {
                chain: "g".into(),
                from: 4,
                to: 5
            }]
        );

        let mut doubled = events.clone();
        doubled.push(events[3].clone());
        assert_eq!(
            verify(doubled, &h).problems,
            [Problem::Duplicate {
                chain: "g".into(),
                seq: 4
            }]
        );
        assert_eq!(verify([json!({"event_id": "x"})], &h).unchained, 1);
    }
}
