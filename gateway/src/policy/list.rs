//! Filtering of `tools/list`, `resources/list`, `resources/templates/list`
//! and `prompts/list` results on their way back, so callers see only what
//! they may use. Only list responses are touched: JSON bodies are held to
//! their end, SSE streams only for the length of the event being rewritten.

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::sync::Arc;

use sluice_config::{Kind, Snapshot};

use super::Caller;
use crate::mcp::{Method, RequestId};

/// Is this a list method whose results are filtered?
pub fn is_list(method: &Method) -> bool {
    field(method).is_some()
}

/// Which array of the result to filter, and under which kind.
fn field(method: &Method) -> Option<(&'static str, &'static str, Kind)> {
    Some(match method {
        Method::ToolsList => ("tools", "name", Kind::Tools),
        Method::ResourcesList => ("resources", "uri", Kind::Resources),
        Method::ResourcesTemplatesList => ("resourceTemplates", "uriTemplate", Kind::Resources),
        Method::PromptsList => ("prompts", "name", Kind::Prompts),
        _ => return None,
    })
}

pub struct ListFilter {
    id: RequestId,
    array: &'static str,
    key: &'static str,
    kind: Kind,
    upstream: String,
    roles: Vec<Box<str>>,
    snap: Arc<Snapshot>,
    sse: bool,
    held: BytesMut,
    /// Items removed, for metrics.
    pub removed: usize,
}

impl ListFilter {
    /// A filter for a list request, or `None` for anything else.
    pub fn new(
        method: &Method,
        id: &RequestId,
        upstream: &str,
        caller: &Caller,
        snap: Arc<Snapshot>,
    ) -> Option<Self> {
        let (array, key, kind) = field(method)?;
        Some(Self {
            id: id.clone(),
            array,
            key,
            kind,
            upstream: upstream.to_owned(),
            roles: caller.roles.clone(),
            snap,
            sse: false,
            held: BytesMut::new(),
            removed: 0,
        })
    }

    pub fn set_sse(&mut self, sse: bool) {
        self.sse = sse;
    }

    /// Pass a body chunk; returns the bytes to send now.
    pub fn process(&mut self, chunk: Option<Bytes>, end: bool) -> Option<Bytes> {
        if let Some(c) = chunk {
            self.held.extend_from_slice(&c);
        }
        if !self.sse {
            if !end {
                return None;
            }
            let body = self.held.split().freeze();
            return Some(self.rewrite_json(&body).map_or(body, Bytes::from));
        }
        let mut out = BytesMut::new();
        while let Some(len) = crate::mcp::legacy::event_len(&self.held) {
            let event = self.held.split_to(len);
            match self.rewrite_event(&event) {
                Some(e) => out.extend_from_slice(e.as_bytes()),
                None => out.extend_from_slice(&event),
            }
        }
        if end {
            out.extend_from_slice(&self.held.split());
        }
        (!out.is_empty() || end).then(|| out.freeze())
    }

    /// The filtered JSON text, if `data` is this request's list response.
    fn rewrite_json(&mut self, data: &[u8]) -> Option<String> {
        let mut v: Value = serde_json::from_slice(data).ok()?;
        let id = serde_json::to_string(v.get("id")?).ok()?;
        if id != self.id.raw() {
            return None;
        }
        let items = v.get_mut("result")?.get_mut(self.array)?.as_array_mut()?;
        let before = items.len();
        let roles = self.roles.iter().map(|r| &**r);
        let (policy, kind, upstream, key) = (
            &self.snap.policy,
            self.kind,
            self.upstream.as_str(),
            self.key,
        );
        items.retain(|item| {
            item.get(key)
                .and_then(Value::as_str)
                .is_some_and(|name| policy.visible(roles.clone(), kind, upstream, name))
        });
        self.removed += before - items.len();
        serde_json::to_string(&v).ok()
    }

    fn rewrite_event(&mut self, event: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(event).ok()?;
        let mut data = String::new();
        let mut others = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if !line.is_empty() {
                others.push(line);
            }
        }
        let rewritten = self.rewrite_json(data.as_bytes())?;
        let mut out = String::with_capacity(rewritten.len() + 64);
        for l in others {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&rewritten);
        out.push_str("\n\n");
        Some(out)
    }
}
