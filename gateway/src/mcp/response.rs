//! Watches server→client messages as they stream (`application/json` or SSE)
//! and matches each response to its request by id, recording the outcome and
//! learning the tool catalog from `tools/list` results. Observation only:
//! the bytes the client receives are never delayed here.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::jsonrpc::{Method, RequestFacts, RequestId};
use super::probe::{Probe, ResultSeen, Seen};
use super::shape::Shape;
use super::skim;
use super::sse::SseParser;

/// How a request ended, as the server answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A `tools/call` result with `isError: true`.
    ToolError,
    /// A JSON-RPC error with this code.
    Error(i64),
}

impl Outcome {
    pub fn as_label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error(_) => "error",
        }
    }
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    method: Method,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
enum Mode {
    Off,
    Json {
        buf: Vec<u8>,
        overflow: bool,
        /// Past `keep`, a single message is read in passing.
        outline: Option<Box<Probe>>,
    },
    Sse(SseParser),
}

/// Bytes of one server message kept whole to read it. A larger message is
/// read in passing (`Probe`): its id and outcome, not its content, so a
/// slow client reading a huge answer holds no copy of it. Answers whose
/// content is read — a `tools/list` catalog, a JSON batch — are kept up to
/// `limits.max_inspected_response_bytes`.
const KEEP: usize = 64 * 1024;

#[derive(Debug)]
pub struct ResponseInspector {
    mode: Mode,
    pending: Vec<Pending>,
    max: usize,
    /// Bytes of one message kept whole (`KEEP`, or `max` for a catalog).
    keep: usize,
    /// Server→client requests and notifications seen, by method label.
    pub server_messages: Vec<Method>,
    /// Tools from a `tools/list` result, when one passed by.
    pub tools_seen: Option<Vec<ListedTool>>,
    /// Hash each listed tool's whole definition (approval rules bind to it).
    pub hash_definitions: bool,
    /// Messages that could not be parsed (counted, passed through).
    pub unparsed: u32,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<Shape<ResultProbe<'a>>>,
    #[serde(default)]
    error: Option<ReplyError>,
}

/// The members of a result the gateway looks at, read in the same pass as
/// the reply: the rest of a (possibly large) result is only skipped.
#[derive(Deserialize)]
struct ResultProbe<'a> {
    /// `tools/call`: `true` marks a tool error.
    #[serde(borrow, default, rename = "isError")]
    is_error: Option<&'a RawValue>,
    /// `tools/list`: the catalog.
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReplyError {
    #[serde(default)]
    code: i64,
}

#[derive(Deserialize)]
struct ToolName<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default, rename = "inputSchema")]
    input_schema: Option<Schema<'a>>,
}

#[derive(Deserialize)]
struct Schema<'a> {
    #[serde(borrow, default)]
    properties: Option<std::collections::BTreeMap<Cow<'a, str>, serde::de::IgnoredAny>>,
}

/// A tool as its upstream listed it: the name and its argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTool {
    pub name: Box<str>,
    /// Top-level properties of `inputSchema`; `None` if it declares none.
    pub arguments: Option<Vec<Box<str>>>,
    /// Canonical hash of the whole definition, when asked for.
    pub definition_hash: Option<Box<str>>,
}

impl ResponseInspector {
    /// An inspector that watches nothing (GET streams before their type is known).
    pub fn off() -> Self {
        Self {
            mode: Mode::Off,
            pending: Vec::new(),
            max: 0,
            keep: 0,
            server_messages: Vec::new(),
            tools_seen: None,
            hash_definitions: false,
            unparsed: 0,
        }
    }

    /// Start watching a response whose `Content-Type` is `content_type`,
    /// for the requests in `facts` (if any).
    pub fn start(&mut self, content_type: &[u8], facts: Option<&RequestFacts>, max: usize) {
        self.max = max;
        if let Some(facts) = facts {
            self.pending = facts
                .messages
                .iter()
                .filter(|m| m.kind == super::Kind::Request)
                .filter_map(|m| {
                    m.id.as_ref().map(|id| Pending {
                        id: id.clone(),
                        method: m.method.clone(),
                        outcome: None,
                    })
                })
                .collect();
        }
        let catalog = self.pending.iter().any(|p| p.method == Method::ToolsList);
        self.keep = if catalog { max } else { max.min(KEEP) };
        self.mode = if starts_with_ci(content_type, b"text/event-stream") {
            Mode::Sse(SseParser::reading_oversize(self.keep))
        } else if starts_with_ci(content_type, b"application/json") {
            Mode::Json {
                buf: Vec::new(),
                overflow: false,
                outline: None,
            }
        } else {
            Mode::Off
        };
    }

    /// Bytes held to read the response (its buffers' capacity).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        match &self.mode {
            Mode::Off => 0,
            Mode::Json { buf, outline, .. } => {
                buf.capacity() + outline.as_ref().map_or(0, |o| o.held())
            }
            Mode::Sse(parser) => parser.held(),
        }
    }

    pub fn is_sse(&self) -> bool {
        matches!(self.mode, Mode::Sse(_))
    }

    /// Watch the next body chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut mode = std::mem::replace(&mut self.mode, Mode::Off);
        match &mut mode {
            Mode::Off => {}
            Mode::Json {
                buf,
                overflow,
                outline,
            } => {
                if let Some(o) = outline {
                    o.feed(chunk);
                } else if *overflow {
                } else if buf.len() + chunk.len() > self.max {
                    *overflow = true;
                    *buf = Vec::new();
                } else if buf.len() + chunk.len() > self.keep && !is_batch(buf, chunk) {
                    let mut o = Box::new(Probe::new());
                    o.feed(buf);
                    o.feed(chunk);
                    *outline = Some(o);
                    *buf = Vec::new();
                } else {
                    buf.extend_from_slice(chunk);
                }
            }
            Mode::Sse(parser) => parser.feed(chunk, |ev| match ev.outline {
                Some(o) => self.outlined(o),
                None if !ev.oversize && !ev.data.is_empty() => self.message(ev.data),
                None => {}
            }),
        }
        self.mode = mode;
    }

    /// The body ended: settle a buffered JSON body.
    pub fn finish(&mut self) {
        if let Mode::Json {
            buf,
            overflow,
            outline,
        } = std::mem::replace(&mut self.mode, Mode::Off)
        {
            if let Some(o) = outline {
                self.outlined(&o);
            } else if !overflow && !buf.is_empty() {
                if buf.trim_ascii_start().starts_with(b"[") {
                    match serde_json::from_slice::<Vec<&RawValue>>(&buf) {
                        Ok(items) => items.iter().for_each(|m| self.message(m.get().as_bytes())),
                        Err(_) => self.unparsed += 1,
                    }
                } else {
                    self.message(&buf);
                }
            }
        }
    }

    /// Outcome of the request with this id, once its response passed by.
    pub fn outcome(&self, id: &RequestId) -> Option<Outcome> {
        self.pending
            .iter()
            .find(|p| &p.id == id)
            .and_then(|p| p.outcome)
    }

    /// Outcomes in request order (`None`: no response seen).
    pub fn outcomes(&self) -> impl Iterator<Item = (&RequestId, &Method, Option<Outcome>)> {
        self.pending.iter().map(|p| (&p.id, &p.method, p.outcome))
    }

    fn message(&mut self, data: &[u8]) {
        // The skim reads the usual message without a full parse; anything
        // unusual (escaped keys, duplicates, broken text) is parsed properly.
        let seen = match skim_reply(data) {
            Some(seen) => seen,
            None => match serde_json::from_slice::<Reply>(data) {
                Ok(reply) => Seen::from(reply),
                Err(_) => {
                    self.unparsed += 1;
                    return;
                }
            },
        };
        self.seen(seen);
    }

    /// A message too large to keep, as read in passing.
    fn outlined(&mut self, outline: &Probe) {
        match outline.seen() {
            Some(seen) => self.seen(seen),
            None => self.unparsed += 1,
        }
    }

    fn seen(&mut self, seen: Seen<'_>) {
        if let Some(m) = seen.method {
            if self.server_messages.len() < 64 {
                self.server_messages.push(Method::parse(&m));
            }
            return;
        }
        let Some(id) = seen.id else { return };
        let Some(p) = self.pending.iter_mut().find(|p| p.id.same(id)) else {
            return;
        };
        p.outcome = Some(match (seen.error_code, seen.result) {
            (Some(code), _) => Outcome::Error(code),
            (None, Some(r)) if p.method == Method::ToolsCall && r.is_error => Outcome::ToolError,
            (None, Some(r)) if p.method == Method::ToolsList => {
                let tools = r.tools.map(serde_json::from_slice::<Vec<&RawValue>>);
                if let Some(Ok(tools)) = tools {
                    let hash = self.hash_definitions;
                    let names = self.tools_seen.get_or_insert_with(Vec::new);
                    names.extend(tools.into_iter().filter_map(|raw| {
                        let t = serde_json::from_str::<ToolName>(raw.get()).ok()?;
                        let definition_hash = hash
                            .then(|| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
                            .flatten()
                            .map(|v| sluice_config::definition_digest(&v).into_boxed_str());
                        Some(ListedTool {
                            name: t.name.into(),
                            arguments: t
                                .input_schema
                                .and_then(|s| s.properties)
                                .map(|p| p.into_keys().map(Into::into).collect()),
                            definition_hash,
                        })
                    }));
                }
                Outcome::Ok
            }
            _ => Outcome::Ok,
        });
    }
}

impl<'a> From<Reply<'a>> for Seen<'a> {
    fn from(reply: Reply<'a>) -> Self {
        Seen {
            id: reply.id.map(|v| v.get().as_bytes()),
            method: reply.method,
            error_code: reply.error.map(|e| e.code),
            result: match reply.result {
                Some(Shape::Object(r)) => Some(ResultSeen {
                    is_error: r.is_error.is_some_and(|v| v.get().trim() == "true"),
                    tools: r.tools.map(|t| t.get().as_bytes()),
                }),
                _ => None,
            },
        }
    }
}

/// `Seen` by the skim, or `None` to have the message parsed.
fn skim_reply(data: &[u8]) -> Option<Seen<'_>> {
    let [id, method, result, error] =
        skim::pick(data, [&b"id"[..], b"method", b"result", b"error"])?;
    let method = match method {
        Some(m) => Some(Cow::Borrowed(skim::plain_str(m)?)),
        None => None,
    };
    let error_code = match error {
        Some(e) => Some(serde_json::from_slice::<ReplyError>(e).ok()?.code),
        None => None,
    };
    let result = match result {
        Some(r) if r.starts_with(b"{") => {
            let [is_error, tools] = skim::pick(r, [&b"isError"[..], b"tools"])?;
            Some(ResultSeen {
                is_error: is_error == Some(&b"true"[..]),
                tools,
            })
        }
        _ => None,
    };
    Some(Seen {
        id,
        method,
        error_code,
        result,
    })
}

/// Whether the JSON body starting with `a` then `b` is an array (a batch).
fn is_batch(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .chain(b)
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'[')
}

fn starts_with_ci(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}
