//! Sealed session ids for virtual servers: what a session needs — the
//! server, the caller (subject and tenant) and each source's upstream
//! session id — travels in the id itself, encrypted and authenticated
//! (AES-256-GCM, a random nonce per id), so any replica that holds the keys
//! serves any session with no shared store. The first key seals; every key
//! opens, so keys rotate by adding the new one first and dropping the old
//! one once its sessions may end. An id that does not open, or that names
//! another caller or server, is an unknown session.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_config::locks::Recover;

/// What a sealed id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The virtual server's name.
    pub server: String,
    pub subject: String,
    pub tenant: Option<String>,
    /// Per source, in order: the upstream's name and its session id (none:
    /// opened per request).
    pub upstreams: Vec<(String, Option<String>)>,
    /// What the client declared it can do for a server (sampling,
    /// elicitation, roots) as JSON, declared again to a source opened later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
    /// Not sealed: what names the client's session among a caller's — the
    /// random nonce that starts the id it was opened from (`tag_from`).
    #[serde(skip)]
    pub tag: String,
}

/// Sessions their clients ended (DELETE), by tag: their sealed ids stay
/// unknown here for `ENDED_KEEP`, so an ended session is not taken up again
/// (its sources re-opened) by presenting the old id. Per replica, bounded.
#[derive(Default)]
pub struct Ended {
    inner: std::sync::Mutex<EndedInner>,
}

#[derive(Default)]
struct EndedInner {
    tags: std::collections::HashSet<String>,
    order: std::collections::VecDeque<(std::time::Instant, String)>,
}

/// How long an ended session's id stays refused.
pub const ENDED_KEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Most ended sessions remembered; past it the oldest are forgotten first.
const ENDED_MAX: usize = 100_000;

impl Ended {
    pub fn end(&self, tag: &str) {
        let mut g = self.inner.lock().recover();
        let now = std::time::Instant::now();
        while let Some((at, _)) = g.order.front() {
            if now.duration_since(*at) < ENDED_KEEP && g.order.len() < ENDED_MAX {
                break;
            }
            if let Some((_, old)) = g.order.pop_front() {
                g.tags.remove(&old);
            }
        }
        if g.tags.insert(tag.to_owned()) {
            g.order.push_back((now, tag.to_owned()));
        }
    }

    pub fn is_ended(&self, tag: &str) -> bool {
        let g = self.inner.lock().recover();
        !g.tags.is_empty() && g.tags.contains(tag)
    }
}

/// The characters of an id that encode its nonce.
const NONCE_CHARS: usize = NONCE_LEN * 4 / 3;

impl SessionState {
    /// This state, known by the nonce of the sealed `id` it came from
    /// (random per id: two sessions never share one).
    pub fn tag_from(mut self, id: &str) -> Self {
        self.tag = id.get(..NONCE_CHARS).unwrap_or(id).to_owned();
        self
    }
}

/// The keys that seal and open session ids, and that mark the ids of
/// requests the gateway passes to a client (`mark`, `marked`).
pub struct Keys {
    keys: Vec<LessSafeKey>,
    macs: Vec<hmac::Key>,
}

/// Longest id accepted from a client.
const MAX_ID: usize = 4096;

impl Keys {
    /// One key per secret (any text: the key is its SHA-256), the first
    /// sealing. No secret: `fallback` (random per process — sessions then
    /// live as long as the process and stay on one replica).
    pub fn new(secrets: &[String], fallback: &[u8; 32]) -> Keys {
        let material: Vec<[u8; 32]> = if secrets.is_empty() {
            vec![*fallback]
        } else {
            secrets
                .iter()
                .map(|s| Sha256::digest(s.as_bytes()).into())
                .collect()
        };
        let keys = material
            .iter()
            .filter_map(|k| UnboundKey::new(&AES_256_GCM, k).ok().map(LessSafeKey::new))
            .collect();
        // A key of its own for marks, derived from the same secret.
        let macs = material
            .iter()
            .map(|k| {
                hmac::Key::new(
                    hmac::HMAC_SHA256,
                    &Sha256::digest([&b"mark:"[..], k].concat()),
                )
            })
            .collect();
        Keys { keys, macs }
    }

    /// A short mark (16 hex digits) of `parts` under the first key.
    pub fn mark(&self, parts: &[&str]) -> String {
        self.macs
            .first()
            .map_or_else(String::new, |k| mark_with(k, parts))
    }

    /// Was `mark` made of `parts` under one of the keys?
    pub fn marked(&self, parts: &[&str], mark: &str) -> bool {
        self.macs.iter().any(|k| mark_with(k, parts) == mark)
    }

    /// The sealed id for `state`.
    pub fn seal(&self, state: &SessionState) -> Option<String> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut data = serde_json::to_vec(state).ok()?;
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// The state a sealed id carries, if one of the keys opens it.
    pub fn open(&self, id: &str) -> Option<SessionState> {
        if id.len() > MAX_ID {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(id).ok()?;
        if raw.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            let plain = key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
            serde_json::from_slice(plain).ok()
        })
    }
}

fn mark_with(key: &hmac::Key, parts: &[&str]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    let tag = ctx.sign();
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        SessionState {
            server: "workspace".into(),
            subject: "alice".into(),
            tenant: Some("acme".into()),
            upstreams: vec![("sdk".into(), Some("abc".into())), ("demo".into(), None)],
            capabilities: Some(r#"{"sampling":{}}"#.into()),
            tag: String::new(),
        }
    }

    #[test]
    fn an_id_opens_to_what_was_sealed_and_nothing_else_opens() {
        let keys = Keys::new(&["current".into()], &[7; 32]);
        let id = keys.seal(&state()).expect("sealed");
        assert_eq!(keys.open(&id), Some(state()));
        assert_ne!(
            keys.seal(&state()),
            Some(id.clone()),
            "a fresh nonce each time"
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(keys.open(&URL_SAFE_NO_PAD.encode(bytes)), None, "tampered");
        assert_eq!(keys.open("not-an-id"), None);
        assert_eq!(keys.open(&"A".repeat(5000)), None);
        let other = Keys::new(&["other".into()], &[7; 32]);
        assert_eq!(other.open(&id), None, "another key");
    }

    #[test]
    fn a_mark_holds_for_its_parts_under_any_key_and_for_nothing_else() {
        let keys = Keys::new(&["current".into(), "old".into()], &[7; 32]);
        let m = keys.mark(&["session-a", "demo", "7"]);
        assert_eq!(m.len(), 16);
        assert!(keys.marked(&["session-a", "demo", "7"], &m));
        assert!(
            !keys.marked(&["session-b", "demo", "7"], &m),
            "another session"
        );
        assert!(
            !keys.marked(&["session-a", "demo7", ""], &m),
            "parts are framed"
        );
        let old = Keys::new(&["old".into()], &[7; 32]);
        assert!(
            keys.marked(&["x"], &old.mark(&["x"])),
            "a rotated-out key still verifies"
        );
        assert!(!Keys::new(&["other".into()], &[7; 32]).marked(&["x"], &old.mark(&["x"])));
    }

    #[test]
    fn keys_rotate_the_first_seals_every_one_opens() {
        let old = Keys::new(&["old".into()], &[0; 32]);
        let id = old.seal(&state()).unwrap();
        let rotated = Keys::new(&["new".into(), "old".into()], &[0; 32]);
        assert_eq!(rotated.open(&id), Some(state()), "within the grace");
        let fresh = rotated.seal(&state()).unwrap();
        assert_eq!(old.open(&fresh), None, "sealed with the new key");
        let after = Keys::new(&["new".into()], &[0; 32]);
        assert_eq!(after.open(&id), None, "past the grace");
    }
}
