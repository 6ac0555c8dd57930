//! This gateway's audit hash chain: each event written gets its place —
//! the chain's id, the next sequence number, the hash of the event before
//! (`sluice_config::chain`, which control verifies with).

use sluice_config::chain::{event_hash, Link};

use super::AuditEvent;

pub struct Chain {
    id: String,
    seq: u64,
    /// The hash of the last event stamped.
    prev: String,
}

impl Chain {
    /// A chain that goes on from `seq` and the hash of that event.
    pub fn resume(id: String, seq: u64, prev: String) -> Self {
        Chain { id, seq, prev }
    }

    /// A new chain, its id random.
    pub fn fresh() -> Self {
        Chain::resume(format!("{:032x}", rand::random::<u128>()), 0, String::new())
    }

    pub fn stamp(&mut self, e: &mut AuditEvent) {
        self.seq += 1;
        e.chain = Some(Link {
            id: self.id.clone(),
            seq: self.seq,
            prev: std::mem::take(&mut self.prev),
        });
        self.prev = serde_json::to_value(&*e)
            .map(|v| event_hash(&v))
            .unwrap_or_default();
    }

    /// Where the chain stands: its id, last sequence number, last hash.
    pub fn head(&self) -> (&str, u64, &str) {
        (&self.id, self.seq, &self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Decision;

    #[test]
    fn stamped_events_verify_as_one_chain() {
        let mut chain = Chain::fresh();
        let events: Vec<serde_json::Value> = (0..3)
            .map(|i| {
                let mut e =
                    AuditEvent::new("r", "tools/call", Decision::Allow, "v1", format!("q{i}"));
                e.latency_ms = 1.25;
                chain.stamp(&mut e);
                serde_json::to_value(&e).expect("json")
            })
            .collect();
        assert_eq!(chain.head().1, 3);
        let report = sluice_config::chain::verify(events, &Default::default());
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.checked, 3);
    }
}
