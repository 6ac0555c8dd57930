//! Filtering of list results (`tools`, `resources`, `resourceTemplates`,
//! `prompts`) on their way back, so callers see only what they may use.
//!
//! A filter reads every server message of the stream it watches and
//! filters by what a message *is*, never by which request it answers: an
//! answer matched to its request by id text passed unfiltered when the
//! upstream spelt the id another way, and a stream that is not a list
//! request's answer (a `GET` stream, its `Last-Event-ID` replay, the legacy
//! transport's stream) can carry list results too. A message the filter
//! cannot read one way (malformed, a key twice, bigger than the inspection
//! cap) is withheld and answered with an error carrying its id: a list is
//! never passed unfiltered.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use std::sync::Arc;

use sluice_config::{fold::fold_eq, Kind, Snapshot};

use super::decide::Decide;
use super::Caller;
use crate::mcp::Method;

/// The array of a list result, the member naming each item, its kind.
type Field = (&'static str, &'static str, Kind);

const TOOLS: Field = ("tools", "name", Kind::Tools);
const RESOURCES: Field = ("resources", "uri", Kind::Resources);
const TEMPLATES: Field = ("resourceTemplates", "uriTemplate", Kind::Resources);
const PROMPTS: Field = ("prompts", "name", Kind::Prompts);
const ALL: &[Field] = &[TOOLS, RESOURCES, TEMPLATES, PROMPTS];

/// Is this a list method whose results are filtered?
pub fn is_list(method: &Method) -> bool {
    fields(method).is_some()
}

fn fields(method: &Method) -> Option<&'static [Field]> {
    Some(match method {
        Method::ToolsList => &ALL[0..1],
        Method::ResourcesList => &ALL[1..2],
        Method::ResourcesTemplatesList => &ALL[2..3],
        Method::PromptsList => &ALL[3..4],
        _ => return None,
    })
}

pub struct ListFilter {
    fields: &'static [Field],
    upstream: String,
    roles: Vec<Box<str>>,
    snap: Arc<Snapshot>,
    sse: bool,
    held: BytesMut,
    /// Most bytes of one message held for reading.
    max: usize,
    /// Inside an SSE event that passed `max`: dropped to its end.
    skipping: bool,
    /// An event was read already (a byte order mark counts only first).
    started: bool,
    /// Items removed, for metrics.
    pub removed: usize,
    /// Messages withheld because they could not be read one way.
    pub withheld: usize,
}

/// What becomes of one message.
enum Rewrite {
    Unchanged,
    Filtered(String),
    /// Withheld; the id to answer, if one could be found.
    Unreadable(Option<String>),
}

impl ListFilter {
    /// A filter for the answer to a list request, or `None` for any other
    /// method.
    pub fn for_answer(
        method: &Method,
        upstream: &str,
        caller: &Caller,
        snap: Arc<Snapshot>,
    ) -> Option<Self> {
        Some(Self::new(fields(method)?, upstream, caller, snap))
    }

    /// A filter for a server→client stream that is no request's answer:
    /// every kind of list result in it is filtered.
    pub fn for_stream(upstream: &str, caller: &Caller, snap: Arc<Snapshot>) -> Self {
        Self::new(ALL, upstream, caller, snap)
    }

    fn new(fields: &'static [Field], upstream: &str, caller: &Caller, snap: Arc<Snapshot>) -> Self {
        let max = usize::try_from(snap.max_inspected_response_bytes).unwrap_or(usize::MAX);
        Self {
            fields,
            upstream: upstream.to_owned(),
            roles: caller.roles.clone(),
            snap,
            sse: false,
            held: BytesMut::new(),
            max,
            skipping: false,
            started: false,
            removed: 0,
            withheld: 0,
        }
    }

    pub fn set_sse(&mut self, sse: bool) {
        self.sse = sse;
    }

    /// Pass a body chunk; returns the bytes to send now.
    pub fn process(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            if !self.sse && self.held.len() + c.len() > self.max {
                // A JSON answer past the cap cannot be read: answered below.
                self.skipping = true;
                self.held.clear();
            } else {
                self.held.extend_from_slice(&c);
            }
        }
        if !self.sse {
            if !end {
                return None;
            }
            let body = self.held.split().freeze();
            let rewrite = if self.skipping {
                Rewrite::Unreadable(None)
            } else {
                self.rewrite(&body)
            };
            return Some(match rewrite {
                Rewrite::Unchanged => body,
                Rewrite::Filtered(text) => Bytes::from(text),
                Rewrite::Unreadable(id) => self.withhold(id, false),
            });
        }
        let mut out = BytesMut::new();
        loop {
            if self.skipping {
                match crate::mcp::legacy::event_len(&self.held) {
                    Some(len) => {
                        let _ = self.held.split_to(len);
                        self.skipping = false;
                    }
                    None => {
                        // Keep only what a boundary split across chunks needs.
                        let keep = self.held.len().min(3);
                        let _ = self.held.split_to(self.held.len() - keep);
                        break;
                    }
                }
            }
            let Some(len) = crate::mcp::legacy::event_len(&self.held) else {
                if self.held.len() > self.max {
                    let id = crate::mcp::scan::salvage_id(&self.held).map(str::to_owned);
                    out.extend_from_slice(&self.withhold(id, true));
                    self.skipping = true;
                    continue;
                }
                break;
            };
            let event = self.held.split_to(len);
            match self.rewrite_event(&event) {
                Some(e) => out.extend_from_slice(&e),
                None => out.extend_from_slice(&event),
            }
        }
        if end && !self.skipping {
            // An unfinished last event: read it as a whole one.
            let rest = self.held.split();
            if !rest.is_empty() {
                match self.rewrite_event(&rest) {
                    Some(e) => out.extend_from_slice(&e),
                    None => out.extend_from_slice(&rest),
                }
            }
        }
        (!out.is_empty() || end).then(|| out.freeze())
    }

    /// The error sent in place of a message that could not be read.
    fn withhold(&mut self, id: Option<String>, sse: bool) -> Bytes {
        self.withheld += 1;
        tracing::warn!(
            upstream = %self.upstream,
            "an upstream message that may carry a list could not be read one way; withheld"
        );
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"the upstream's answer could not be read and was withheld"}}}}"#,
            id.as_deref().unwrap_or("null")
        );
        match (sse, id) {
            (false, _) => Bytes::from(body),
            (true, Some(_)) => Bytes::from(format!("event: message\ndata: {body}\n\n")),
            (true, None) => Bytes::new(),
        }
    }

    /// The event to send instead of `event`, if it changes.
    fn rewrite_event(&mut self, event: &[u8]) -> Option<Bytes> {
        let mut lines = sse_lines(event);
        // A client drops one byte order mark at the start of a stream.
        if !std::mem::replace(&mut self.started, true) {
            if let Some(first) = lines.first_mut() {
                *first = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first);
            }
        }
        let mut data = Vec::new();
        let mut has_data = false;
        for line in &lines {
            if let Some(d) = field_value(line, b"data") {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(d);
                has_data = true;
            }
        }
        // Events of every type are read (a client may read any event's
        // data). Data that does not open a JSON object or array (the legacy
        // transport's `endpoint`) is no message a list is read from.
        let opens = data
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .is_some_and(|b| matches!(b, b'{' | b'['));
        if !has_data || !opens {
            return None;
        }
        let rewritten = match self.rewrite(&data) {
            Rewrite::Unchanged => return None,
            Rewrite::Filtered(text) => text,
            Rewrite::Unreadable(id) => return Some(self.withhold(id, true)),
        };
        let mut out = Vec::with_capacity(rewritten.len() + 64);
        for line in lines
            .iter()
            .filter(|l| !l.is_empty() && field_value(l, b"data").is_none())
        {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(rewritten.as_bytes());
        out.extend_from_slice(b"\n\n");
        Some(Bytes::from(out))
    }

    /// One JSON-RPC message (or a batch of them).
    fn rewrite(&mut self, data: &[u8]) -> Rewrite {
        let Some(mut v) = super::strict::parse(data) else {
            return Rewrite::Unreadable(crate::mcp::scan::salvage_id(data).map(str::to_owned));
        };
        let before = self.removed;
        let ok = match &mut v {
            Value::Array(items) => items.iter_mut().all(|m| self.filter_message(m)),
            m => self.filter_message(m),
        };
        if !ok {
            return Rewrite::Unreadable(crate::mcp::scan::salvage_id(data).map(str::to_owned));
        }
        if self.removed == before {
            return Rewrite::Unchanged;
        }
        match serde_json::to_string(&v) {
            Ok(text) => Rewrite::Filtered(text),
            Err(_) => Rewrite::Unreadable(None),
        }
    }

    /// Filter the list arrays of one message's result, in every spelling
    /// a case-insensitive client would read. `false`: it cannot be read one
    /// way.
    fn filter_message(&mut self, msg: &mut Value) -> bool {
        let Value::Object(msg) = msg else {
            return true;
        };
        let mut ok = true;
        for (_, result) in msg.iter_mut().filter(|(k, _)| fold_eq(k, "result")) {
            let Value::Object(result) = result else {
                continue;
            };
            for &(array, key, kind) in self.fields {
                for (_, items) in result.iter_mut().filter(|(k, _)| fold_eq(k, array)) {
                    let Value::Array(items) = items else {
                        ok = false;
                        continue;
                    };
                    let before = items.len();
                    let roles = self.roles.iter().map(|r| &**r);
                    let (policy, upstream) = (&self.snap.policy, self.upstream.as_str());
                    items.retain(|item| {
                        item_name(item, key)
                            .is_some_and(|name| policy.visible(roles.clone(), kind, upstream, name))
                    });
                    self.removed += before - items.len();
                }
            }
        }
        ok
    }
}

/// The item's name: the one member that is `key` under case folding, a
/// string. Anything else (absent, twice, not a string) names nothing.
fn item_name<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    let item: &Map<String, Value> = item.as_object()?;
    let mut found = item.iter().filter(|(k, _)| fold_eq(k, key));
    let (_, name) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    name.as_str()
}

/// The lines of one SSE event, split as the spec splits them: at CRLF, LF
/// or a lone CR.
fn sse_lines(event: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = event;
    while let Some(i) = memchr::memchr2(b'\n', b'\r', rest) {
        out.push(&rest[..i]);
        let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[i + skip..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The value of field `name` on this line, as an SSE client reads it.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let v = rest.strip_prefix(b":")?;
    Some(v.strip_prefix(b" ").unwrap_or(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Arc<Snapshot> {
        let yaml = format!(
            "listeners: [{{ name: main, address: \"127.0.0.1:0\" }}]\n\
             upstreams: [{{ name: demo, url: \"http://127.0.0.1:1\" }}]\n\
             routes: [{{ name: demo, path: /mcp, upstream: demo }}]\n\
             identity: {{ audience: a, api_keys: [{{ id: k, sha256: \"{key}\", subject: s, roles: [r] }}] }}\n\
             roles: [{{ name: r, allow: [\"tools:demo/echo:call\", \"prompts:demo/ok:get\"] }}]\n",
            key = "0".repeat(64)
        );
        Arc::new(sluice_config::load(&yaml, 1).expect("config"))
    }

    fn caller() -> Caller {
        Caller {
            subject: "s".into(),
            tenant: None,
            roles: vec!["r".into()],
            anonymous: false,
        }
    }

    fn run(f: &mut ListFilter, chunks: &[&str]) -> String {
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len();
            if let Some(b) = f.process(Some(Bytes::from(c.to_string())), end) {
                out.extend_from_slice(&b);
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    const LIST: &str =
        r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"echo"},{"name":"secret"}]}}"#;

    #[test]
    fn a_list_is_filtered_whatever_id_it_carries() {
        let mut f = ListFilter::for_answer(&Method::ToolsList, "demo", &caller(), snap())
            .expect("a list method");
        let out = run(&mut f, &[LIST]);
        assert!(out.contains("echo") && !out.contains("secret"), "{out}");
        let other = LIST.replace(r#""a""#, r#""\u0062""#);
        let mut f = ListFilter::for_answer(&Method::ToolsList, "demo", &caller(), snap())
            .expect("a list method");
        let out = run(&mut f, &[&other]);
        assert!(!out.contains("secret"), "{out}");
    }

    #[test]
    fn a_stream_filters_every_kind_in_every_spelling() {
        let mut f = ListFilter::for_stream("demo", &caller(), snap());
        f.set_sse(true);
        let events = [
            format!("id: 1\nevent: message\ndata: {LIST}\n\n"),
            "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"Result\":{\"Prompts\":[{\"Name\":\"ok\"},{\"name\":\"hidden\"}]}}\r\r".into(),
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n".into(),
        ];
        let text: Vec<&str> = events.iter().map(String::as_str).collect();
        // Split anywhere: the same out.
        let whole = run(&mut f, &[&text.concat()]);
        assert!(
            whole.contains("echo") && whole.contains("\"ok\""),
            "{whole}"
        );
        assert!(
            !whole.contains("secret") && !whole.contains("hidden"),
            "{whole}"
        );
        assert!(whole.contains("id: 1\nevent: message\n"), "{whole}");
        assert!(whole.contains("notifications/progress"), "{whole}");
        let joined = text.concat();
        let (a, b) = joined.split_at(37);
        let mut f = ListFilter::for_stream("demo", &caller(), snap());
        f.set_sse(true);
        assert_eq!(run(&mut f, &[a, b]), whole);
    }

    #[test]
    fn what_cannot_be_read_one_way_is_withheld_with_its_id() {
        let dup = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}]},"result":{"tools":[{"name":"secret"}]}}"#;
        let mut f = ListFilter::for_answer(&Method::ToolsList, "demo", &caller(), snap())
            .expect("a list method");
        let out = run(&mut f, &[dup]);
        assert!(out.contains(r#""id":7"#) && out.contains("-32603"), "{out}");
        assert!(!out.contains("secret"), "{out}");
        assert_eq!(f.withheld, 1);
        let mut f = ListFilter::for_stream("demo", &caller(), snap());
        f.set_sse(true);
        f.max = 64;
        let out = run(
            &mut f,
            &[&format!("data: {LIST}\n\n"), "data: {\"id\":3}\n\n"],
        );
        assert!(!out.contains("secret"), "{out}");
        assert!(
            out.contains(r#""id":"a""#) && out.contains(r#"{"id":3}"#),
            "{out}"
        );
    }
}
