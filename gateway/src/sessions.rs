//! Binding of MCP session ids to the caller that created them: a session
//! presented by another subject or tenant is refused as unknown. Sharded
//! maps keep the per-request lock short; idle bindings are swept so memory
//! stays bounded.

use sluice_config::locks::Recover;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Most bindings kept; past it the oldest are swept first.
const MAX_PER_SHARD: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    subject: Box<str>,
    tenant: Option<Box<str>>,
}

struct Binding {
    owner: Owner,
    seen: Instant,
    /// The client declared URL-mode elicitation at initialize.
    url_elicitation: bool,
}

pub struct Sessions {
    shards: Vec<Mutex<HashMap<Box<str>, Binding>>>,
    hasher: std::collections::hash_map::RandomState,
    idle: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Bound to this caller (or newly bound to it).
    Mine,
    /// Bound to someone else.
    Foreign,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            idle,
        }
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<Box<str>, Binding>> {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
    }

    /// Check `id` against the caller; a session never seen before (created
    /// before this process started, or by another replica) is bound now.
    pub fn check(&self, id: &str, subject: &str, tenant: Option<&str>) -> Check {
        let mut map = self.shard(id).lock().recover();
        let now = Instant::now();
        match map.get_mut(id) {
            Some(b) if &*b.owner.subject == subject && b.owner.tenant.as_deref() == tenant => {
                b.seen = now;
                Check::Mine
            }
            Some(_) => Check::Foreign,
            None => {
                insert(&mut map, id, subject, tenant, now, self.idle);
                Check::Mine
            }
        }
    }

    /// Bind a session the upstream just created for this caller.
    pub fn bind(&self, id: &str, subject: &str, tenant: Option<&str>, url_elicitation: bool) {
        let mut map = self.shard(id).lock().recover();
        insert(&mut map, id, subject, tenant, Instant::now(), self.idle);
        if let Some(b) = map.get_mut(id) {
            b.url_elicitation = url_elicitation;
        }
    }

    /// Did the session's client declare URL-mode elicitation?
    pub fn url_elicitation(&self, id: &str) -> bool {
        self.shard(id)
            .lock()
            .recover()
            .get(id)
            .is_some_and(|b| b.url_elicitation)
    }

    pub fn end(&self, id: &str) {
        self.shard(id).lock().recover().remove(id);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().recover().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert(
    map: &mut HashMap<Box<str>, Binding>,
    id: &str,
    subject: &str,
    tenant: Option<&str>,
    now: Instant,
    idle: Duration,
) {
    if map.len() >= MAX_PER_SHARD {
        map.retain(|_, b| now.duration_since(b.seen) < idle);
        if map.len() >= MAX_PER_SHARD {
            // Still full of live sessions: drop the least recently seen.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, b)| b.seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
    }
    map.insert(
        id.into(),
        Binding {
            owner: Owner {
                subject: subject.into(),
                tenant: tenant.map(Into::into),
            },
            seen: now,
            url_elicitation: false,
        },
    );
}

/// Legacy (HTTP+SSE) sessions share the binding table with Streamable
/// HTTP ones, in a namespace of their own.
pub fn legacy_key(sid: &str) -> String {
    format!("legacy:{sid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_its_creator() {
        let s = Sessions::new(Duration::from_secs(3600));
        s.bind("abc", "alice", Some("acme"), false);
        assert_eq!(s.check("abc", "alice", Some("acme")), Check::Mine);
        assert_eq!(s.check("abc", "bob", Some("acme")), Check::Foreign);
        assert_eq!(s.check("abc", "alice", Some("globex")), Check::Foreign);
        assert_eq!(s.check("new", "bob", None), Check::Mine);
        assert_eq!(s.check("new", "alice", None), Check::Foreign);
        s.end("abc");
        assert_eq!(s.check("abc", "bob", Some("acme")), Check::Mine);
    }

    #[test]
    fn memory_stays_bounded() {
        let s = Sessions::new(Duration::from_secs(3600));
        for i in 0..(SHARDS * MAX_PER_SHARD + 5_000) {
            s.bind(&format!("s{i}"), "u", None, false);
        }
        assert!(s.len() <= SHARDS * MAX_PER_SHARD);
    }
}
