//! Upstream sessions kept per caller for a virtual server's requests that
//! carry none of their own (stateless clients, sources a sealed session
//! could not open): one `initialize` per caller and source instead of one
//! per request. A bounded map: past its size the oldest half goes. A
//! process's own cache — a replica that misses opens a new session. Also
//! which sources speak the stateless revision (2026-07-28), as learned:
//! learned again after `RELEARN`, or at once when a stateless request is
//! refused (a source that stopped speaking it).

use std::collections::HashMap;
use std::sync::Mutex;

use sluice_config::locks::Recover;

/// Most upstream sessions kept.
const MAX: usize = 10_000;
/// How long what a source speaks is trusted before it is asked again.
pub const RELEARN: std::time::Duration = std::time::Duration::from_secs(600);

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
    stateless: HashMap<String, (Option<serde_json::Value>, std::time::Instant)>,
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
        self.stateless_at(name, std::time::Instant::now())
    }

    fn stateless_at(&self, name: &str, now: std::time::Instant) -> Option<bool> {
        let g = self.inner.lock().recover();
        g.stateless
            .get(name)
            .filter(|(_, at)| now.saturating_duration_since(*at) < RELEARN)
            .map(|(caps, _)| caps.is_some())
    }

    /// The capabilities a stateless upstream declared, if known.
    pub fn stateless_capabilities(&self, name: &str) -> Option<serde_json::Value> {
        let g = self.inner.lock().recover();
        g.stateless.get(name).and_then(|(caps, _)| caps.clone())
    }

    /// A stateless request to `name` was refused: ask it again next time.
    pub fn forget_stateless(&self, name: &str) {
        self.inner.lock().recover().stateless.remove(name);
    }

    /// What was learned of upstream `name`: the capabilities it declared
    /// when it speaks the stateless revision, none when it does not.
    pub fn set_stateless(&self, name: &str, capabilities: Option<serde_json::Value>) {
        let mut g = self.inner.lock().recover();
        if g.stateless.len() < MAX || g.stateless.contains_key(name) {
            g.stateless
                .insert(name.to_owned(), (capabilities, std::time::Instant::now()));
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
    fn what_a_source_speaks_is_learned_again_in_time_or_when_refused() {
        let s = UpstreamSessions::default();
        s.set_stateless("a", Some(serde_json::json!({})));
        s.set_stateless("b", None);
        let now = std::time::Instant::now();
        assert_eq!(s.stateless_at("a", now), Some(true));
        assert_eq!(s.stateless_at("b", now), Some(false));
        assert_eq!(s.stateless_at("a", now + RELEARN), None, "asked again");
        s.forget_stateless("b");
        assert_eq!(s.stateless("b"), None);
    }

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
