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
    pub fn read(text: &'a str) -> Option<RawMap<'a>> {
        match Self::skimmed(text) {
            Some(read) => read,
            None => serde_json::from_str(text).ok(),
        }
    }

    /// `None`: the walk cannot read it plainly; `Some(None)`: a key twice.
    fn skimmed(text: &'a str) -> Option<Option<RawMap<'a>>> {
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
        Some((!twice).then_some(RawMap(out)))
    }
}

/// A call's `params` as the client sent them.
pub struct CallParams<'a> {
    members: RawMap<'a>,
    /// `params.name`, when a string.
    pub name: Option<Cow<'a, str>>,
    /// Keep `_meta` whole (a source that speaks the client's stateless
    /// revision reads its protocol keys).
    keep_meta: bool,
}

impl<'a> CallParams<'a> {
    /// Read `body` (one JSON-RPC request); `Err` when it cannot be read one
    /// way.
    pub fn read(body: &'a [u8]) -> Result<Self, &'static str> {
        const UNREAD: &str = "params cannot be read one way";
        let text = std::str::from_utf8(body).map_err(|_| UNREAD)?;
        let members = match RawMap::read(text).ok_or(UNREAD)?.get("params") {
            Some(params) if params != "null" => RawMap::read(params).ok_or(UNREAD)?,
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
        Ok(CallParams {
            members,
            name,
            keep_meta: false,
        })
    }

    /// Forward `_meta` whole, protocol keys included.
    pub fn keeping_meta(mut self) -> Self {
        self.keep_meta = true;
        self
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
                "_meta" if !self.keep_meta => {
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
                _ if k == "_meta" && !self.keep_meta => push_meta(&mut out, v)?,
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
    let members = RawMap::read(raw).ok_or("ref cannot be read one way")?;
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

/// `_meta` without the keys that describe the client's hop
/// (`io.modelcontextprotocol/…`).
fn push_meta(out: &mut Vec<u8>, raw: &str) -> Result<(), &'static str> {
    let meta = RawMap::read(raw).ok_or("_meta cannot be read one way")?;
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

pub(crate) fn push_string(out: &mut Vec<u8>, s: &str) {
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
