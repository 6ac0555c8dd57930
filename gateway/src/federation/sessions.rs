//! Upstream sessions kept per caller for a virtual server's requests that
//! carry none of their own (stateless clients, sources a sealed session
//! could not open): one `initialize` per caller and source instead of one
//! per request. A bounded map: past its size the oldest half goes. A
//! process's own cache — a replica that misses opens a new session. Also
//! which sources speak the stateless revision (2026-07-28), as learned.

use std::collections::HashMap;
use std::sync::Mutex;

use sluice_config::locks::Recover;

/// Most upstream sessions kept.
const MAX: usize = 10_000;

#[derive(Default)]
pub struct UpstreamSessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Key → (session id, none for an upstream without sessions; age).
    map: HashMap<String, (Option<String>, u64)>,
    clock: u64,
    /// Upstream name → speaks 2026-07-28 (and then what its
    /// `server/discover` said it can do).
    stateless: HashMap<String, Option<serde_json::Value>>,
}

impl UpstreamSessions {
    /// The cached session of `key`: `Some(None)` for an upstream that
    /// gives no session id.
    pub fn get(&self, key: &str) -> Option<Option<String>> {
        let g = self.inner.lock().recover();
        g.map.get(key).map(|(id, _)| id.clone())
    }

    pub fn put(&self, key: String, id: Option<String>) {
        let mut g = self.inner.lock().recover();
        if g.map.len() >= MAX && !g.map.contains_key(&key) {
            let mut ages: Vec<u64> = g.map.values().map(|(_, a)| *a).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            g.map.retain(|_, (_, a)| *a > cut);
        }
        g.clock += 1;
        let age = g.clock;
        g.map.insert(key, (id, age));
    }

    /// Does upstream `name` speak the stateless revision, as far as known?
    pub fn stateless(&self, name: &str) -> Option<bool> {
        let g = self.inner.lock().recover();
        g.stateless.get(name).map(Option::is_some)
    }

    /// The capabilities a stateless upstream declared, if known.
    pub fn stateless_capabilities(&self, name: &str) -> Option<serde_json::Value> {
        let g = self.inner.lock().recover();
        g.stateless.get(name).cloned().flatten()
    }

    /// What was learned of upstream `name`: the capabilities it declared
    /// when it speaks the stateless revision, none when it does not.
    pub fn set_stateless(&self, name: &str, capabilities: Option<serde_json::Value>) {
        let mut g = self.inner.lock().recover();
        if g.stateless.len() < MAX || g.stateless.contains_key(name) {
            g.stateless.insert(name.to_owned(), capabilities);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().recover().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_kept_per_key_and_the_oldest_go_first() {
        let s = UpstreamSessions::default();
        s.put("a".into(), Some("s1".into()));
        s.put("b".into(), None);
        assert_eq!(s.get("a"), Some(Some("s1".into())));
        assert_eq!(s.get("b"), Some(None), "an upstream without sessions");
        assert_eq!(s.get("c"), None);
        for i in 0..MAX {
            s.put(format!("k{i}"), None);
        }
        assert!(s.len() <= MAX);
        assert_eq!(s.get("a"), None, "among the oldest");
        assert!(
            s.get(&format!("k{}", MAX - 1)).is_some(),
            "the newest stays"
        );
    }
}
