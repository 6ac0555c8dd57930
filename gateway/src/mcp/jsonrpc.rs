//! Classification of client→server JSON-RPC messages into `RequestFacts`:
//! what is being asked (method, id, tool / resource / prompt), in which
//! protocol revision. Built once per request; policy, limits, audit and
//! metrics read it, nothing re-parses the body.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::revision::{decode_header_name, Revision};
use super::scan;
use super::shape::Shape;

/// A JSON-RPC id exactly as the client wrote it (`7`, `"abc"`), so errors and
/// matches use the client's own spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Box<str>);

impl RequestId {
    pub fn from_raw(raw: &str) -> Self {
        Self(raw.into())
    }
    /// The JSON text of the id, ready to embed in a response.
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// Is `raw` (an id as a server wrote it) this id? Compared by value, not
    /// text: `"\u0061"` is `"a"`, `1.0` is `1`. The usual echo is the same
    /// text and costs one comparison.
    pub fn same(&self, raw: &[u8]) -> bool {
        if self.0.as_bytes() == raw {
            return true;
        }
        let (Ok(a), Ok(b)) = (
            serde_json::from_str::<serde_json::Value>(&self.0),
            serde_json::from_slice::<serde_json::Value>(raw),
        ) else {
            return false;
        };
        match (&a, &b) {
            (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
                x == y || x.as_f64().is_some_and(|x| Some(x) == y.as_f64())
            }
            _ => a == b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// The client answering a server→client request (sampling, elicitation).
    Response,
}

/// MCP methods the gateway knows by name; anything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Initialize,
    Ping,
    ServerDiscover,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    PromptsList,
    PromptsGet,
    CompletionComplete,
    LoggingSetLevel,
    SubscriptionsListen,
    Initialized,
    Cancelled,
    Progress,
    RootsListChanged,
    Other(Box<str>),
    /// A response message has no method.
    None,
}

const KNOWN: [(&str, Method); 19] = [
    ("initialize", Method::Initialize),
    ("ping", Method::Ping),
    ("server/discover", Method::ServerDiscover),
    ("tools/list", Method::ToolsList),
    ("tools/call", Method::ToolsCall),
    ("resources/list", Method::ResourcesList),
    ("resources/templates/list", Method::ResourcesTemplatesList),
    ("resources/read", Method::ResourcesRead),
    ("resources/subscribe", Method::ResourcesSubscribe),
    ("resources/unsubscribe", Method::ResourcesUnsubscribe),
    ("prompts/list", Method::PromptsList),
    ("prompts/get", Method::PromptsGet),
    ("completion/complete", Method::CompletionComplete),
    ("logging/setLevel", Method::LoggingSetLevel),
    ("subscriptions/listen", Method::SubscriptionsListen),
    ("notifications/initialized", Method::Initialized),
    ("notifications/cancelled", Method::Cancelled),
    ("notifications/progress", Method::Progress),
    ("notifications/roots/list_changed", Method::RootsListChanged),
];

impl Method {
    pub fn parse(name: &str) -> Self {
        KNOWN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| Method::Other(name.into()))
    }

    /// The wire name.
    pub fn name(&self) -> &str {
        match self {
            Method::Other(n) => n,
            Method::None => "",
            m => KNOWN.iter().find(|(_, k)| k == m).map_or("", |(n, _)| n),
        }
    }

    /// A bounded metric label: known names, else `other`.
    pub fn as_label(&self) -> &str {
        match self {
            Method::Other(_) => "other",
            Method::None => "response",
            m => m.name(),
        }
    }

    /// Methods whose target name the 2026-07-28 `Mcp-Name` header mirrors.
    fn has_named_target(&self) -> bool {
        matches!(
            self,
            Method::ToolsCall | Method::ResourcesRead | Method::PromptsGet
        )
    }
}

/// What a `completion/complete` request completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Prompt,
    Resource,
}

/// One client→server message.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub method: Method,
    pub id: Option<RequestId>,
    /// Tool name (`tools/call`), resource URI (`resources/*`), prompt name
    /// (`prompts/get`).
    pub target: Option<Box<str>>,
    /// `completion/complete`: what `target` names (the prompt or the
    /// resource template being completed).
    pub reference: Option<RefKind>,
    /// Where `params.arguments` sits in the body, for later policy.
    pub arguments: Option<Range<usize>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28).
    pub revision: Option<Revision>,
}

/// Everything the gateway learnt from a request body.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub messages: Vec<Message>,
    pub batch: bool,
}

impl RequestFacts {
    /// The first message (every body has at least one).
    pub fn first(&self) -> &Message {
        &self.messages[0]
    }
    /// Ids of the requests in this body, whose responses the gateway awaits.
    pub fn request_ids(&self) -> impl Iterator<Item = &RequestId> {
        self.messages
            .iter()
            .filter(|m| m.kind == Kind::Request)
            .filter_map(|m| m.id.as_ref())
    }
}

/// Why a body was refused; each maps to one JSON-RPC error in `refusal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("JSON nested deeper than {limit}")]
    TooDeep { id: Option<RequestId>, limit: u32 },
    #[error("{what} longer than the gateway accepts")]
    TooLong {
        id: Option<RequestId>,
        what: &'static str,
    },
    #[error("parse error: {detail}")]
    Parse {
        id: Option<RequestId>,
        detail: String,
    },
    #[error("invalid request: {reason}")]
    Invalid {
        id: Option<RequestId>,
        reason: &'static str,
    },
    #[error("header mismatch: {reason}")]
    HeaderMismatch {
        id: Option<RequestId>,
        reason: String,
    },
}

impl ClassifyError {
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Self::TooDeep { id, .. }
            | Self::TooLong { id, .. }
            | Self::Parse { id, .. }
            | Self::Invalid { id, .. }
            | Self::HeaderMismatch { id, .. } => id.as_ref(),
        }
    }
}

/// A client message as the gateway reads it. Each known member is read at
/// most once and never in another case (`members`), so an upstream cannot
/// take another copy or spelling of it for the one that was decided on.
#[derive(Default)]
struct Wire<'a> {
    jsonrpc: Option<Text<'a>>,
    id: Option<&'a RawValue>,
    method: Option<Text<'a>>,
    params: Option<Shape<Params<'a>>>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

#[derive(Default)]
struct Params<'a> {
    name: Option<Text<'a>>,
    uri: Option<Text<'a>>,
    arguments: Option<&'a RawValue>,
    meta: Option<Meta<'a>>,
    /// `completion/complete`: the prompt or resource template completed.
    reference: Option<Ref<'a>>,
}

#[derive(Default)]
struct Meta<'a> {
    protocol_version: Option<Text<'a>>,
}

#[derive(Default)]
struct Ref<'a> {
    kind: Option<Text<'a>>,
    name: Option<Text<'a>>,
    uri: Option<Text<'a>>,
}

/// A string borrowed from the body when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Text<'_>> for Box<str> {
    fn from(t: Text<'_>) -> Box<str> {
        t.0.into()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `Deserialize` for a struct read through `members::read`: its member
/// names, and how each one's value is stored.
macro_rules! read_members {
    ($ty:ident, [$($name:literal => $field:ident),* $(,)?]) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $ty<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                    type Value = $ty<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        map: A,
                    ) -> Result<Self::Value, A::Error> {
                        const NAMES: &[&str] = &[$($name),*];
                        fn index(key: &str) -> Option<usize> {
                            let mut at = 0;
                            $(
                                if key == $name {
                                    return Some(at);
                                }
                                at += 1;
                            )*
                            let _ = at;
                            None
                        }
                        let known = super::members::Known { names: NAMES, index };
                        let mut out = $ty::default();
                        super::members::read(map, known, |i, map| {
                            let mut at = 0;
                            $(
                                if i == at {
                                    out.$field = map.next_value()?;
                                    return Ok(());
                                }
                                at += 1;
                            )*
                            let _ = at;
                            Ok(())
                        })?;
                        Ok(out)
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}

read_members!(Wire, [
    "jsonrpc" => jsonrpc,
    "id" => id,
    "method" => method,
    "params" => params,
    "result" => result,
    "error" => error,
]);
read_members!(Params, [
    "name" => name,
    "uri" => uri,
    "arguments" => arguments,
    "_meta" => meta,
    "ref" => reference,
]);
read_members!(Meta, ["io.modelcontextprotocol/protocolVersion" => protocol_version]);
read_members!(Ref, ["type" => kind, "name" => name, "uri" => uri]);

/// Classify a request body. `max_depth` caps JSON nesting before parsing.
pub fn classify(body: &[u8], max_depth: u32) -> Result<RequestFacts, ClassifyError> {
    classify_capped(body, scan::JsonCaps::depth_only(max_depth))
}

/// Classify a request body after checking its shape against `caps`.
pub fn classify_capped(body: &[u8], caps: scan::JsonCaps) -> Result<RequestFacts, ClassifyError> {
    if let Some(v) = scan::check(body, caps) {
        let id = scan::salvage_id(body).map(RequestId::from_raw);
        return Err(match v {
            scan::Violation::Depth => ClassifyError::TooDeep {
                id,
                limit: caps.depth,
            },
            scan::Violation::ArrayLen => ClassifyError::TooLong {
                id,
                what: "an array",
            },
            scan::Violation::StringLen => ClassifyError::TooLong {
                id,
                what: "a string",
            },
        });
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| ClassifyError::Parse {
            id: None,
            detail: "empty body".into(),
        })?;
    match body[start] {
        // The common case: one message, parsed in one pass from the body.
        b'{' => {
            let wire = serde_json::from_slice::<Wire>(body).map_err(|e| match e.classify() {
                serde_json::error::Category::Data => malformed(body, &e),
                _ => parse_error(body, e),
            })?;
            Ok(RequestFacts {
                messages: vec![message(body, wire)?],
                batch: false,
            })
        }
        b'[' => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| parse_error(body, e))?;
            if items.is_empty() {
                return Err(ClassifyError::Invalid {
                    id: None,
                    reason: "empty batch",
                });
            }
            let messages = items
                .into_iter()
                .map(|raw| message(body, batch_member(raw)?))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RequestFacts {
                messages,
                batch: true,
            })
        }
        _ => {
            serde_json::from_slice::<&RawValue>(body).map_err(|e| parse_error(body, e))?;
            Err(not_an_object())
        }
    }
}

fn not_an_object() -> ClassifyError {
    ClassifyError::Invalid {
        id: None,
        reason: "a message must be a JSON object",
    }
}

/// One batch member, already known to be valid JSON.
fn batch_member(raw: &RawValue) -> Result<Wire<'_>, ClassifyError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(not_an_object());
    }
    serde_json::from_str(text).map_err(|e| malformed(text.as_bytes(), &e))
}

/// Valid JSON that is not a well-formed message.
fn malformed(text: &[u8], e: &serde_json::Error) -> ClassifyError {
    ClassifyError::Invalid {
        id: scan::salvage_id(text).map(RequestId::from_raw),
        // serde reports duplicate members here: refuse them, an upstream
        // parser could read the other copy.
        reason: {
            let text = e.to_string();
            if text.contains("duplicate field") {
                "duplicate member"
            } else if text.contains(super::members::CASE_VARIANT) {
                super::members::CASE_VARIANT
            } else {
                "malformed message"
            }
        },
    }
}

fn parse_error(body: &[u8], e: serde_json::Error) -> ClassifyError {
    ClassifyError::Parse {
        id: scan::salvage_id(body).map(RequestId::from_raw),
        detail: e.to_string(),
    }
}

fn message<'a>(body: &'a [u8], wire: Wire<'a>) -> Result<Message, ClassifyError> {
    let id = match wire.id {
        None => None,
        Some(v) => {
            let t = v.get();
            let ok = t.starts_with('"') || t.starts_with('-') || t.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(ClassifyError::Invalid {
                    id: None,
                    reason: "id must be a string or a number",
                });
            }
            Some(RequestId::from_raw(t))
        }
    };
    if wire.jsonrpc.as_deref() != Some("2.0") {
        return Err(ClassifyError::Invalid {
            id,
            reason: "jsonrpc must be \"2.0\"",
        });
    }
    let Some(method_name) = wire.method else {
        if wire.result.is_some() || wire.error.is_some() {
            return Ok(Message {
                kind: Kind::Response,
                method: Method::None,
                id,
                target: None,
                reference: None,
                arguments: None,
                revision: None,
            });
        }
        return Err(ClassifyError::Invalid {
            id,
            reason: "no method, result or error",
        });
    };
    let method = Method::parse(&method_name);
    let kind = if id.is_some() {
        Kind::Request
    } else {
        Kind::Notification
    };
    let params = match wire.params {
        Some(Shape::Object(p)) => p,
        Some(Shape::Other) => return Err(params_not_object(id)),
        // `null` arrives as `None` (serde's `Option`): a named call then
        // fails below for naming nothing.
        Some(Shape::Null) | None => Params::default(),
    };
    let mut reference = None;
    let target = match method {
        Method::ToolsCall | Method::PromptsGet => params.name.map(|n| n.into()),
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            params.uri.map(|u| u.into())
        }
        Method::CompletionComplete => {
            let r = params.reference.unwrap_or_default();
            match r.kind.as_deref() {
                Some("ref/prompt") => {
                    reference = Some(RefKind::Prompt);
                    r.name.map(|n| n.into())
                }
                Some("ref/resource") => {
                    reference = Some(RefKind::Resource);
                    r.uri.map(|u| u.into())
                }
                _ => None,
            }
        }
        _ => None,
    };
    if method.has_named_target() && target.is_none() {
        return Err(ClassifyError::Invalid {
            id,
            reason: "the call names no tool, resource or prompt",
        });
    }
    // An `initialize` names the newest version the client would like, not
    // the one this message speaks: only `_meta` states a message's revision.
    let revision = params
        .meta
        .and_then(|m| m.protocol_version)
        .map(|v| Revision::parse(&v));
    Ok(Message {
        kind,
        method,
        id,
        target,
        reference,
        arguments: params.arguments.map(|a| span_in(body, a.get())),
        revision,
    })
}

fn params_not_object(id: Option<RequestId>) -> ClassifyError {
    ClassifyError::Invalid {
        id,
        reason: "params must be an object",
    }
}

/// Byte range of `part` (a slice of `body`) within `body`.
fn span_in(body: &[u8], part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    start..start + part.len()
}

/// The revision a request speaks: the `MCP-Protocol-Version` header wins,
/// then what the body's `_meta` says.
pub fn effective_revision(header: Option<&[u8]>, facts: &RequestFacts) -> Option<Revision> {
    header
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(Revision::parse)
        .or_else(|| facts.first().revision)
}

/// The 2026-07-28 rule: `Mcp-Method` (and `Mcp-Name` for named calls) must be
/// present and mirror the body. Headers sent under older revisions are
/// checked when present, never required.
pub fn check_mirrored_headers(
    facts: &RequestFacts,
    revision: Option<Revision>,
    mcp_method: Option<&[u8]>,
    mcp_name: Option<&[u8]>,
) -> Result<(), ClassifyError> {
    if facts.batch {
        return Ok(());
    }
    let msg = facts.first();
    if msg.kind == Kind::Response {
        return Ok(());
    }
    let required = revision.is_some_and(Revision::is_stateless);
    let mismatch = |reason: String| ClassifyError::HeaderMismatch {
        id: msg.id.clone(),
        reason,
    };
    match mcp_method {
        Some(h) if h != msg.method.name().as_bytes() => {
            return Err(mismatch(format!(
                "Mcp-Method header does not match the body's method `{}`",
                msg.method.name()
            )))
        }
        None if required => return Err(mismatch("Mcp-Method header is required".into())),
        _ => {}
    }
    if msg.method.has_named_target() {
        let target = msg.target.as_deref().unwrap_or_default();
        match mcp_name.map(decode_header_name) {
            Some(Some(name)) if name == target => {}
            Some(_) => {
                return Err(mismatch(
                    "Mcp-Name header does not match the body's name".into(),
                ))
            }
            None if required => return Err(mismatch("Mcp-Name header is required".into())),
            None => {}
        }
    }
    Ok(())
}
