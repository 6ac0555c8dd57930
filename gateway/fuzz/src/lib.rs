//! The bodies of Sluice's fuzz targets, one `pub fn <target>(&[u8])` each.
//!
//! The same file serves two builds: the cargo-fuzz crate around it
//! (`gateway/fuzz`, libFuzzer, `cargo +nightly fuzz run <target>`) and the
//! workspace's integration test `gateway/tests/fuzz_corpus.rs`, which
//! includes it with `#[path]` and replays every committed corpus file
//! through the same body as an ordinary test. So this file uses only what
//! both builds have: `sluice_gateway`, `sluice_config`, `serde_json`,
//! `bytes`, and no crate-level attributes.
//!
//! A body panics when the code under test breaks a property. Each property
//! has a class name (`require(class, …)`); a fuzzing run that has already
//! found a class can go on looking for others with
//! `SLUICE_FUZZ_TOLERATE=class1,class2` (see `run.sh`). The corpus replay
//! never tolerates anything.

pub mod json;
pub mod sse_ref;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use sluice_config::{Kind, Scope, Snapshot};
use sluice_gateway::mcp::sse::SseParser;
use sluice_gateway::mcp::{self, JsonCaps, Method, ResponseInspector};
use sluice_gateway::policy::decide::Decide;
use sluice_gateway::policy::hosts::HostCheck;
use sluice_gateway::policy::list::ListFilter;
use sluice_gateway::policy::Caller;

use json::{J, V};

/// A target body.
pub type Body = fn(&[u8]);

/// Every target by name: the name of its `fuzz_targets/<name>.rs` file and
/// of its `corpus/<name>/` directory.
pub const TARGETS: &[(&str, Body)] = &[
    ("classify", classify),
    ("response", response),
    ("sse", sse),
    ("list_filter", list_filter),
    ("scope", scope),
    ("config_load", config_load),
    ("uri", uri),
];

/// Panic unless `ok` (or the class is tolerated in this run).
fn require(class: &str, ok: bool, detail: impl FnOnce() -> String) {
    if !ok && !tolerated(class) {
        panic!("property `{class}` violated: {}", detail());
    }
}

fn tolerated(class: &str) -> bool {
    static TOLERATED: OnceLock<Vec<String>> = OnceLock::new();
    TOLERATED
        .get_or_init(|| {
            std::env::var("SLUICE_FUZZ_TOLERATE")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|t| t == class)
}

/// Input bytes for a message, quoted as much as a report needs.
fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// A small deterministic generator of chunk sizes from a seed byte.
struct Splits(u32);

impl Splits {
    fn new(seed: u8) -> Self {
        Splits(u32::from(seed).wrapping_mul(2_654_435_761) | 1)
    }
    /// A chunk length in `1..=max`.
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        1 + (self.0 as usize) % max.max(1)
    }
    /// `bytes` cut into chunks of random length.
    fn chunks<'a>(&mut self, bytes: &'a [u8], max: usize) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.next(max).min(rest.len());
            out.push(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }
}

// ---------------------------------------------------------------------------
// classify: the request classifier, the scan and salvage helpers.
// ---------------------------------------------------------------------------

/// Any body: classified under three sets of caps. Accepted bodies must read
/// as serde_json and a case-insensitive decoder read them, with no member
/// the gateway reads given twice; refusals must be valid JSON-RPC errors.
pub fn classify(data: &[u8]) {
    // A known crash (README: a string's escape as the body's last byte),
    // stepped around only in runs that tolerate it, to look for others.
    if tolerated("scan-escape-at-end") && data.ends_with(b"\\") {
        return;
    }
    let caps = [
        JsonCaps::depth_only(64),
        JsonCaps {
            depth: 512,
            array_len: u32::MAX,
            string_len: u32::MAX,
        },
        JsonCaps {
            depth: 4,
            array_len: 3,
            string_len: 8,
        },
    ];
    for caps in caps {
        match mcp::classify_capped(data, caps) {
            Ok(facts) => accepted(data, &facts),
            Err(e) => refused(data, e),
        }
    }
    let _ = mcp::scan::check(data, JsonCaps::depth_only(2));
    if let Some(id) = mcp::scan::salvage_id(data) {
        require("salvaged-id-is-json", is_json_id(id), || {
            format!("salvage_id gave {id:?} for {}", show(data))
        });
    }
}

/// Is `raw` a JSON string or number, as an id must be?
fn is_json_id(raw: &str) -> bool {
    matches!(
        json::parse(raw.as_bytes(), json::STRICT),
        Ok(J::Num(_) | J::Str(_))
    )
}

fn refused(data: &[u8], e: mcp::ClassifyError) {
    if let Some(id) = e.id() {
        require("refusal-id-is-json", is_json_id(id.raw()), || {
            format!("refusal of {} carries id {:?}", show(data), id.raw())
        });
    }
    let body = sluice_gateway::refusal::body(&sluice_gateway::refusal::Refusal::Classify(e), None);
    require(
        "refusal-is-json",
        serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
        || format!("refusal of {} is {}", show(data), show(&body)),
    );
}

/// Which member names a method's target, as the gateway maps it.
fn target_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

/// One message as the gateway read it, in comparable form.
#[derive(Debug, PartialEq)]
struct Reading {
    method: Option<V>,
    id: Option<V>,
    target: Option<V>,
    arguments: Option<V>,
}

fn accepted(data: &[u8], facts: &mcp::RequestFacts) {
    require("accepts-a-message", !facts.messages.is_empty(), || {
        format!("no messages in {}", show(data))
    });
    let first = data.iter().find(|b| !b.is_ascii_whitespace()).copied();
    require(
        "batch-iff-array",
        facts.batch == (first == Some(b'[')),
        || format!("batch={} for {}", facts.batch, show(data)),
    );
    let mut gateway = Vec::new();
    for m in &facts.messages {
        if let Some(id) = &m.id {
            require("id-is-json", is_json_id(id.raw()), || {
                format!("id {:?} from {}", id.raw(), show(data))
            });
        }
        let arguments = m.arguments.clone().map(|r| {
            let span = data.get(r.clone());
            require(
                "arguments-span-is-json",
                span.is_some_and(|s| json::parse(s, json::STRICT).is_ok()),
                || format!("arguments {r:?} of {}", show(data)),
            );
            span.unwrap_or_default()
        });
        let response = m.kind == mcp::Kind::Response;
        require(
            "kind-follows-id-and-method",
            match m.kind {
                mcp::Kind::Response => m.method == Method::None,
                mcp::Kind::Request => m.id.is_some() && m.method != Method::None,
                mcp::Kind::Notification => m.id.is_none() && m.method != Method::None,
            },
            || format!("{m:?} from {}", show(data)),
        );
        gateway.push((m, response, arguments));
        if !facts.batch && !response {
            mirrored_headers(data, facts, m);
        }
    }

    // serde_json's `Value` (the last copy of a member wins) must read what
    // the gateway read, wherever it can read the body at all.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let values: Vec<&serde_json::Value> = match &v {
            serde_json::Value::Array(items) if facts.batch => items.iter().collect(),
            other => vec![other],
        };
        require(
            "reads-like-serde-json",
            values.len() == gateway.len(),
            || {
                format!(
                    "{} messages vs {} in {}",
                    gateway.len(),
                    values.len(),
                    show(data)
                )
            },
        );
        for ((m, response, args), v) in gateway.iter().zip(values) {
            let theirs = serde_reading(v);
            let ours = Reading {
                method: (!response).then(|| V::Str(json::cps(m.method.name()))),
                id: m.id.as_ref().and_then(|id| {
                    serde_json::from_str::<serde_json::Value>(id.raw())
                        .ok()
                        .map(|v| V::serde(&v))
                }),
                target: m.target.as_deref().map(|t| V::Str(json::cps(t))),
                arguments: args.and_then(|a| {
                    serde_json::from_slice::<serde_json::Value>(a)
                        .ok()
                        .map(|v| V::serde(&v))
                }),
            };
            require("reads-like-serde-json", ours == theirs, || {
                format!(
                    "gateway read {ours:?}, serde_json {theirs:?} in {}",
                    show(data)
                )
            });
        }
    }

    // Nothing the gateway reads may be there twice, nor be there again in
    // another case (a case-insensitive decoder such as Go's would read that
    // copy instead).
    if let Ok(doc) = json::parse(data, json::STRICT) {
        let messages: Vec<&J> = match &doc {
            J::Arr(items) if facts.batch => items.iter().collect(),
            other => vec![other],
        };
        for (m, args) in messages.iter().zip(&gateway).map(|(j, (_, _, a))| (j, a)) {
            if let Some(problem) = read_members_problem(m) {
                require("accepts-a-duplicate-or-case-variant", false, || {
                    format!("{problem} in {}", show(data))
                });
            }
            if let Some(a) = args {
                let dup = json::parse(a, json::STRICT).is_ok_and(|j| json::has_duplicate(&j));
                require("accepts-duplicate-arguments", !dup, || {
                    format!("arguments with a key twice in {}", show(data))
                });
            }
        }
    }
}

/// The members a gateway reads, per object level.
const TOP: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS: &[&str] = &["name", "uri", "arguments", "_meta"];
const META: &[&str] = &["io.modelcontextprotocol/protocolVersion"];

/// A member the gateway reads that is given twice, or whose name equals it
/// only under case folding.
fn read_members_problem(msg: &J) -> Option<String> {
    fn level(members: &[(Vec<u32>, J)], names: &[&str], at: &str) -> Option<String> {
        for name in names {
            let exact = json::cps(name);
            let folded = json::go_fold(&exact);
            let copies = members.iter().filter(|(k, _)| *k == exact).count();
            if copies > 1 {
                return Some(format!("`{at}{name}` given {copies} times"));
            }
            if let Some((k, _)) = members
                .iter()
                .find(|(k, _)| *k != exact && json::go_fold(k) == folded)
            {
                return Some(format!(
                    "`{at}{}` read as `{name}` by a case-insensitive decoder",
                    json::lossy(k)
                ));
            }
        }
        None
    }
    let J::Obj(top) = msg else { return None };
    level(top, TOP, "").or_else(|| {
        let Some(J::Obj(params)) = json::last(top, "params") else {
            return None;
        };
        level(params, PARAMS, "params.").or_else(|| match json::last(params, "_meta") {
            Some(J::Obj(meta)) => level(meta, META, "params._meta."),
            _ => None,
        })
    })
}

fn serde_reading(v: &serde_json::Value) -> Reading {
    let present = |v: Option<&serde_json::Value>| v.filter(|v| !v.is_null()).map(V::serde);
    let method = present(v.get("method"));
    let params = v.get("params").filter(|p| p.is_object());
    let key = v
        .get("method")
        .and_then(serde_json::Value::as_str)
        .and_then(target_key);
    Reading {
        id: present(v.get("id")),
        target: method
            .as_ref()
            .and(key)
            .and_then(|k| present(params.and_then(|p| p.get(k)))),
        arguments: method
            .as_ref()
            .and_then(|_| present(params.and_then(|p| p.get("arguments")))),
        method,
    }
}

/// 2026-07-28 headers that mirror the body (plain, and base64 for the name)
/// must be accepted.
fn mirrored_headers(data: &[u8], facts: &mcp::RequestFacts, m: &mcp::Message) {
    let method = m.method.name().as_bytes();
    let target = m.target.as_deref().map(str::as_bytes);
    let revision = Some(mcp::Revision::V2026_07_28);
    let plain = mcp::jsonrpc::check_mirrored_headers(facts, revision, Some(method), target);
    require("mirrored-headers-accepted", plain.is_ok(), || {
        format!("{plain:?} for {}", show(data))
    });
    if let Some(t) = target {
        let encoded = format!("=?base64?{}?=", base64(t));
        let b64 = mcp::jsonrpc::check_mirrored_headers(
            facts,
            revision,
            Some(method),
            Some(encoded.as_bytes()),
        );
        require("mirrored-headers-accepted", b64.is_ok(), || {
            format!("{b64:?} for {encoded} and {}", show(data))
        });
    }
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// response: the server-message watcher (skim fast path vs full parse).
// ---------------------------------------------------------------------------

/// The requests whose answers the watcher looks for.
const REQUESTS: &[u8] = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}},{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;

/// What the watcher concluded from a body.
fn watch(content_type: &[u8], chunks: &[&[u8]], max: usize) -> String {
    static FACTS: OnceLock<mcp::RequestFacts> = OnceLock::new();
    let facts = FACTS.get_or_init(|| mcp::classify(REQUESTS, 64).expect("the fixed requests"));
    let mut w = ResponseInspector::off();
    w.hash_definitions = true;
    w.start(content_type, Some(facts), max);
    for c in chunks {
        w.feed(c);
    }
    w.finish();
    let outcomes: Vec<_> = w.outcomes().map(|(id, _, o)| (id.raw(), o)).collect();
    format!(
        "outcomes {outcomes:?} tools {:?} server {:?} unparsed {}",
        w.tools_seen, w.server_messages, w.unparsed
    )
}

/// What the watcher concluded of how the calls ended, leaving out the
/// catalog (a message read in passing has no catalog read from it).
fn watch_outcomes(content_type: &[u8], chunks: &[&[u8]], max: usize) -> (String, u32) {
    static FACTS: OnceLock<mcp::RequestFacts> = OnceLock::new();
    let facts = FACTS.get_or_init(|| mcp::classify(REQUESTS, 64).expect("the fixed requests"));
    let mut w = ResponseInspector::off();
    w.start(content_type, Some(facts), max);
    for c in chunks {
        w.feed(c);
    }
    w.finish();
    let outcomes: Vec<_> = w.outcomes().map(|(id, _, o)| (id.raw(), o)).collect();
    (
        format!("outcomes {outcomes:?} server {:?}", w.server_messages),
        w.unparsed,
    )
}

/// Any server message: the watcher must conclude the same whether its fast
/// skim reads the message or the full parser does, and whether the message
/// came as a JSON body or as an SSE event.
pub fn response(data: &[u8]) {
    let max = 1 << 20;
    let json_body = watch(b"application/json", &[data], max);
    let _ = watch(b"application/json", &[data], 8);
    let _ = watch(b"text/event-stream", &[data], 16);
    let _ = watch(b"text/event-stream", &[data], max);
    // Valid JSON, UTF-8 included (`IgnoredAny` alone skips strings unread;
    // the skim does not check UTF-8, by design).
    let valid = std::str::from_utf8(data).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok();
    let start = data.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start.filter(|&s| valid && data[s] == b'{') else {
        return;
    };
    // An escaped member name makes the skim step aside for the parser; the
    // member itself (`_`) means nothing to either.
    let mut parsed = data[..=start].to_vec();
    parsed.extend_from_slice(br#""\u005f":0"#);
    let rest = &data[start + 1..];
    if rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}') {
        parsed.push(b',');
    }
    parsed.extend_from_slice(rest);
    let full = watch(b"application/json", &[&parsed], max);
    // A `\uD800`–`\uDFFF` escape: the parser refuses a lone surrogate
    // where it decodes a string, the skim never decodes (README).
    let surrogate = data.windows(3).any(|w| w.eq_ignore_ascii_case(b"\\ud"));
    let class = if surrogate {
        "skim-reads-like-the-parser-surrogate"
    } else {
        "skim-reads-like-the-parser"
    };
    require(class, json_body == full, || {
        format!("skim: {json_body}\nparser: {full}\nfor {}", show(data))
    });
    if !data.contains(&b'\r') {
        let mut event = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            event.extend_from_slice(b"data: ");
            event.extend_from_slice(line);
            event.push(b'\n');
        }
        event.push(b'\n');
        let sse = watch(b"text/event-stream", &[&event], max);
        require("sse-and-json-read-alike", sse == json_body, || {
            format!("json: {json_body}\nsse: {sse}\nfor {}", show(data))
        });
        // Too large to keep (a cap of one byte): read in passing, in pieces,
        // it ends the same calls the same way — or, where a member name it
        // looks at is escaped, it counts the message unreadable.
        let kept = watch_outcomes(b"text/event-stream", &[&event], max);
        let pieces: Vec<&[u8]> = event.chunks(7).collect();
        let passing = watch_outcomes(b"text/event-stream", &pieces, 1);
        let escaped_name = passing.1 == 1 && data.contains(&b'\\');
        require(
            "read-in-passing-like-the-parser",
            passing == kept || escaped_name,
            || {
                format!(
                    "kept: {kept:?}\nin passing: {passing:?}\nfor {}",
                    show(data)
                )
            },
        );
    }
}

// ---------------------------------------------------------------------------
// sse: the incremental SSE parser.
// ---------------------------------------------------------------------------

type OwnedEvent = (Vec<u8>, Vec<u8>, Option<Vec<u8>>, bool);

fn parse_sse(chunks: &[&[u8]], max: usize) -> Vec<OwnedEvent> {
    let mut p = SseParser::new(max);
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c, |e| {
            out.push((
                e.event.to_vec(),
                e.data.to_vec(),
                e.id.map(<[u8]>::to_vec),
                e.oversize,
            ))
        });
    }
    out
}

/// Byte 0 seeds the chunking, the rest is the stream. Fed whole, byte by
/// byte and in random chunks, the parser must report the same events; with
/// no cap in the way they must be the events a client (the WHATWG rules)
/// reads.
pub fn sse(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    for max in [1 << 20, usize::from(seed % 40)] {
        let whole = parse_sse(&[stream], max);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let by_byte = parse_sse(&bytes, max);
        let mut splits = Splits::new(seed);
        let chunks = splits.chunks(stream, 24);
        let chunked = parse_sse(&chunks, max);
        let class = if max == 1 << 20 {
            "sse-split-invariant"
        } else {
            "sse-split-invariant-capped"
        };
        require(class, whole == by_byte && whole == chunked, || {
            format!(
                "max {max}: whole {whole:?}\nbyte by byte {by_byte:?}\nchunks {:?}: {chunked:?}\nfor {}",
                chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
                show(stream)
            )
        });
        if max == 1 << 20 {
            let ours: Vec<(Vec<u8>, Vec<u8>)> = whole
                .iter()
                .filter(|(_, data, _, oversize)| !data.is_empty() && !oversize)
                .map(|(event, data, _, _)| {
                    let event = if event.is_empty() {
                        b"message".to_vec()
                    } else {
                        event.clone()
                    };
                    (event, data.clone())
                })
                .collect();
            let client = |events: Vec<sse_ref::RefEvent>| -> Vec<(Vec<u8>, Vec<u8>)> {
                events
                    .into_iter()
                    .filter(|e| !e.data.is_empty())
                    .map(|e| (e.event, e.data))
                    .collect()
            };
            let bom_only = ours == client(sse_ref::events_keeping_bom(stream));
            let client = client(sse_ref::events(stream));
            let class = if bom_only {
                // Differs only in dropping a leading byte order mark.
                "sse-reads-like-a-client-bom"
            } else {
                "sse-reads-like-a-client"
            };
            require(class, ours == client, || {
                format!("gateway {ours:?}\nclient {client:?}\nfor {}", show(stream))
            });
        }
    }
}

// ---------------------------------------------------------------------------
// list_filter: list results as a caller receives them.
// ---------------------------------------------------------------------------

/// The policy the list filter applies; `visible` below restates it by hand.
/// The small inspection cap puts the filter's oversize paths (withhold,
/// skip to the next event) within reach of small inputs.
const POLICY: &str = r#"
listeners: [{ name: main, address: "127.0.0.1:0" }]
limits: { max_inspected_response_bytes: 300 }
upstreams: [{ name: demo, url: "http://127.0.0.1:9/mcp" }]
routes: [{ name: demo, path: /mcp, upstream: demo }]
identity:
  audience: fuzz
  api_keys:
    - { id: k, sha256: "0000000000000000000000000000000000000000000000000000000000000000", subject: s, roles: [reader] }
roles:
  - name: reader
    allow:
      - "tools:demo/get_*:call"
      - "resources:demo/file:///pub/**:read"
      - "prompts:demo/greet:get"
  - name: writer
    allow:
      - "tools:demo/*:call"
      - "resources:demo/**:read"
      - "prompts:demo/*:get"
    deny:
      - "tools:demo/delete_*:call"
      - "resources:demo/file:///etc/**:read"
      - "prompts:demo/secret*:get"
      - scope: "tools:demo/get_secret:call"
        when: [{ pointer: /x, equals: 1 }]
"#;

fn policy() -> Arc<Snapshot> {
    static SNAP: OnceLock<Arc<Snapshot>> = OnceLock::new();
    SNAP.get_or_init(|| Arc::new(sluice_config::load(POLICY, 1).expect("the fixed policy")))
        .clone()
}

/// `POLICY` restated by hand: may a caller with these roles see the item?
fn visible(kind: Kind, name: &str, reader: bool, writer: bool) -> bool {
    let one_segment = !name.contains('/');
    let under = |p: &str| name == p || name.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    match kind {
        Kind::Tools => {
            let denied = writer && one_segment && name.starts_with("delete_");
            !denied
                && ((reader && one_segment && name.starts_with("get_")) || (writer && one_segment))
        }
        Kind::Resources => {
            let denied = writer && under("file:///etc");
            !denied && ((reader && under("file:///pub")) || writer)
        }
        Kind::Prompts => {
            let denied = writer && one_segment && name.starts_with("secret");
            !denied && ((reader && name == "greet") || (writer && one_segment))
        }
        Kind::Models => false,
    }
}

/// The list arrays a filter answers for: `(array, item key, kind)`.
const LISTS: [(&str, &str, Kind); 4] = [
    ("tools", "name", Kind::Tools),
    ("resources", "uri", Kind::Resources),
    ("resourceTemplates", "uriTemplate", Kind::Resources),
    ("prompts", "name", Kind::Prompts),
];

/// Byte 0: bits 0–2 pick the filter (0–3: the answer to tools/list,
/// resources/list, resources/templates/list, prompts/list; 4–7: a stream
/// that answers no request), bit 3 SSE, bits 4–5 the caller's roles
/// (none, reader, writer, both), bit 6 whether the end comes with the last
/// chunk. Byte 1 seeds the chunking. The rest is the upstream's body.
///
/// Whatever the body, no message a client reads from what the filter lets
/// through may list an item the policy hides — read as Python's `json` and a
/// browser's EventSource read it (`message` events), or as Go's
/// `encoding/json` (member names matched case-insensitively) reads it. A
/// hidden item only a client reading every event type would see is a class
/// of its own.
pub fn list_filter(data: &[u8]) {
    let [flags, seed, body @ ..] = data else {
        return;
    };
    let mode = usize::from(flags & 7);
    let sse = flags & 8 != 0;
    let (reader, writer) = (flags & 16 != 0, flags & 32 != 0);
    let roles: Vec<Box<str>> = [(reader, "reader"), (writer, "writer")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| (*r).into())
        .collect();
    let caller = Caller {
        subject: "fuzz".into(),
        tenant: None,
        roles,
        anonymous: false,
    };
    let snap = policy();
    let methods = [
        Method::ToolsList,
        Method::ResourcesList,
        Method::ResourcesTemplatesList,
        Method::PromptsList,
    ];
    let (mut filter, lists) = if mode < 4 {
        let f = ListFilter::for_answer(&methods[mode], "demo", &caller, snap.clone())
            .expect("a list method has a filter");
        (f, &LISTS[mode..=mode])
    } else {
        (
            ListFilter::for_stream("demo", &caller, snap.clone()),
            &LISTS[..],
        )
    };
    filter.set_sse(sse);
    let mut out = Vec::new();
    let chunks = Splits::new(*seed).chunks(body, 64);
    let end_with_last = flags & 64 != 0 && !chunks.is_empty();
    for (i, c) in chunks.iter().enumerate() {
        let end = end_with_last && i + 1 == chunks.len();
        if let Some(b) = filter.process(Some(Bytes::copy_from_slice(c)), end) {
            out.extend_from_slice(&b);
        }
    }
    if !end_with_last {
        if let Some(b) = filter.process(None, true) {
            out.extend_from_slice(&b);
        }
    }

    // Clients read JSON-RPC from `message` events (EventSource's
    // `onmessage`, the MCP SDKs); a laxer one reads every event's data.
    let message_events = |s: &[u8]| -> Vec<sse_ref::RefEvent> {
        let mut e = sse_ref::events(s);
        e.retain(|e| e.event == b"message");
        e
    };
    let hidden = shown_hidden(&out, sse, message_events, lists, reader, writer);
    let any_event = shown_hidden(&out, sse, sse_ref::events, lists, reader, writer);
    if let Some(why) = hidden.clone().or(any_event) {
        // Read by a client that does not drop a leading byte order mark,
        // is it still there?
        let keeping_bom = |s: &[u8]| -> Vec<sse_ref::RefEvent> {
            let mut e = sse_ref::events_keeping_bom(s);
            e.retain(|e| e.event == b"message");
            e
        };
        let without_bom = shown_hidden(&out, sse, keeping_bom, lists, reader, writer);
        // Read by a client that takes `event:` with no value for a type of
        // its own, is it still there?
        let typed = |s: &[u8]| -> Vec<sse_ref::RefEvent> {
            let mut e = sse_ref::events(s);
            e.retain(|e| e.event == b"message" && !e.typed_empty);
            e
        };
        let typed = shown_hidden(&out, sse, typed, lists, reader, writer);
        let class = if hidden.is_none() {
            "list-shows-a-hidden-item-in-another-event-type"
        } else if without_bom.is_none() {
            "list-shows-a-hidden-item-after-a-bom"
        } else if typed.is_none() {
            "list-shows-a-hidden-item-empty-event-type"
        } else {
            "list-shows-a-hidden-item"
        };
        require(class, false, || {
            format!("{why} in {}\nfrom upstream body {}", show(&out), show(body))
        });
    }
}

/// A hidden item a client reads from what the filter let through, if any:
/// read as Python's `json` and an EventSource (`events`) read it, and as
/// Go's `encoding/json` (member names matched case-insensitively) does.
fn shown_hidden(
    out: &[u8],
    sse: bool,
    events: impl Fn(&[u8]) -> Vec<sse_ref::RefEvent>,
    lists: &[(&str, &str, Kind)],
    reader: bool,
    writer: bool,
) -> Option<String> {
    let snap = policy();
    let roles: Vec<&str> = [(reader, "reader"), (writer, "writer")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, r)| *r)
        .collect();
    let mut docs = Vec::new();
    if sse {
        for e in events(out) {
            let text = String::from_utf8_lossy(&e.data).into_owned();
            docs.extend(json::parse(text.as_bytes(), json::PYTHON).ok());
        }
    } else {
        docs.extend(json::parse(out, json::PYTHON).ok());
    }
    let messages: Vec<&J> = docs
        .iter()
        .flat_map(|d| match d {
            J::Arr(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        })
        .collect();
    type Pick = for<'a> fn(&'a [(Vec<u32>, J)], &str) -> Option<&'a J>;
    let clients: [(&str, Pick); 2] = [("python", json::last), ("go", json::go_field)];
    for (client, pick) in clients {
        for msg in &messages {
            let J::Obj(msg) = msg else { continue };
            let Some(J::Obj(result)) = pick(msg, "result") else {
                continue;
            };
            for &(array, key, kind) in lists {
                let Some(J::Arr(items)) = pick(result, array) else {
                    continue;
                };
                for item in items {
                    let J::Obj(item) = item else { continue };
                    let Some(J::Str(name)) = pick(item, key) else {
                        continue;
                    };
                    let name = json::lossy(name);
                    let by_hand = visible(kind, &name, reader, writer);
                    let by_policy = snap
                        .policy
                        .visible(roles.iter().copied(), kind, "demo", &name);
                    require(
                        "policy-visible-matches-the-rules",
                        by_hand == by_policy,
                        || {
                            format!("{kind:?} {name:?} reader={reader} writer={writer}: policy says {by_policy}")
                        },
                    );
                    if !by_hand {
                        return Some(format!(
                            "a {client} client reads {array} item {name:?} (hidden from reader={reader} writer={writer})"
                        ));
                    }
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// scope: policy scopes and path globs.
// ---------------------------------------------------------------------------

/// `*` matches any run of characters, nothing else is special.
fn ref_glob(pat: &[u8], text: &[u8]) -> bool {
    // can[j]: the pattern so far matches text[..j].
    let mut can = vec![false; text.len() + 1];
    can[0] = true;
    for &p in pat {
        if p == b'*' {
            for j in 1..=text.len() {
                can[j] = can[j] || can[j - 1];
            }
        } else {
            for j in (1..=text.len()).rev() {
                can[j] = can[j - 1] && text[j - 1] == p;
            }
            can[0] = false;
        }
    }
    can[text.len()]
}

/// Segments split on `/`; a segment `**` matches any number of segments,
/// any other is a `ref_glob` of one segment.
fn ref_path(pat: &str, name: &str) -> bool {
    let p: Vec<&str> = pat.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    // can[i][j]: p[i..] matches n[j..].
    let mut can = vec![vec![false; n.len() + 1]; p.len() + 1];
    can[p.len()][n.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=n.len()).rev() {
            can[i][j] = if p[i] == "**" {
                can[i + 1][j] || (j < n.len() && can[i][j + 1])
            } else {
                j < n.len() && ref_glob(p[i].as_bytes(), n[j].as_bytes()) && can[i + 1][j + 1]
            };
        }
    }
    can[0][0]
}

/// The scope grammar as the config reference states it:
/// `<kind>:<upstream>/<name>:<action>`.
fn ref_scope(s: &str) -> Option<(Kind, &str, &str)> {
    let (kind, rest) = s.split_once(':')?;
    let kind = match kind {
        "tools" => Kind::Tools,
        "resources" => Kind::Resources,
        "prompts" => Kind::Prompts,
        "models" => Kind::Models,
        _ => return None,
    };
    let (path, action) = rest.rsplit_once(':')?;
    let (upstream, name) = path.split_once('/')?;
    let ok = action == kind.action() && !upstream.is_empty() && !name.is_empty();
    (ok && upstream != "**").then_some((kind, upstream, name))
}

/// Line 1: a scope. Each further line: a name to match (or
/// `upstream<TAB>name`). Parsing and matching must follow the grammar, and
/// `glob_path` / `glob` must agree with plain reference matchers.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A known blow-up (README: matching time grows as segments^(number of
    // `**`)), stepped around only in runs that tolerate it.
    if tolerated("scope-double-star-blowup")
        && text.matches("**").count() >= 2
        && text.matches('/').count() > 64
    {
        return;
    }
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or_default();
    let queries: Vec<&str> = lines.collect();
    let parsed = Scope::parse(pattern);
    let reference = ref_scope(pattern);
    require(
        "scope-parse-follows-the-grammar",
        parsed.is_ok() == reference.is_some(),
        || format!("{pattern:?}: {parsed:?} vs grammar {reference:?}"),
    );
    if let (Ok(s), Some((kind, up, name))) = (&parsed, reference) {
        require(
            "scope-keeps-its-text",
            s.text == pattern && s.kind == kind,
            || format!("{pattern:?} became {s:?}"),
        );
        if let (Some(u), Some(n)) = (s.upstream_literal(), s.name_literal()) {
            require(
                "literal-scope-matches-itself",
                s.matches(kind, u, &n),
                || format!("{pattern:?} does not match {u}/{n}"),
            );
        }
        for q in &queries {
            let (qu, qn) = q.split_once('\t').unwrap_or((up, q));
            for k in [Kind::Tools, Kind::Resources, Kind::Prompts, Kind::Models] {
                let want = k == kind
                    && (if up.contains('*') {
                        ref_glob(up.as_bytes(), qu.as_bytes())
                    } else {
                        up == qu
                    })
                    && ref_path(name, qn);
                let got = s.matches(k, qu, qn);
                require("scope-matches-like-the-grammar", got == want, || {
                    format!("{pattern:?} on {k:?} {qu:?} {qn:?}: {got}, grammar says {want}")
                });
            }
        }
    }
    if let Some((pat, names)) = queries.split_first() {
        for n in names {
            let got = sluice_config::glob_path(pat, n);
            let want = ref_path(pat, n);
            require("glob-path-matches-the-reference", got == want, || {
                format!("glob_path({pat:?}, {n:?}) = {got}, reference {want}")
            });
            let got = sluice_config::glob(pat.as_bytes(), n.as_bytes());
            let want = ref_glob(pat.as_bytes(), n.as_bytes());
            require("glob-matches-the-reference", got == want, || {
                format!("glob({pat:?}, {n:?}) = {got}, reference {want}")
            });
        }
    }
}

// ---------------------------------------------------------------------------
// config_load: YAML → Snapshot.
// ---------------------------------------------------------------------------

/// Any text as a config file: loading never panics, loads the same twice,
/// and what loads can be used.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a = sluice_config::load(text, 1);
    let b = sluice_config::load(text, 2);
    match (&a, &b) {
        (Ok(x), Ok(y)) => {
            require(
                "config-load-deterministic",
                x.version.hash == y.version.hash && x.version.generation == 1,
                || format!("{:?} vs {:?}", x.version, y.version),
            );
            use_snapshot(x);
        }
        (Err(x), Err(y)) => {
            require("config-load-deterministic", x == y, || {
                format!("{x} vs {y}")
            });
            require("config-errors-say-something", !x.0.is_empty(), || {
                "an empty error list".into()
            });
        }
        _ => require("config-load-deterministic", false, || {
            format!("{:?} then {:?}", a.is_ok(), b.is_ok())
        }),
    }
}

fn use_snapshot(s: &Snapshot) {
    for r in &s.routes {
        let _ = s.upstream(r);
        let _ = r
            .hosts
            .allows("localhost:8080", Some("http://localhost:8080"));
        for l in &s.listeners {
            let found = s.route_for(&l.name, &r.path);
            require(
                "a-route-serves-its-own-path",
                found.is_some() || r.listeners.is_some(),
                || format!("route {:?} on {:?}", r.path, l.name),
            );
        }
    }
    for role in s.policy.roles() {
        for kind in [Kind::Tools, Kind::Resources, Kind::Prompts, Kind::Models] {
            for u in &s.upstreams {
                let _ = s
                    .policy
                    .visible([role.name.as_str()].into_iter(), kind, &u.name, "x/y");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// uri: resource URIs (a place for the URI normaliser).
// ---------------------------------------------------------------------------

/// Does the gateway let this resource URI through to policy? What
/// `policy::authorize` checks first (`sluice_config::uri::check_uri`): a
/// URI not in normal form is refused before any scope is consulted. A
/// different normaliser goes here.
fn gateway_accepts_uri(uri: &str) -> bool {
    sluice_config::uri::check_uri(uri).is_ok()
}

/// Ways an upstream may read a URI before it opens what it names.
fn uri_readings(uri: &str) -> Vec<(&'static str, String)> {
    let decoded = percent_decode(uri, |_| true);
    let unreserved = percent_decode(uri, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    vec![
        ("rfc3986", remove_dot_segments(&unreserved, true)),
        ("decoded-then-resolved", remove_dot_segments(&decoded, true)),
        (
            "backslash-as-slash",
            remove_dot_segments(&decoded.replace('\\', "/"), true),
        ),
        // A server whose framework decodes the URI, then its handler again.
        (
            "decoded-twice",
            remove_dot_segments(&percent_decode(&decoded, |_| true), true),
        ),
        // A server that takes everything after `file://` as a file path
        // (no query or fragment for files) and resolves it.
        ("whole-text-as-path", remove_dot_segments(&decoded, false)),
    ]
}

fn percent_decode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                let v = u8::try_from(h * 16 + l).unwrap_or(0);
                if keep(v) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 §5.2.4 on the path of `uri` (scheme and authority kept); the
/// path ends at `?` or `#` when `split_query`.
fn remove_dot_segments(uri: &str, split_query: bool) -> String {
    let (head, rest) = match uri.find("://") {
        Some(i) => {
            let after = &uri[i + 3..];
            let p = after.find('/').unwrap_or(after.len());
            uri.split_at(i + 3 + p)
        }
        None => match uri.find(':') {
            Some(i) => uri.split_at(i + 1),
            None => ("", uri),
        },
    };
    let end = if split_query {
        rest.find(['?', '#']).unwrap_or(rest.len())
    } else {
        rest.len()
    };
    let (path, tail) = rest.split_at(end);
    let mut input = path.to_owned();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(r) = input.strip_prefix("../") {
            input = r.to_owned();
        } else if let Some(r) = input.strip_prefix("./") {
            input = r.to_owned();
        } else if input.starts_with("/./") {
            input = input[2..].to_owned();
        } else if input == "/." {
            input = "/".into();
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." {
                "/".into()
            } else {
                input[3..].to_owned()
            };
            match output.rfind('/') {
                Some(i) => output.truncate(i),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let next = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..next]);
            input = input[next..].to_owned();
        }
    }
    format!("{head}{output}{tail}")
}

/// Scopes a resource URI is judged by in the `uri` target.
const URI_SCOPES: &[&str] = &[
    "resources:fs/file:///pub/**:read",
    "resources:fs/file:///etc/**:read",
    "resources:fs/file:///pub/*:read",
    "resources:fs/repo://*/docs/**:read",
];

/// A resource URI (the whole input). If the gateway accepts it, every scope
/// must decide the same on its text as on what an upstream reads it as.
pub fn uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":{}}}}}"#,
        serde_json::Value::String(text.to_owned())
    );
    let Ok(facts) = mcp::classify(body.as_bytes(), 64) else {
        return;
    };
    let Some(uri) = facts.first().target.as_deref() else {
        return;
    };
    if !gateway_accepts_uri(uri) {
        return;
    }
    for pattern in URI_SCOPES {
        let s = Scope::parse(pattern).expect("a fixed scope");
        let on_text = s.matches(Kind::Resources, "fs", uri);
        for (reader, read) in uri_readings(uri) {
            let on_read = s.matches(Kind::Resources, "fs", &read);
            let class = format!("uri-scope-holds-for-every-reader/{reader}");
            require(&class, on_text == on_read, || {
                format!("{pattern} on {uri:?}: {on_text}, on {read:?} ({reader}): {on_read}")
            });
        }
    }
}
