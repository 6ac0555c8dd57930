//! A source's answer as the client gets it: the response to a forwarded
//! request — matched by the id it was sent with, by value — carries the
//! client's own id again, and for a stateless client a 2025 source's result
//! says `resultType: "complete"`. The rest is written as sent: a memchr
//! walk of the top-level members (`mcp::skim`) finds where to splice, and
//! only what the walk cannot read plainly is parsed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::call::{push_string, RawMap};
use crate::mcp::skim;

/// How the response to one forwarded request is rewritten.
pub struct Reply<'a> {
    /// The id the request was sent to the source with (JSON).
    pub sent: &'a str,
    /// The client's id (JSON).
    pub client: &'a str,
    /// Mark the result `resultType: "complete"`.
    pub mark: bool,
}

/// A fresh id for a request in a source session that several clients'
/// requests share (JSON): no two in one process are alike, so no client's
/// id meets another's at the source.
pub fn fresh_id() -> String {
    fresh_id_value().to_string()
}

/// `fresh_id`, as a value.
pub fn fresh_id_value() -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    Value::String(format!("sluice-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

enum Walked {
    Rewritten(Vec<u8>),
    /// Not the response, or nothing to change.
    Unchanged,
    /// Not one plain reading: the full parse decides.
    Unsure,
}

impl Reply<'_> {
    /// Does nothing need rewriting in any message?
    pub fn is_identity(&self) -> bool {
        !self.mark && self.sent == self.client
    }

    /// `msg` as the client gets it; `None` when it passes as sent (not the
    /// response to `sent`, or nothing to change).
    pub fn rewrite(&self, msg: &[u8]) -> Option<Vec<u8>> {
        if self.is_identity() {
            return None;
        }
        match self.walked(msg) {
            Walked::Rewritten(out) => Some(out),
            Walked::Unchanged => None,
            Walked::Unsure => self.parsed(msg),
        }
    }

    fn same_id(&self, got: &str) -> bool {
        got == self.sent
            || serde_json::from_str::<Value>(got)
                .ok()
                .is_some_and(|g| serde_json::from_str::<Value>(self.sent).ok() == Some(g))
    }

    fn walked(&self, msg: &[u8]) -> Walked {
        let Some([Some(got), result]) = skim::pick(msg, [b"id", b"result"]) else {
            return Walked::Unsure;
        };
        let Ok(got_text) = std::str::from_utf8(got) else {
            return Walked::Unsure;
        };
        if got.contains(&b'\\') {
            return Walked::Unsure;
        }
        if !self.same_id(got_text) {
            return Walked::Unchanged;
        }
        let base = msg.as_ptr() as usize;
        // (where, bytes replaced, what goes in)
        let mut edits: Vec<(usize, usize, &[u8])> = Vec::with_capacity(2);
        if self.client != got_text {
            edits.push((
                got.as_ptr() as usize - base,
                got.len(),
                self.client.as_bytes(),
            ));
        }
        let mut marked = Vec::new();
        if let (true, Some(result)) = (self.mark, result) {
            if result.first() != Some(&b'{')
                || memchr::memmem::find(result, b"resultType").is_some()
            {
                return Walked::Unsure;
            }
            let empty = result[1..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'}');
            marked.extend_from_slice(br#"{"resultType":"complete""#);
            if !empty {
                marked.push(b',');
            }
            edits.push((result.as_ptr() as usize - base, 1, &marked));
        }
        if edits.is_empty() {
            return Walked::Unchanged;
        }
        edits.sort_by_key(|e| e.0);
        let mut out = Vec::with_capacity(msg.len() + 64);
        let mut at = 0;
        for (start, len, with) in edits {
            out.extend_from_slice(&msg[at..start]);
            out.extend_from_slice(with);
            at = start + len;
        }
        out.extend_from_slice(&msg[at..]);
        Walked::Rewritten(out)
    }

    /// The same, member by member from a full parse (a key given twice is
    /// not one reading: passed as sent).
    fn parsed(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let members: RawMap<'_> = serde_json::from_slice(msg).ok()?;
        let got = members.get("id").filter(|got| self.same_id(got))?;
        let mut mark = self.mark;
        if let Some(result) = members.get("result").filter(|_| mark) {
            // Only a result that mentions `resultType` is read member by
            // member to see whether it says it already.
            if memchr::memmem::find(result.as_bytes(), b"\"resultType\"").is_some() {
                let inner = RawMap::read(result)?;
                mark = inner.get("resultType").is_none();
            }
        }
        if !mark && got == self.client {
            return None;
        }
        let mut out = Vec::with_capacity(msg.len() + 64);
        out.push(b'{');
        for (n, (k, v)) in members.0.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            push_string(&mut out, k);
            out.push(b':');
            match k.as_ref() {
                "id" => out.extend_from_slice(self.client.as_bytes()),
                "result" if mark => {
                    let body = v.trim_start().strip_prefix('{')?.trim_start();
                    out.extend_from_slice(br#"{"resultType":"complete""#);
                    if !body.starts_with('}') {
                        out.push(b',');
                    }
                    out.extend_from_slice(body.as_bytes());
                }
                _ => out.extend_from_slice(v.as_bytes()),
            }
        }
        out.push(b'}');
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("JSON")
    }

    const MARK: Reply<'static> = Reply {
        sent: "7",
        client: "7",
        mark: true,
    };

    #[test]
    fn a_result_is_marked_complete_and_the_rest_left_as_sent() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a\"b"}],"isError":false}}"#;
        let v = json(&MARK.rewrite(msg).expect("marked"));
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["content"][0]["text"], "a\"b");
        assert_eq!(v["id"], 7);
        let other = Reply { sent: "8", ..MARK };
        assert!(other.rewrite(msg).is_none(), "another id");
        let already = br#"{"id":7,"result":{"resultType":"complete"}}"#;
        assert!(MARK.rewrite(already).is_none());
        let empty = MARK.rewrite(br#"{"id":7,"result":{ }}"#).expect("marked");
        assert_eq!(
            json(&empty),
            serde_json::json!({"id": 7, "result": {"resultType": "complete"}})
        );
        let nested = br#"{"id":7,"result":{"x":{"resultType":1}}}"#;
        let v = json(&MARK.rewrite(nested).expect("marked"));
        assert_eq!(
            v["result"]["resultType"], "complete",
            "a nested key is not the result's"
        );
        let note = br#"{"method":"notifications/progress","params":{}}"#;
        assert!(MARK.rewrite(note).is_none());
        let twice = br#"{"id":7,"result":{"x":1},"result":{"y":2}}"#;
        assert!(
            MARK.rewrite(twice).is_none(),
            "two results: not one reading"
        );
        let escaped = br#"{"id":"a\u002d1","result":{}}"#;
        let named = Reply {
            sent: r#""a-1""#,
            client: r#""a-1""#,
            mark: true,
        };
        assert!(
            named.rewrite(escaped).is_some(),
            "an escaped id compared by value"
        );
    }

    #[test]
    fn the_client_gets_its_own_id_back() {
        let sent = fresh_id();
        assert_ne!(sent, fresh_id(), "fresh each time");
        let reply = Reply {
            sent: &sent,
            client: r#"{"not":"an id"}"#,
            mark: false,
        };
        let reply = Reply {
            client: "42",
            ..reply
        };
        let msg = format!(r#"{{"jsonrpc":"2.0","result":{{"x":1}},"id":{sent}}}"#);
        let v = json(&reply.rewrite(msg.as_bytes()).expect("rewritten"));
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc": "2.0", "result": {"x": 1}, "id": 42})
        );
        let both = Reply {
            mark: true,
            ..reply
        };
        let v = json(&both.rewrite(msg.as_bytes()).expect("rewritten"));
        assert_eq!(
            v["result"],
            serde_json::json!({"resultType": "complete", "x": 1})
        );
        assert_eq!(v["id"], 42);
        let error =
            format!(r#"{{"jsonrpc":"2.0","id":{sent},"error":{{"code":-1,"message":"m"}}}}"#);
        let v = json(&both.rewrite(error.as_bytes()).expect("rewritten"));
        assert_eq!(v["id"], 42);
        assert_eq!(v["error"]["code"], -1);
        let stranger = br#"{"jsonrpc":"2.0","id":"sluice-0","result":{}}"#;
        assert!(both.rewrite(stranger).is_none(), "another request's answer");
        let same = Reply {
            sent: "1",
            client: "1",
            mark: false,
        };
        assert!(same.is_identity());
    }
}
