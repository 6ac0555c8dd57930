//! Idempotent tool calls. A call that carries an idempotency key in
//! `_meta` (`sluice/idempotency-key`) runs at most once per caller, tool and
//! key within the server's window: the first claims the key with the hash
//! of its forwarded arguments; a repeat with the same arguments gets the
//! stored result (or, while the first still runs, is told to retry); a
//! repeat with other arguments is refused. A call that ends without a
//! result (an error, a failed upstream) gives the key back.
//!
//! This module is the Pingora-free core: the key's name, the local ledger,
//! and reading the result out of the answer the client was sent. The
//! shared ledger (Redis) is in `exchange::server::idempotent`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where a call carries its key: `params._meta["sluice/idempotency-key"]`.
pub const META_KEY: &str = "sluice/idempotency-key";
/// Longest key accepted.
pub const MAX_KEY: usize = 200;
/// Largest answer kept; a larger one is passed on and its key given back.
pub const MAX_RESULT: usize = 1 << 20;
/// Most keys held on one replica.
const MAX_ENTRIES: usize = 100_000;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds the key: this call runs, and settles it.
    Run,
    /// A call with these arguments ran: its result (JSON).
    Replay(Arc<str>),
    /// A call with these arguments is still running.
    Running,
    /// The key was used with other arguments.
    Mismatch,
}

enum State {
    Running,
    Done(Arc<str>),
}

struct Entry {
    args: Box<str>,
    state: State,
    until: Instant,
}

/// Why a keyed call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdemDeny {
    #[error("this idempotency key was used for this tool with other arguments")]
    Mismatch,
    #[error("a call with this idempotency key is still running; repeat it once it ends")]
    Running,
    #[error("idempotency keys cannot be checked right now; retry shortly")]
    StoreDown,
}

/// A claimed call, its answer kept as it goes to the client.
pub struct Pending {
    pub key: String,
    /// The hash of the forwarded arguments.
    pub args: String,
    pub window: Duration,
    answer: Vec<u8>,
    /// The answer outgrew `MAX_RESULT`: not kept.
    overflowed: bool,
}

impl Pending {
    pub fn new(key: String, args: String, window: Duration) -> Self {
        Pending {
            key,
            args,
            window,
            answer: Vec::new(),
            overflowed: false,
        }
    }

    /// What the client was sent, unless it outgrew `MAX_RESULT`.
    pub fn answer(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.answer.as_slice())
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.overflowed || self.answer.len() + bytes.len() > MAX_RESULT {
            self.overflowed = true;
            self.answer = Vec::new();
            return;
        }
        self.answer.extend_from_slice(bytes);
    }
}

/// Keys held on this replica (limits without a shared store).
#[derive(Default)]
pub struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Ledger {
    pub fn claim(&self, key: &str, args: &str, window: Duration) -> Claim {
        let Ok(mut entries) = self.entries.lock() else {
            return Claim::Running;
        };
        let now = Instant::now();
        if let Some(e) = entries.get(key).filter(|e| e.until > now) {
            return match (&*e.args == args, &e.state) {
                (false, _) => Claim::Mismatch,
                (true, State::Running) => Claim::Running,
                (true, State::Done(r)) => Claim::Replay(r.clone()),
            };
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= MAX_ENTRIES {
                // Full of live keys: refuse rather than forget one.
                return Claim::Running;
            }
        }
        let entry = Entry {
            args: args.into(),
            state: State::Running,
            until: now + window,
        };
        entries.insert(key.to_owned(), entry);
        Claim::Run
    }

    /// The claimed call ended: keep its result, or give the key back.
    pub fn settle(&self, key: &str, result: Option<&str>, window: Duration) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        match result {
            Some(r) => {
                if let Some(e) = entries.get_mut(key) {
                    e.state = State::Done(r.into());
                    e.until = Instant::now() + window;
                }
            }
            None => {
                entries.remove(key);
            }
        }
    }
}

/// The key a call carries, if any: a string of 1 to `MAX_KEY` characters.
/// `Err` for a key of another type or length.
pub fn key_of(params: &serde_json::Map<String, Value>) -> Result<Option<&str>, &'static str> {
    match params.get("_meta").and_then(|m| m.get(META_KEY)) {
        None => Ok(None),
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KEY => Ok(Some(k)),
        Some(_) => Err("`sluice/idempotency-key` is a string of 1 to 200 characters"),
    }
}

/// The ledger key: the caller, the tool on its upstream, the client's key.
pub fn ledger_key(
    caller: (&str, Option<&str>),
    (upstream, tool): (&str, &str),
    key: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [caller.0, caller.1.unwrap_or(""), upstream, tool, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let d = h.finalize();
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The `result` of the response to `id` in the answer the client was sent
/// (one JSON message, or an SSE stream of them), as JSON text. `None` when
/// there is none — an error, or no response at all.
pub fn result_of(answer: &[u8], id: &str) -> Option<String> {
    let is_ours = |m: &Value| {
        m.get("id")
            .is_some_and(|i| serde_json::to_string(i).is_ok_and(|s| s == id))
    };
    let first = answer.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        let m: Value = serde_json::from_slice(answer).ok()?;
        return is_ours(&m)
            .then(|| m.get("result").map(Value::to_string))
            .flatten();
    }
    let text = std::str::from_utf8(answer).ok()?;
    let mut data = String::new();
    let mut found = None;
    for line in text.lines().chain(std::iter::once("")) {
        if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
            data.push('\n');
        } else if line.is_empty() && !data.is_empty() {
            if let Ok(m) = serde_json::from_str::<Value>(&data) {
                if is_ours(&m) {
                    found = m.get("result").map(Value::to_string);
                }
            }
            data.clear();
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_runs_once_replays_and_refuses_other_arguments() {
        let l = Ledger::default();
        let w = Duration::from_secs(60);
        assert_eq!(l.claim("k", "a1", w), Claim::Run);
        assert_eq!(l.claim("k", "a1", w), Claim::Running);
        assert_eq!(l.claim("k", "a2", w), Claim::Mismatch);
        l.settle("k", Some(r#"{"content":[]}"#), w);
        assert_eq!(
            l.claim("k", "a1", w),
            Claim::Replay(r#"{"content":[]}"#.into())
        );
        assert_eq!(l.claim("k", "a2", w), Claim::Mismatch);
        // A call that failed gives the key back.
        assert_eq!(l.claim("j", "a1", w), Claim::Run);
        l.settle("j", None, w);
        assert_eq!(l.claim("j", "a2", w), Claim::Run);
        // Past the window the key is free again.
        assert_eq!(l.claim("t", "a1", Duration::ZERO), Claim::Run);
        assert_eq!(l.claim("t", "a2", w), Claim::Run);
    }

    #[test]
    fn keys_are_read_strictly() {
        let map = |v: Value| v.as_object().cloned().expect("an object");
        let p = map(json!({"_meta": {"sluice/idempotency-key": "order-7"}}));
        assert_eq!(key_of(&p), Ok(Some("order-7")));
        assert_eq!(key_of(&map(json!({}))), Ok(None));
        assert!(key_of(&map(json!({"_meta": {"sluice/idempotency-key": 7}}))).is_err());
        assert!(key_of(&map(json!({"_meta": {"sluice/idempotency-key": ""}}))).is_err());
        let a = ledger_key(("alice", None), ("sdk", "pay"), "k");
        assert_ne!(a, ledger_key(("alice", Some("acme")), ("sdk", "pay"), "k"));
        assert_ne!(a, ledger_key(("alic", None), ("esdk", "pay"), "k"));
    }

    #[test]
    fn the_result_is_read_from_json_or_sse() {
        let json_answer =
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"paid"}]}}"#;
        assert_eq!(
            result_of(json_answer, "7").as_deref(),
            Some(r#"{"content":[{"text":"paid","type":"text"}]}"#)
                .map(|s| serde_json::from_str::<Value>(s)
                    .map(|v| v.to_string())
                    .unwrap_or_default())
                .as_deref()
        );
        assert_eq!(result_of(json_answer, "8"), None);
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                    data: {\"jsonrpc\":\"2.0\",\"id\":\"c-1\",\ndata: \"result\":{\"ok\":true}}\n\n";
        assert_eq!(result_of(sse, "\"c-1\"").as_deref(), Some(r#"{"ok":true}"#));
        let err = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}"#;
        assert_eq!(result_of(err, "7"), None);
    }
}
