//! A federated call's request, read and rewritten without re-serialising
//! what the gateway does not change: `params` is read one level deep (its
//! values kept as the client's raw JSON), the name and — where overrides
//! apply — the arguments replaced, the protocol keys of `_meta` left out,
//! and the rest written back byte for byte. A key given twice in `params`
//! or `_meta` is refused: the gateway and the upstream could read different
//! copies.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// An object's members, in order, values raw (JSON text). Duplicate keys
/// are an error.
pub struct RawMap<'a>(pub Vec<(Cow<'a, str>, &'a str)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawMap<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<RawMap<'a>, M::Error> {
                let mut out: Vec<(Cow<'a, str>, &'a str)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<Cow<'a, str>, &'a RawValue>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom("a key given twice"));
                    }
                    out.push((k, v.get()));
                }
                Ok(RawMap(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> RawMap<'a> {
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The members of the object `text`, read strictly: walked with
    /// `memchr` (`mcp::skim`) where the text reads plainly — keys without
    /// escapes, a structure the walk follows — else parsed. For text that
    /// is valid JSON (a request admission has parsed) both read the same.
    pub fn read(text: &'a str) -> Result<RawMap<'a>, ()> {
        match Self::skimmed(text) {
            Some(read) => read,
            None => serde_json::from_str(text).map_err(drop),
        }
    }

    fn skimmed(text: &'a str) -> Option<Result<RawMap<'a>, ()>> {
        let base = text.as_ptr() as usize;
        let slice = |b: &[u8]| {
            let at = b.as_ptr() as usize - base;
            text.get(at..at + b.len())
        };
        let mut out: Vec<(Cow<'a, str>, &'a str)> = Vec::new();
        let mut twice = false;
        let mut lost = false;
        crate::mcp::skim::members(text.as_bytes(), |k, v| match (slice(k), slice(v)) {
            (Some(k), Some(v)) => {
                twice |= out.iter().any(|(seen, _)| seen == k);
                out.push((Cow::Borrowed(k), v));
            }
            _ => lost = true,
        })?;
        if lost {
            return None;
        }
        Some(if twice { Err(()) } else { Ok(RawMap(out)) })
    }
}

/// A call's `params` as the client sent them.
pub struct CallParams<'a> {
    members: RawMap<'a>,
    /// `params.name`, when a string.
    pub name: Option<Cow<'a, str>>,
}

impl<'a> CallParams<'a> {
    /// Read `body` (one JSON-RPC request); `Err` when it cannot be read one
    /// way.
    pub fn read(body: &'a [u8]) -> Result<Self, &'static str> {
        const UNREAD: &str = "params cannot be read one way";
        let text = std::str::from_utf8(body).map_err(|_| UNREAD)?;
        let members = match RawMap::read(text).map_err(|()| UNREAD)?.get("params") {
            Some(params) if params != "null" => RawMap::read(params).map_err(|()| UNREAD)?,
            _ => RawMap(Vec::new()),
        };
        let name = match members.get("name") {
            Some(raw) => match crate::mcp::skim::plain_str(raw.as_bytes()) {
                Some(plain) => Some(Cow::Borrowed(plain)),
                None => Some(
                    serde_json::from_str::<Cow<'a, str>>(raw)
                        .map_err(|_| "the name is not a string")?,
                ),
            },
            None => None,
        };
        Ok(CallParams { members, name })
    }

    /// A member of `params`, raw.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.members.get(key)
    }

    /// The request the source gets: `method` with `params.name` = `name`,
    /// `params.arguments` = `arguments` (raw JSON; `None`: left out), the
    /// other members as sent except the protocol keys of `_meta`. `id` is
    /// the request's id, raw.
    pub fn forward(
        &self,
        id: &str,
        method: &str,
        name: &str,
        arguments: Option<&str>,
    ) -> Result<Vec<u8>, &'static str> {
        let mut out =
            Vec::with_capacity(256 + self.members.0.iter().map(|(_, v)| v.len()).sum::<usize>());
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(br#","method":"#);
        push_string(&mut out, method);
        out.extend_from_slice(br#","params":{"name":"#);
        push_string(&mut out, name);
        if let Some(a) = arguments {
            out.extend_from_slice(br#","arguments":"#);
            out.extend_from_slice(a.as_bytes());
        }
        for (k, v) in &self.members.0 {
            match k.as_ref() {
                "name" | "arguments" => continue,
                "_meta" => {
                    out.push(b',');
                    push_string(&mut out, "_meta");
                    out.push(b':');
                    push_meta(&mut out, v)?;
                }
                _ => {
                    out.push(b',');
                    push_string(&mut out, k);
                    out.push(b':');
                    out.extend_from_slice(v.as_bytes());
                }
            }
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

impl CallParams<'_> {
    /// The request with `params` as sent, but for the protocol keys of
    /// `_meta` (a resource is read by its URI, which is not rewritten).
    pub fn forward_as_sent(&self, id: &str, method: &str) -> Result<Vec<u8>, &'static str> {
        self.forward_replacing(id, method, None)
    }

    /// The request with one member of `params` replaced by raw JSON.
    pub fn forward_replacing(
        &self,
        id: &str,
        method: &str,
        replace: Option<(&str, &str)>,
    ) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(br#","method":"#);
        push_string(&mut out, method);
        out.extend_from_slice(br#","params":{"#);
        for (n, (k, v)) in self.members.0.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            push_string(&mut out, k);
            out.push(b':');
            match replace {
                Some((key, raw)) if key == k => out.extend_from_slice(raw.as_bytes()),
                _ if k == "_meta" => push_meta(&mut out, v)?,
                _ => out.extend_from_slice(v.as_bytes()),
            }
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

/// A completion's `ref` with its prompt `name` replaced (the other members
/// as sent), as raw JSON.
pub fn ref_renamed(raw: &str, name: &str) -> Result<String, &'static str> {
    let members = RawMap::read(raw).map_err(|()| "ref cannot be read one way")?;
    let mut out = Vec::with_capacity(raw.len() + name.len());
    out.push(b'{');
    push_string(&mut out, "name");
    out.push(b':');
    push_string(&mut out, name);
    for (k, v) in members.0.iter().filter(|(k, _)| k != "name") {
        out.push(b',');
        push_string(&mut out, k);
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'}');
    String::from_utf8(out).map_err(|_| "ref cannot be read one way")
}

/// A response message to the request `id` (raw) with its result marked
/// `resultType: "complete"`, as the stateless revision's clients expect of a
/// 2025 source's answer; `None` when `msg` is not that response (or its
/// result says already). The members are written back as sent.
pub fn mark_complete(msg: &[u8], id: &serde_json::Value) -> Option<Vec<u8>> {
    match mark_complete_skimmed(msg, id) {
        Skimmed::Marked(out) => Some(out),
        Skimmed::Not => None,
        Skimmed::Unsure => mark_complete_parsed(msg, id),
    }
}

enum Skimmed {
    Marked(Vec<u8>),
    /// Not the response to `id`.
    Not,
    /// Not one plain reading: the full parse decides.
    Unsure,
}

/// `mark_complete` over the message's top-level members walked with
/// `memchr` (`mcp::skim`), the member inserted at the head of `result` in
/// one copy; anything the walk cannot read plainly — a duplicate member, a
/// result that mentions `resultType`, escapes — is left to the full parse.
fn mark_complete_skimmed(msg: &[u8], id: &serde_json::Value) -> Skimmed {
    let Some([Some(got), result]) = crate::mcp::skim::pick(msg, [b"id", b"result"]) else {
        return Skimmed::Unsure;
    };
    let same = match (crate::mcp::skim::plain_str(got), id) {
        (Some(s), serde_json::Value::String(want)) => s == want,
        (None, serde_json::Value::Number(n)) if got.first().is_some_and(u8::is_ascii_digit) => {
            std::str::from_utf8(got).is_ok_and(|g| g == n.to_string())
        }
        _ => return Skimmed::Unsure,
    };
    let Some(result) = result else {
        return Skimmed::Not;
    };
    if !same {
        return Skimmed::Not;
    }
    if result.first() != Some(&b'{') || memchr::memmem::find(result, b"resultType").is_some() {
        return Skimmed::Unsure;
    }
    // `result` is a slice of `msg`: its '{' is at this offset.
    let at = result.as_ptr() as usize - msg.as_ptr() as usize;
    let empty = result[1..]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
    let mut out = Vec::with_capacity(msg.len() + 24);
    out.extend_from_slice(&msg[..=at]);
    out.extend_from_slice(br#""resultType":"complete""#);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&msg[at + 1..]);
    Skimmed::Marked(out)
}

fn mark_complete_parsed(msg: &[u8], id: &serde_json::Value) -> Option<Vec<u8>> {
    let members: RawMap<'_> = serde_json::from_slice(msg).ok()?;
    let same_id = members
        .get("id")
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
        .is_some_and(|v| v == *id);
    let result = members.get("result")?;
    if !same_id {
        return None;
    }
    let raw = result;
    // Only a result that mentions `resultType` anywhere is read member by
    // member to see whether it says it already (2025 results never do).
    if memchr::memmem::find(raw.as_bytes(), b"\"resultType\"").is_some() {
        let inner: RawMap<'_> = serde_json::from_str(raw).ok()?;
        if inner.get("resultType").is_some() {
            return None;
        }
    }
    let body = raw.trim_start().strip_prefix('{')?.trim_start();
    let mut out = Vec::with_capacity(msg.len() + 32);
    out.push(b'{');
    for (n, (k, v)) in members.0.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_string(&mut out, k);
        out.push(b':');
        if k == "result" {
            out.extend_from_slice(br#"{"resultType":"complete""#);
            if !body.starts_with('}') {
                out.push(b',');
            }
            out.extend_from_slice(body.as_bytes());
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
    out.push(b'}');
    Some(out)
}

/// `_meta` without the keys that describe the client's hop
/// (`io.modelcontextprotocol/…`).
fn push_meta(out: &mut Vec<u8>, raw: &str) -> Result<(), &'static str> {
    let meta = RawMap::read(raw).map_err(|()| "_meta cannot be read one way")?;
    out.push(b'{');
    let mut first = true;
    for (k, v) in meta
        .0
        .iter()
        .filter(|(k, _)| !k.starts_with("io.modelcontextprotocol/"))
    {
        if !first {
            out.push(b',');
        }
        first = false;
        push_string(out, k);
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out.push(b'}');
    Ok(())
}

fn push_string(out: &mut Vec<u8>, s: &str) {
    // A JSON string of `s`: serde_json writes it escaped.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_forwarded_with_its_new_name_and_the_rest_as_sent() {
        let body = br#"{"jsonrpc":"2.0","id":"a\"1","method":"tools/call","params":{"name":"gh_get","arguments":{"x":[1, 2]},"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28"},"task":{"ttl":5}}}"#;
        let p = CallParams::read(body).expect("read");
        assert_eq!(p.name.as_deref(), Some("gh_get"));
        let args = p.get("arguments");
        assert_eq!(args, Some(r#"{"x":[1, 2]}"#), "raw, as sent");
        let out = p
            .forward(r#""a\"1""#, "tools/call", "get", args)
            .expect("forward");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc": "2.0", "id": "a\"1", "method": "tools/call",
                "params": {"name": "get", "arguments": {"x": [1, 2]},
                           "_meta": {"progressToken": 7}, "task": {"ttl": 5}}})
        );
        let none = p.forward("1", "tools/call", "get", None).expect("forward");
        let v: serde_json::Value = serde_json::from_slice(&none).expect("JSON");
        assert!(v["params"].get("arguments").is_none());
    }

    #[test]
    fn a_result_is_marked_complete_and_the_rest_left_as_sent() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a\"b"}],"isError":false}}"#;
        let out = mark_complete(msg, &serde_json::json!(7)).expect("marked");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["content"][0]["text"], "a\"b");
        assert_eq!(v["id"], 7);
        assert!(
            mark_complete(msg, &serde_json::json!(8)).is_none(),
            "another id"
        );
        let already = br#"{"id":7,"result":{"resultType":"complete"}}"#;
        assert!(mark_complete(already, &serde_json::json!(7)).is_none());
        let empty =
            mark_complete(br#"{"id":7,"result":{ }}"#, &serde_json::json!(7)).expect("marked");
        let v: serde_json::Value = serde_json::from_slice(&empty).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({"id": 7, "result": {"resultType": "complete"}})
        );
        let named = br#"{"id":"a-1","result":{"x":1}}"#;
        let v: serde_json::Value = serde_json::from_slice(
            &mark_complete(named, &serde_json::json!("a-1")).expect("marked"),
        )
        .expect("JSON");
        assert_eq!(
            v["result"],
            serde_json::json!({"resultType": "complete", "x": 1})
        );
        let twice = br#"{"id":7,"result":{"x":1},"result":{"y":2}}"#;
        assert!(
            mark_complete(twice, &serde_json::json!(7)).is_none(),
            "two results: not one reading"
        );
        let escaped = br#"{"id":"a-1","result":{}}"#;
        assert!(
            mark_complete(escaped, &serde_json::json!("a-1")).is_some(),
            "an escaped id is compared by the full parse"
        );
        let nested = br#"{"id":7,"result":{"x":{"resultType":1}}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&mark_complete(nested, &serde_json::json!(7)).expect("marked"))
                .expect("JSON");
        assert_eq!(
            v["result"]["resultType"], "complete",
            "a nested key is not the result's"
        );
        let note = br#"{"method":"notifications/progress","params":{}}"#;
        assert!(mark_complete(note, &serde_json::json!(7)).is_none());
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let twice = br#"{"params":{"name":"a","name":"b"}}"#;
        assert!(CallParams::read(twice).is_err());
        let escaped = br#"{"params":{"name":"a","n\u0061me":"b"}}"#;
        assert!(CallParams::read(escaped).is_err(), "the same key, escaped");
        let top = br#"{"params":{"name":"a"},"params":{"name":"b"}}"#;
        assert!(CallParams::read(top).is_err());
        let meta = br#"{"params":{"name":"a","_meta":{"k":1,"k":2}}}"#;
        let p = CallParams::read(meta).expect("params are fine");
        assert!(p.forward("1", "tools/call", "a", None).is_err());
        assert!(CallParams::read(br#"{"params":{"name":7}}"#).is_err());
        let escaped = CallParams::read(br#"{"params":{"na\u006de":"x"}}"#).expect("read");
        assert_eq!(
            escaped.name.as_deref(),
            Some("x"),
            "an escaped key is the same key"
        );
    }
}
