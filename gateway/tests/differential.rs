//! Parser differential: what the gateway's classifier reads of a JSON-RPC
//! message must be what the upstream will read. Messages are generated with
//! proptest (a fixed seed, a fixed number of cases) and mutated the ways
//! JSON readers disagree — a member given twice (top level, `params`,
//! `arguments`), a member named again in another case (`Name`, `METHOD`,
//! `paramſ` with U+017F, `ıd` with U+0131), escapes in names and values,
//! number spellings (`1e2`, `10.0000000000000001`, `-0`, beyond 64 bits,
//! `1e400`), lone surrogates, `NaN`, whitespace, trailing garbage, deep
//! nesting, batches.
//!
//! For every message the classifier accepts, its reading — method, id,
//! target (`params.name` / `params.uri`), arguments — is compared by JSON
//! value (`"\u0061"` is `"a"`, `1e2` is `100`) with:
//! - `serde_json::Value` (the last copy of a member wins),
//! - Python's `json` module (last copy wins; `NaN`, big integers, lone
//!   surrogates), one `python3` process for the whole test,
//! - a model of Go's `encoding/json` decoding into a struct: a member whose
//!   name equals a field's under case folding fills that field, the last
//!   such member winning (`json::go_field` in the shared reader).
//!
//! What "the gateway reads": the method name and target as classified; the
//! id as the exact value of the text it echoes; the arguments as its policy
//! reads them (`policy/strict.rs`: serde_json numbers, and a key given twice
//! at any depth makes them unreadable, which policy treats as failing).
//!
//! Any accepted message that some reader reads otherwise is a finding; the
//! test collects them all and fails listing them by class, with the
//! shortest examples first (the full list goes to
//! `$CARGO_TARGET_TMPDIR/differential-findings.txt`).

// The shared JSON reader of the fuzz targets; only part of it is used here.
#[allow(dead_code)]
#[path = "../fuzz/src/json.rs"]
mod json;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use json::{J, V};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sluice_gateway::mcp::{classify, Kind};

/// Generated cases per run: fixed, so CI runs the same inputs every time.
const CASES: usize = 2000;
/// The proptest RNG seed (ChaCha): fixed for the same reason.
const SEED: [u8; 32] = *b"sluice differential: issue 18 .."; // 32 bytes

// ---------------------------------------------------------------------------
// Messages as trees whose every spelling is chosen.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Node {
    /// Token text as written: a number, `true`, `null`, a string literal.
    Raw(String),
    Arr(Vec<Node>),
    Obj(Vec<Member>),
}

#[derive(Debug, Clone)]
struct Member {
    /// The name as a reader decodes it.
    key: String,
    /// The name as written, quotes included; `None`: plainly.
    raw: Option<String>,
    value: Node,
}

fn member(key: &str, value: Node) -> Member {
    Member {
        key: key.to_owned(),
        raw: None,
        value,
    }
}

fn raw(text: &str) -> Node {
    Node::Raw(text.to_owned())
}

fn text(s: &str, spell: u8) -> Node {
    Node::Raw(lit(s, spell))
}

/// A JSON string literal for `s` in one of several spellings that all
/// decode to `s`.
fn lit(s: &str, spell: u8) -> String {
    let u = |c: char, out: &mut String| {
        let mut buf = [0u16; 2];
        for unit in c.encode_utf16(&mut buf) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    };
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        let plain = |out: &mut String| match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        };
        match spell % 6 {
            // Every character escaped.
            1 => u(c, &mut out),
            // The first character escaped, in upper-case hex.
            2 if i == 0 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04X}");
                }
            }
            // `/` as `\/`.
            3 if c == '/' => out.push_str("\\/"),
            // Everything but ASCII escaped (surrogate pairs beyond the BMP).
            4 if !c.is_ascii() => u(c, &mut out),
            // The last character escaped.
            5 if i + 1 == s.chars().count() => u(c, &mut out),
            _ => plain(&mut out),
        }
    }
    out.push('"');
    out
}

fn write_node(n: &Node, ws: &mut Ws, out: &mut String) {
    match n {
        Node::Raw(t) => out.push_str(t),
        Node::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws.next());
                write_node(item, ws, out);
                out.push_str(ws.next());
            }
            out.push(']');
        }
        Node::Obj(members) => {
            out.push('{');
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws.next());
                out.push_str(m.raw.as_deref().unwrap_or(&lit(&m.key, 0)));
                out.push_str(ws.next());
                out.push(':');
                out.push_str(ws.next());
                write_node(&m.value, ws, out);
                out.push_str(ws.next());
            }
            out.push('}');
        }
    }
}

/// Whitespace between tokens, mostly none.
struct Ws {
    picks: Vec<u8>,
    i: usize,
}

impl Ws {
    fn next(&mut self) -> &'static str {
        const WS: [&str; 10] = ["", "", "", "", "", " ", "\n", "\t", "\r\n ", "  "];
        if self.picks.is_empty() {
            return "";
        }
        self.i += 1;
        WS[usize::from(self.picks[self.i % self.picks.len()]) % WS.len()]
    }
}

fn get<'a>(members: &'a mut [Member], key: &str) -> Option<&'a mut Node> {
    members
        .iter_mut()
        .find(|m| m.key == key)
        .map(|m| &mut m.value)
}

// ---------------------------------------------------------------------------
// What is generated.
// ---------------------------------------------------------------------------

/// `None`: a response (`result`, no method).
const METHODS: [Option<&str>; 12] = [
    Some("tools/call"),
    Some("tools/call"),
    Some("resources/read"),
    Some("prompts/get"),
    Some("tools/list"),
    Some("initialize"),
    Some("ping"),
    Some("notifications/initialized"),
    Some("resources/subscribe"),
    Some("completion/complete"),
    Some("x/custom"),
    None,
];

enum Id {
    Num(&'static str),
    Str(&'static str),
    /// A string literal written as is.
    RawStr(&'static str),
    Null,
    Absent,
}

const IDS: [Id; 22] = [
    Id::Num("1"),
    Id::Num("0"),
    Id::Num("-1"),
    Id::Num("-0"),
    Id::Num("7"),
    Id::Num("1e2"),
    Id::Num("1E2"),
    Id::Num("100.0"),
    Id::Num("10.0000000000000001"),
    Id::Num("18446744073709551616"),
    Id::Num("123456789012345678901234567890"),
    Id::Num("1e400"),
    Id::Num("-1.5e-3"),
    Id::Str("a"),
    Id::Str("abc"),
    Id::Str("é"),
    Id::Str("😀"),
    Id::Str(""),
    Id::RawStr(r#""\ud800""#),
    Id::RawStr(r#""a\u0000b""#),
    Id::Null,
    Id::Absent,
];

const NAMES: [&str; 8] = [
    "get_sum",
    "echo",
    "delete_repo",
    "Get_Sum",
    "é",
    "a b",
    "x/y",
    "",
];

const URIS: [&str; 5] = [
    "file:///pub/a.txt",
    "file:///etc/passwd",
    "file:///pub/../etc/passwd",
    "repo://x/docs/a",
    "test://static",
];

const ARG_KEYS: [&str; 8] = ["a", "b", "path", "Path", "limit", "é", "ſ", "repo"];
const ARG_STRS: [&str; 7] = ["hi", "secret", "", "é", "😀", "a\"b", "/etc/shadow"];
const ARG_NUMS: [&str; 11] = [
    "0",
    "-0",
    "1",
    "1e2",
    "100.0",
    "10.0000000000000001",
    "9007199254740993",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1e400",
    "-1.5",
];

#[derive(Debug, Clone)]
enum Arg {
    Null,
    Bool(bool),
    Num(u8),
    Str(u8, u8),
    Arr(Vec<Arg>),
    Obj(Vec<(u8, u8, Arg)>),
}

impl Arg {
    fn node(&self) -> Node {
        let pick = |list: &[&str], i: u8| list[usize::from(i) % list.len()].to_owned();
        match self {
            Arg::Null => raw("null"),
            Arg::Bool(b) => raw(if *b { "true" } else { "false" }),
            Arg::Num(i) => Node::Raw(pick(&ARG_NUMS, *i)),
            Arg::Str(i, spell) => text(&pick(&ARG_STRS, *i), *spell),
            Arg::Arr(items) => Node::Arr(items.iter().map(Arg::node).collect()),
            // One member per name: a name given twice is a mutation's doing.
            Arg::Obj(members) => Node::Obj(
                members
                    .iter()
                    .enumerate()
                    .filter(|(i, (k, _, _))| {
                        let name = |k: &u8| usize::from(*k) % ARG_KEYS.len();
                        !members[..*i].iter().any(|(k2, _, _)| name(k2) == name(k))
                    })
                    .map(|(_, (k, spell, v))| {
                        let key = pick(&ARG_KEYS, *k);
                        Member {
                            raw: (spell % 3 == 0).then(|| lit(&key, *spell / 3)),
                            key,
                            value: v.node(),
                        }
                    })
                    .collect(),
            ),
        }
    }
}

fn arg() -> impl Strategy<Value = Arg> {
    let leaf = prop_oneof![
        Just(Arg::Null),
        any::<bool>().prop_map(Arg::Bool),
        any::<u8>().prop_map(Arg::Num),
        (any::<u8>(), any::<u8>()).prop_map(|(s, spell)| Arg::Str(s, spell)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Arg::Arr),
            prop::collection::vec((any::<u8>(), any::<u8>(), inner), 0..4).prop_map(Arg::Obj),
        ]
    })
}

#[derive(Debug, Clone)]
struct Msg {
    method: u8,
    method_spell: u8,
    id: u8,
    id_spell: u8,
    name: u8,
    name_spell: u8,
    args: Option<Vec<(u8, u8, Arg)>>,
    meta: bool,
    /// `params` for a method without a target; a target for one without.
    odd_params: bool,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()),
        (any::<u8>(), any::<u8>()),
        prop::option::weighted(
            0.8,
            prop::collection::vec((any::<u8>(), any::<u8>(), arg()), 0..4),
        ),
        (prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
    )
        .prop_map(
            |((method, method_spell, id, id_spell), (name, name_spell), args, (meta, odd))| Msg {
                method,
                method_spell,
                id,
                id_spell,
                name,
                name_spell,
                args,
                meta,
                odd_params: odd,
            },
        )
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Top,
    Params,
    Meta,
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Give a member the gateway reads a second copy with another value.
    Dup { level: Level, key: u8, first: bool },
    /// A key given twice inside `arguments` (`deep`: in a nested object).
    DupArgs { pos: u8, deep: bool, first: bool },
    /// A member named like one the gateway reads, in another case.
    Case {
        level: Level,
        key: u8,
        variant: u8,
        first: bool,
    },
    /// Every member name at a level spelled with escapes.
    EscapeKeys { level: u8, spell: u8 },
    /// A lone surrogate in a string somewhere.
    Surrogate { place: u8 },
    /// `NaN`, `Infinity`, `-Infinity` in the arguments.
    NonFinite { which: u8 },
    /// The arguments wrapped in this many arrays.
    Nest { depth: u8 },
    /// Bytes before or after the message.
    Garbage { which: u8 },
    /// The message inside a batch, with other messages.
    Batch { others: u8 },
    /// A member the gateway reads, one level too deep or too high.
    Misplaced { which: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let level = prop_oneof![Just(Level::Top), Just(Level::Params), Just(Level::Meta)];
    prop_oneof![
        3 => (level.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(level, key, first)| Mutation::Dup { level, key, first }),
        2 => (any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(pos, deep, first)| Mutation::DupArgs { pos, deep, first }),
        3 => (level, any::<u8>(), any::<u8>(), any::<bool>()).prop_map(
            |(level, key, variant, first)| Mutation::Case { level, key, variant, first }
        ),
        2 => (any::<u8>(), any::<u8>())
            .prop_map(|(level, spell)| Mutation::EscapeKeys { level, spell }),
        1 => any::<u8>().prop_map(|place| Mutation::Surrogate { place }),
        1 => any::<u8>().prop_map(|which| Mutation::NonFinite { which }),
        1 => any::<u8>().prop_map(|depth| Mutation::Nest { depth }),
        2 => any::<u8>().prop_map(|which| Mutation::Garbage { which }),
        1 => any::<u8>().prop_map(|others| Mutation::Batch { others }),
        1 => any::<u8>().prop_map(|which| Mutation::Misplaced { which }),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    msg: Msg,
    mutations: Vec<Mutation>,
    ws: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        msg(),
        prop::collection::vec(mutation(), 0..4),
        prop::option::weighted(0.3, prop::collection::vec(any::<u8>(), 1..8)),
    )
        .prop_map(|(msg, mutations, ws)| Case {
            msg,
            mutations,
            ws: ws.unwrap_or_default(),
        })
}

fn target_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

/// Another value for a member, for its second copy.
fn other_value(key: &str, method: Option<&str>) -> Node {
    match key {
        "id" => raw("999"),
        "method" if method == Some("tools/call") => text("tools/list", 0),
        "method" => text("tools/call", 0),
        "params" => Node::Obj(vec![
            member("name", text("delete_repo", 0)),
            member("uri", text("file:///etc/passwd", 0)),
            member(
                "arguments",
                Node::Obj(vec![member("path", text("/etc/shadow", 0))]),
            ),
        ]),
        "jsonrpc" => text("2.0", 0),
        "name" => text("delete_repo", 0),
        "uri" => text("file:///etc/passwd", 0),
        "arguments" => Node::Obj(vec![member("path", text("/etc/shadow", 0))]),
        "_meta" | "io.modelcontextprotocol/protocolVersion" => text("2025-06-18", 0),
        "result" => Node::Obj(vec![]),
        _ => text("dup", 0),
    }
}

const TOP_KEYS: [&str; 4] = ["id", "method", "params", "jsonrpc"];
const PARAMS_KEYS: [&str; 4] = ["name", "uri", "arguments", "_meta"];
const META_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The same name in another case: `Name`, `NAME`, `paramſ`, `ıd`, …
fn case_variant(key: &str, variant: u8) -> String {
    let mut first_upper = key.to_owned();
    if let Some(i) = key.find(|c: char| c.is_ascii_lowercase()) {
        first_upper.replace_range(i..=i, &key[i..=i].to_ascii_uppercase());
    }
    let candidates = [
        first_upper.clone(),
        key.to_ascii_uppercase(),
        key.replacen('s', "\u{17f}", 1),
        key.replacen('i', "\u{131}", 1),
        key.replacen('k', "\u{212a}", 1),
    ];
    let pick = &candidates[usize::from(variant) % candidates.len()];
    if pick == key {
        first_upper
    } else {
        pick.clone()
    }
}

/// The members at `level` of the message `top`.
fn level_members(top: &mut Vec<Member>, level: Level) -> Option<&mut Vec<Member>> {
    match level {
        Level::Top => Some(top),
        Level::Params => match get(top, "params")? {
            Node::Obj(p) => Some(p),
            _ => None,
        },
        Level::Meta => match get(top, "params")? {
            Node::Obj(p) => match get(p, "_meta")? {
                Node::Obj(m) => Some(m),
                _ => None,
            },
            _ => None,
        },
    }
}

fn level_keys(level: Level) -> &'static [&'static str] {
    match level {
        Level::Top => &TOP_KEYS,
        Level::Params => &PARAMS_KEYS,
        Level::Meta => &[META_KEY],
    }
}

fn insert(members: &mut Vec<Member>, at: usize, m: Member, first: bool) {
    let at = if first { at } else { at + 1 };
    members.insert(at.min(members.len()), m);
}

/// The first object nested inside `node`.
fn nested_obj(node: &mut Node) -> Option<&mut Vec<Member>> {
    match node {
        Node::Obj(members) => {
            if members
                .iter()
                .any(|m| matches!(m.value, Node::Obj(_) | Node::Arr(_)))
            {
                members.iter_mut().find_map(|m| nested_obj(&mut m.value))
            } else {
                Some(members)
            }
        }
        Node::Arr(items) => items.iter_mut().find_map(nested_obj),
        Node::Raw(_) => None,
    }
}

/// The message's text and the names of what was done to it.
fn build(case: &Case) -> (Vec<u8>, Vec<String>) {
    let m = &case.msg;
    let method = METHODS[usize::from(m.method) % METHODS.len()];
    let mut tags = Vec::new();
    let mut top = vec![member("jsonrpc", text("2.0", 0))];
    match &IDS[usize::from(m.id) % IDS.len()] {
        Id::Num(n) => top.push(member("id", raw(n))),
        Id::Str(s) => top.push(member("id", text(s, m.id_spell))),
        Id::RawStr(s) => top.push(member("id", raw(s))),
        Id::Null => top.push(member("id", raw("null"))),
        Id::Absent => {}
    }
    match method {
        Some(name) => top.push(member("method", text(name, m.method_spell))),
        None => top.push(member("result", Node::Obj(vec![]))),
    }
    let key = method.and_then(target_key);
    if method.is_some() && (key.is_some() || m.args.is_some() || m.meta || m.odd_params) {
        let mut params = Vec::new();
        // Sometimes a named call without its target, or a target where
        // the method has none.
        let target_member = match key {
            Some(k) => (!(m.odd_params && m.name.is_multiple_of(5))).then_some(k),
            None if m.odd_params => Some(if m.name.is_multiple_of(2) {
                "name"
            } else {
                "uri"
            }),
            None => None,
        };
        if let Some(k) = target_member {
            let value = if k == "uri" {
                URIS[usize::from(m.name) % URIS.len()]
            } else {
                NAMES[usize::from(m.name) % NAMES.len()]
            };
            params.push(member(k, text(value, m.name_spell)));
        }
        if let Some(args) = &m.args {
            params.push(member("arguments", Arg::Obj(args.clone()).node()));
        }
        if m.meta {
            params.push(member(
                "_meta",
                Node::Obj(vec![member(META_KEY, text("2026-07-28", 0))]),
            ));
        }
        top.push(member("params", Node::Obj(params)));
    }

    let mut batch = None;
    let (mut prefix, mut suffix) = ("", "");
    for mu in &case.mutations {
        match *mu {
            Mutation::Dup { level, key, first } => {
                let keys = level_keys(level);
                let k = keys[usize::from(key) % keys.len()];
                if let Some(members) = level_members(&mut top, level) {
                    if let Some(at) = members.iter().position(|x| x.key == k) {
                        insert(members, at, member(k, other_value(k, method)), first);
                        tags.push(format!("dup {level:?}.{k}"));
                    }
                }
            }
            Mutation::DupArgs { pos, deep, first } => {
                let Some(params) = level_members(&mut top, Level::Params) else {
                    continue;
                };
                let Some(args) = get(params, "arguments") else {
                    continue;
                };
                let target = if deep {
                    nested_obj(args)
                } else {
                    match args {
                        Node::Obj(a) => Some(a),
                        _ => None,
                    }
                };
                if let Some(members) = target {
                    if members.is_empty() {
                        members.push(member("a", text("hi", 0)));
                    }
                    let at = usize::from(pos) % members.len();
                    let k = members[at].key.clone();
                    insert(members, at, member(&k, text("/etc/shadow", 0)), first);
                    tags.push(format!(
                        "dup in arguments{}",
                        if deep { " (nested)" } else { "" }
                    ));
                }
            }
            Mutation::Case {
                level,
                key,
                variant,
                first,
            } => {
                let keys = level_keys(level);
                let k = keys[usize::from(key) % keys.len()];
                let v = case_variant(k, variant);
                if let Some(members) = level_members(&mut top, level) {
                    let at = members.iter().position(|x| x.key == k).unwrap_or(0);
                    insert(members, at, member(&v, other_value(k, method)), first);
                    tags.push(format!("case {level:?}.{v}"));
                }
            }
            Mutation::EscapeKeys { level, spell } => {
                let level = [Level::Top, Level::Params, Level::Meta][usize::from(level) % 3];
                if let Some(members) = level_members(&mut top, level) {
                    for x in members.iter_mut() {
                        x.raw = Some(lit(&x.key, 1 + spell % 5));
                    }
                    tags.push(format!("escaped keys {level:?}"));
                }
            }
            Mutation::Surrogate { place } => {
                let s =
                    [r#""\ud800""#, r#""x\udfffy""#, r#""\udbff\u0041""#][usize::from(place) % 3];
                let in_args = place % 2 == 0;
                let placed = match level_members(&mut top, Level::Params) {
                    Some(params) if in_args => match get(params, "arguments") {
                        Some(Node::Obj(a)) => {
                            a.push(member("s", raw(s)));
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !placed {
                    top.push(member("x", raw(s)));
                }
                tags.push(format!(
                    "lone surrogate in {}",
                    if placed {
                        "arguments"
                    } else {
                        "an unknown member"
                    }
                ));
            }
            Mutation::NonFinite { which } => {
                let v = ["NaN", "Infinity", "-Infinity"][usize::from(which) % 3];
                if let Some(params) = level_members(&mut top, Level::Params) {
                    if let Some(Node::Obj(a)) = get(params, "arguments") {
                        a.push(member("n", raw(v)));
                        tags.push(format!("{v} in arguments"));
                    }
                }
            }
            Mutation::Nest { depth } => {
                let depth = usize::from(depth % 80);
                if let Some(params) = level_members(&mut top, Level::Params) {
                    if let Some(a) = get(params, "arguments") {
                        for _ in 0..depth {
                            *a = Node::Obj(vec![member("a", Node::Arr(vec![a.clone()]))]);
                        }
                        tags.push(format!("arguments nested {}", depth * 2));
                    }
                }
            }
            Mutation::Garbage { which } => {
                const AFTER: [&str; 9] = [
                    "x",
                    "}",
                    "]",
                    ",",
                    "\u{0}",
                    " {}",
                    "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_repo\"}}",
                    "//",
                    "\u{a0}",
                ];
                const BEFORE: [&str; 3] = ["\u{feff}", "\u{c}", "\u{a0}"];
                let w = usize::from(which);
                if w % 4 == 0 {
                    prefix = BEFORE[w / 4 % BEFORE.len()];
                    tags.push(format!("{prefix:?} before"));
                } else {
                    suffix = AFTER[w % AFTER.len()];
                    tags.push(format!("{suffix:?} after"));
                }
            }
            Mutation::Batch { others } => batch = Some(others),
            Mutation::Misplaced { which } => {
                let (k, v) = [
                    ("name", "delete_repo"),
                    ("uri", "file:///etc/passwd"),
                    ("method", "tools/call"),
                ][usize::from(which) % 3];
                if which % 2 == 0 {
                    top.push(member(k, text(v, 0)));
                    tags.push(format!("{k} at the top level"));
                } else if let Some(params) = level_members(&mut top, Level::Params) {
                    params.push(member(k, text(v, 0)));
                    tags.push(format!("{k} in params"));
                }
            }
        }
    }
    let mut node = Node::Obj(top);
    if let Some(others) = batch {
        let ping = Node::Obj(vec![
            member("jsonrpc", text("2.0", 0)),
            member("id", raw("42")),
            member("method", text("ping", 0)),
        ]);
        let mut items = vec![node];
        for i in 0..=others % 2 {
            if (others >> (2 + i)) % 2 == 0 {
                items.insert(0, ping.clone());
            } else {
                items.push(ping.clone());
            }
        }
        node = Node::Arr(items);
        tags.push("batch".into());
    }
    let mut ws = Ws {
        picks: case.ws.clone(),
        i: 0,
    };
    let mut out = String::from(prefix);
    out.push_str(ws.next());
    write_node(&node, &mut ws, &mut out);
    out.push_str(ws.next());
    out.push_str(suffix);
    (out.into_bytes(), tags)
}

/// The brief's own examples, always run first.
fn fixed() -> Vec<(&'static str, String)> {
    let call = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#)
    };
    vec![
        ("plain call", call(r#"{"name":"echo","arguments":{"a":1}}"#)),
        (
            "escaped id",
            r#"{"jsonrpc":"2.0","id":"\u0061","method":"ping"}"#.into(),
        ),
        (
            "name twice",
            call(r#"{"name":"echo","name":"delete_repo"}"#),
        ),
        ("Name and name", call(r#"{"name":"echo","Name":"delete_repo"}"#)),
        ("NAME and name", call(r#"{"NAME":"delete_repo","name":"echo"}"#)),
        (
            "METHOD and method",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call","params":{"name":"delete_repo"}}"#.into(),
        ),
        (
            "paramſ (U+017F) and params",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"param\u017f":{"name":"delete_repo"}}"#.into(),
        ),
        (
            "ıd (U+0131) and id",
            r#"{"jsonrpc":"2.0","id":1,"ıd":2,"method":"ping"}"#.into(),
        ),
        (
            "key twice in arguments",
            call(r#"{"name":"echo","arguments":{"path":"/pub","path":"/etc/shadow"}}"#),
        ),
        (
            "arguments twice",
            call(r#"{"name":"echo","arguments":{"a":1},"arguments":{"a":2}}"#),
        ),
        (
            "escaped name key twice",
            call(r#"{"name":"echo","\u006eame":"delete_repo"}"#),
        ),
        (
            "id 10.0000000000000001",
            r#"{"jsonrpc":"2.0","id":10.0000000000000001,"method":"ping"}"#.into(),
        ),
        (
            "id -0",
            r#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#.into(),
        ),
        ("id 1e2", r#"{"jsonrpc":"2.0","id":1e2,"method":"ping"}"#.into()),
        (
            "lone surrogate id",
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#.into(),
        ),
        (
            "1e400 in arguments",
            call(r#"{"name":"echo","arguments":{"n":1e400}}"#),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Readers.
// ---------------------------------------------------------------------------

/// One message as a reader holds it. `None`: absent or `null` (the gateway
/// reads both as absent; so do the readers here).
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    method: Option<V>,
    id: Option<V>,
    target: Option<V>,
    arguments: Option<V>,
}

impl Reading {
    fn fields(&self) -> [(&'static str, &Option<V>); 4] {
        [
            ("method", &self.method),
            ("id", &self.id),
            ("target", &self.target),
            ("arguments", &self.arguments),
        ]
    }
}

type Read = Result<Vec<Reading>, String>;

fn show_opt(v: &Option<V>) -> String {
    v.as_ref().map_or("(absent)".into(), V::show)
}

/// `j` with numbers as serde_json holds them (u64, i64 or f64), the last
/// copy of a member winning.
fn serde_like(j: &J) -> V {
    match j {
        J::Num(n) => match serde_json::from_str::<serde_json::Value>(n) {
            Ok(v) => V::serde(&v),
            Err(e) => V::Unreadable(format!("number {n}: {e}")),
        },
        J::Arr(items) => V::Arr(items.iter().map(serde_like).collect()),
        J::Obj(members) => V::Obj(
            members
                .iter()
                .map(|(k, v)| (k.clone(), serde_like(v)))
                .collect(),
        ),
        other => V::exact(other),
    }
}

/// The arguments as the gateway's policy reads them (`policy/strict.rs`).
fn policy_arguments(span: &[u8]) -> V {
    if let Ok(j) = json::parse(span, json::STRICT) {
        if json::has_duplicate(&j) {
            return V::Unreadable("a key given twice".into());
        }
    }
    match serde_json::from_slice::<serde_json::Value>(span) {
        Ok(v) => V::serde(&v),
        Err(e) => V::Unreadable(format!("serde_json: {e}")),
    }
}

fn gateway(body: &[u8]) -> Read {
    let facts = classify(body, 64).map_err(|e| e.to_string())?;
    Ok(facts
        .messages
        .iter()
        .map(|m| {
            let response = m.kind == Kind::Response;
            Reading {
                method: (!response).then(|| V::Str(json::cps(m.method.name()))),
                id: m.id.as_ref().map(|id| {
                    json::parse(id.raw().as_bytes(), json::STRICT)
                        .map_or_else(V::Unreadable, |j| V::exact(&j))
                }),
                target: m.target.as_deref().map(|t| V::Str(json::cps(t))),
                arguments: if response {
                    None
                } else {
                    m.arguments
                        .clone()
                        .map(|r| policy_arguments(body.get(r).unwrap_or_default()))
                },
            }
        })
        .collect())
}

fn serde(body: &[u8]) -> Read {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let one = |m: &serde_json::Value| {
        let present = |v: Option<&serde_json::Value>| v.filter(|v| !v.is_null()).map(V::serde);
        let method = present(m.get("method"));
        let params = m.get("params").filter(|p| p.is_object());
        let key = m
            .get("method")
            .and_then(serde_json::Value::as_str)
            .and_then(target_key);
        Reading {
            id: present(m.get("id")),
            target: method
                .as_ref()
                .and(key)
                .and_then(|k| present(params.and_then(|p| p.get(k)))),
            arguments: method
                .as_ref()
                .and_then(|_| present(params.and_then(|p| p.get("arguments")))),
            method,
        }
    };
    Ok(match &v {
        serde_json::Value::Array(items) => items.iter().map(one).collect(),
        m => vec![one(m)],
    })
}

/// Go's `encoding/json` into a struct: fields matched case-insensitively.
fn go(body: &[u8]) -> Read {
    let doc = json::parse(body, json::STRICT)?;
    let one = |m: &J| {
        let J::Obj(top) = m else {
            return Reading {
                method: None,
                id: None,
                target: None,
                arguments: None,
            };
        };
        fn present(v: Option<&J>) -> Option<&J> {
            v.filter(|v| **v != J::Null)
        }
        let method = present(json::go_field(top, "method"));
        let id = present(json::go_field(top, "id")).map(V::exact);
        let Some(method) = method else {
            return Reading {
                method: None,
                id,
                target: None,
                arguments: None,
            };
        };
        let params = match json::go_field(top, "params") {
            Some(J::Obj(p)) => Some(p.as_slice()),
            _ => None,
        };
        let key = match method {
            J::Str(s) => target_key(&json::lossy(s)),
            _ => None,
        };
        Reading {
            method: Some(V::exact(method)),
            id,
            target: key
                .and_then(|k| present(params.and_then(|p| json::go_field(p, k))))
                .map(V::exact),
            arguments: present(params.and_then(|p| json::go_field(p, "arguments"))).map(serde_like),
        }
    };
    Ok(match &doc {
        J::Arr(items) => items.iter().map(one).collect(),
        m => vec![one(m)],
    })
}

/// Reads JSON lines (hex) on stdin; writes one JSON line per input with
/// Python's reading, every value tagged so nothing is lost on the way back:
/// numbers `{"n": text}`, strings `{"s": [code points]}`, objects
/// `{"o": [[name code points, value], ...]}`.
const PYTHON: &str = r#"
import json, sys

def enc(v):
    if v is None or v is True or v is False:
        return v
    if isinstance(v, int):
        return {"n": str(v)}
    if isinstance(v, float):
        return {"n": repr(v)}
    if isinstance(v, str):
        return {"s": [ord(c) for c in v]}
    if isinstance(v, list):
        return [enc(x) for x in v]
    return {"o": [[[ord(c) for c in k], enc(x)] for k, x in v.items()]}

NAMED = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri",
         "resources/subscribe": "uri", "resources/unsubscribe": "uri"}

def read(m):
    out = {}
    if not isinstance(m, dict):
        return out
    if m.get("id") is not None:
        out["id"] = enc(m["id"])
    method = m.get("method")
    if method is None:
        return out
    out["method"] = enc(method)
    params = m.get("params")
    if isinstance(params, dict):
        key = NAMED.get(method) if isinstance(method, str) else None
        if key is not None and params.get(key) is not None:
            out["target"] = enc(params[key])
        if params.get("arguments") is not None:
            out["arguments"] = enc(params["arguments"])
    return out

sys.setrecursionlimit(10000)
for line in sys.stdin:
    try:
        doc = json.loads(bytes.fromhex(line.strip()))
    except Exception as e:
        msg = (type(e).__name__ + ": " + str(e)).encode("ascii", "backslashreplace").decode()
        print(json.dumps({"e": msg}))
        continue
    msgs = doc if isinstance(doc, list) else [doc]
    print(json.dumps({"r": [read(m) for m in msgs]}))
"#;

/// A value back from Python (read with the shared reader: its nesting can
/// pass serde_json's recursion limit).
fn from_python(v: &J) -> V {
    let cps = |v: Option<&J>| -> Vec<u32> {
        match v {
            Some(J::Arr(a)) => a
                .iter()
                .filter_map(|c| match c {
                    J::Num(n) => n.parse().ok(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    match v {
        J::Null => V::Null,
        J::Bool(b) => V::Bool(*b),
        J::Arr(items) => V::Arr(items.iter().map(from_python).collect()),
        J::Obj(o) => {
            if let Some(J::Str(n)) = json::last(o, "n") {
                V::Num(json::canon_num(&json::lossy(n)))
            } else if let Some(s) = json::last(o, "s") {
                V::Str(cps(Some(s)))
            } else {
                let members = match json::last(o, "o") {
                    Some(J::Arr(m)) => m.as_slice(),
                    _ => &[],
                };
                V::Obj(
                    members
                        .iter()
                        .filter_map(|kv| match kv {
                            J::Arr(kv) if kv.len() == 2 => {
                                Some((cps(kv.first()), from_python(&kv[1])))
                            }
                            _ => None,
                        })
                        .collect(),
                )
            }
        }
        other => V::Unreadable(format!("unexpected {other:?}")),
    }
}

/// Python's reading of every body, from one `python3` process.
fn python(bodies: &[Vec<u8>]) -> Vec<Read> {
    let mut child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be installed to run the parser differential");
    let mut stdin = child.stdin.take().expect("python's stdin");
    let input: String = bodies
        .iter()
        .map(|b| {
            let mut line: String = b.iter().map(|x| format!("{x:02x}")).collect();
            line.push('\n');
            line
        })
        .collect();
    // Written from another thread: python answers while it reads.
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).expect("write to python");
    });
    let stdout = child.stdout.take().expect("python's stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("a line from python"))
        .collect();
    writer.join().expect("the writer thread");
    let status = child.wait().expect("python exits");
    assert!(status.success(), "python3 failed: {status}");
    assert_eq!(lines.len(), bodies.len(), "one python answer per message");
    lines
        .iter()
        .map(|line| {
            let v = json::parse(line.as_bytes(), json::STRICT).expect("python's JSON line");
            let J::Obj(top) = &v else {
                panic!("python wrote {line}");
            };
            if let Some(J::Str(e)) = json::last(top, "e") {
                return Err(json::lossy(e));
            }
            let Some(J::Arr(messages)) = json::last(top, "r") else {
                panic!("python wrote {line}");
            };
            Ok(messages
                .iter()
                .map(|m| {
                    let field = |k: &str| match m {
                        J::Obj(m) => json::last(m, k).map(from_python),
                        _ => None,
                    };
                    Reading {
                        method: field("method"),
                        id: field("id"),
                        target: field("target"),
                        arguments: field("arguments"),
                    }
                })
                .collect())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Comparison.
// ---------------------------------------------------------------------------

struct Finding {
    class: String,
    input: Vec<u8>,
    what: String,
    detail: String,
}

/// Why readings differ, for grouping: first a member on the field's path
/// given twice or (for the case-insensitive reader) named again in another
/// case; else what kind of value was read differently.
fn cause(msg: Option<&J>, field: &str, who: &str, ours: &Option<V>, theirs: &Option<V>) -> String {
    if let Some(J::Obj(top)) = msg {
        type Members = [(Vec<u32>, J)];
        let mut path: Vec<(&Members, &str, &str)> = Vec::new();
        match field {
            "method" => path.push((top, "method", "")),
            "id" => path.push((top, "id", "")),
            _ => {
                path.push((top, "method", ""));
                path.push((top, "params", ""));
                let keys: &[&str] = if field == "target" {
                    &["name", "uri"]
                } else {
                    &["arguments"]
                };
                for p in [json::last(top, "params"), json::go_field(top, "params")]
                    .into_iter()
                    .flatten()
                {
                    if let J::Obj(p) = p {
                        for k in keys {
                            path.push((p, k, "params."));
                        }
                    }
                }
            }
        }
        for (members, name, at) in path {
            let exact = json::cps(name);
            if members.iter().filter(|(k, _)| *k == exact).count() > 1 {
                return format!("`{at}{name}` given twice");
            }
            let folded = json::go_fold(&exact);
            if who == "go-model"
                && members
                    .iter()
                    .any(|(k, _)| *k != exact && json::go_fold(k) == folded)
            {
                return format!("`{at}{name}` named again in another case");
            }
        }
    }
    let (Some(a), Some(b)) = (ours, theirs) else {
        return "present for one reader, absent for the other".into();
    };
    let Some((a, b)) = first_difference(a, b) else {
        return "values differ".into();
    };
    match (a, b) {
        (V::Unreadable(w), _) if w.contains("twice") => {
            "a key given twice inside arguments (policy cannot read them; the others take the last copy)".into()
        }
        (V::Unreadable(w), _) if w.contains("surrogate") || w.contains("hex escape") => {
            "a lone surrogate escape (serde_json refuses it; Python keeps it)".into()
        }
        (V::Unreadable(w), _) | (_, V::Unreadable(w)) if w.contains("out of range") => {
            "a number beyond f64 such as 1e400 (serde_json refuses it; Python reads inf)".into()
        }
        (V::Num(x), V::Num(y)) if x.contains("Infinity") || y.contains("Infinity") => {
            "a number beyond f64 such as 1e400 (serde_json refuses it; Python reads inf)".into()
        }
        (V::Num(_), V::Num(_)) => {
            "a number held at another precision (past 2^64, or more digits than f64 keeps)".into()
        }
        _ => format!("{field} values differ"),
    }
}

/// The first place two values differ.
fn first_difference<'a>(a: &'a V, b: &'a V) -> Option<(&'a V, &'a V)> {
    match (a, b) {
        _ if a == b => None,
        (V::Arr(x), V::Arr(y)) if x.len() == y.len() => {
            x.iter().zip(y).find_map(|(p, q)| first_difference(p, q))
        }
        (V::Obj(x), V::Obj(y)) if x.keys().eq(y.keys()) => x
            .values()
            .zip(y.values())
            .find_map(|(p, q)| first_difference(p, q)),
        _ => Some((a, b)),
    }
}

/// A reader's error without its position, for grouping.
fn error_kind(e: &str) -> &str {
    e.split(" at line ").next().unwrap_or(e)
}

fn compare(body: &[u8], ours: &[Reading], readers: &[(&str, &Read)], out: &mut Vec<Finding>) {
    let doc = json::parse(body, json::STRICT).ok();
    let msgs: Vec<&J> = match &doc {
        Some(J::Arr(items)) if items.len() == ours.len() => items.iter().collect(),
        Some(m) => vec![m],
        None => Vec::new(),
    };
    for (who, read) in readers {
        match read {
            Err(e) => out.push(Finding {
                class: format!(
                    "{who} cannot read a message the gateway accepted: {}",
                    error_kind(e)
                ),
                input: body.to_vec(),
                what: format!("{who}: {e}"),
                detail: String::new(),
            }),
            Ok(theirs) if theirs.len() != ours.len() => out.push(Finding {
                class: "another number of messages".into(),
                input: body.to_vec(),
                what: format!("gateway {} messages, {who} {}", ours.len(), theirs.len()),
                detail: String::new(),
            }),
            Ok(theirs) => {
                for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
                    for ((field, a), (_, b)) in o.fields().into_iter().zip(t.fields()) {
                        if a != b {
                            let why = cause(msgs.get(i).copied(), field, who, a, b);
                            out.push(Finding {
                                class: format!("{why} → {field} read differently"),
                                input: body.to_vec(),
                                what: format!(
                                    "message {i} {field}: gateway {}, {who} {}",
                                    show_opt(a),
                                    show_opt(b)
                                ),
                                detail: String::new(),
                            });
                        }
                    }
                }
            }
        }
    }
}

fn generated() -> Vec<(Vec<u8>, Vec<String>)> {
    let config = Config {
        cases: CASES as u32,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let strategy = case();
    (0..CASES)
        .map(|_| {
            let c = strategy
                .new_tree(&mut runner)
                .expect("a generated case")
                .current();
            build(&c)
        })
        .collect()
}

fn show_input(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

#[test]
fn the_classifier_reads_what_every_other_reader_reads() {
    let mut inputs: Vec<(Vec<u8>, Vec<String>)> = fixed()
        .into_iter()
        .map(|(name, body)| (body.into_bytes(), vec![format!("fixed: {name}")]))
        .collect();
    inputs.extend(generated());
    // Each distinct message once.
    let mut seen = std::collections::HashSet::new();
    inputs.retain(|(body, _)| seen.insert(body.clone()));
    let bodies: Vec<Vec<u8>> = inputs.iter().map(|(b, _)| b.clone()).collect();
    let py = python(&bodies);

    let mut findings = Vec::new();
    let mut accepted = 0;
    for ((body, tags), py) in inputs.iter().zip(&py) {
        let Ok(ours) = gateway(body) else { continue };
        accepted += 1;
        let before = findings.len();
        let (s, g) = (serde(body), go(body));
        compare(
            body,
            &ours,
            &[("serde_json", &s), ("python", py), ("go-model", &g)],
            &mut findings,
        );
        for f in &mut findings[before..] {
            f.detail = tags.join(", ");
        }
    }

    // Group by class, then by input (shortest first), each input once with
    // every reading that differs.
    type ByInput<'a> = BTreeMap<(usize, &'a [u8]), Vec<&'a Finding>>;
    let mut classes: BTreeMap<&str, ByInput> = BTreeMap::new();
    for f in &findings {
        classes
            .entry(&f.class)
            .or_default()
            .entry((f.input.len(), &f.input))
            .or_default()
            .push(f);
    }
    let mut report = format!(
        "{} findings in {} classes; {} of {} messages accepted by the classifier\n",
        findings.len(),
        classes.len(),
        accepted,
        inputs.len()
    );
    let mut full = report.clone();
    for (class, by_input) in &classes {
        let count: usize = by_input.values().map(Vec::len).sum();
        let head = format!(
            "\n== {class} ({count} findings, {} inputs)\n",
            by_input.len()
        );
        report.push_str(&head);
        full.push_str(&head);
        for (i, ((_, input), list)) in by_input.iter().enumerate() {
            let mut text = format!("  input {}\n", show_input(input));
            for f in list {
                let _ = writeln!(text, "    {}", f.what);
            }
            let how = match list[0].detail.as_str() {
                "" => "no mutation",
                d => d,
            };
            let _ = writeln!(text, "    (generated with: {how})");
            full.push_str(&text);
            if i < 3 {
                report.push_str(&text);
            }
        }
    }
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-findings.txt");
    let _ = std::fs::write(&path, &full);
    // Differences settled deliberately (SECURITY.md): each either fails
    // closed (policy cannot read the arguments, so a deny holds, an allow
    // fails and an approval rule refuses the call) or touches nothing a
    // decision reads (an id is echoed to the client exactly as it wrote it;
    // members the gateway skips are forwarded as they came).
    const SETTLED: [&str; 6] = [
        "hex escape",
        "a key given twice inside arguments",
        "surrogate",
        "beyond f64",
        "another precision",
        "number out of range",
    ];
    let findings: Vec<_> = findings
        .into_iter()
        .filter(|f| !SETTLED.iter().any(|s| f.class.contains(s)))
        .collect();
    assert!(
        findings.is_empty(),
        "{report}\n(all findings: {})",
        path.display()
    );
}

/// The harness itself: plain messages read alike everywhere, and
/// serde_json's `Value` keeps the last copy of a member.
#[test]
fn plain_messages_read_alike_everywhere() {
    let v: serde_json::Value = serde_json::from_str(r#"{"a":1,"a":2}"#).expect("valid JSON");
    assert_eq!(v["a"], 2, "serde_json's Value keeps the last duplicate");
    let bodies: Vec<Vec<u8>> = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,2.5,"x"],"b":{"c":null}}}}"#,
        r#"{"jsonrpc":"2.0","id":"r1","method":"resources/read","params":{"uri":"file:///pub/a"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet"}}]"#,
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    let py = python(&bodies);
    for (body, py) in bodies.iter().zip(&py) {
        let ours = gateway(body).expect("the classifier accepts a plain message");
        let mut findings = Vec::new();
        compare(
            body,
            &ours,
            &[
                ("serde_json", &serde(body)),
                ("python", py),
                ("go-model", &go(body)),
            ],
            &mut findings,
        );
        let text: Vec<String> = findings.iter().map(|f| f.what.clone()).collect();
        assert!(text.is_empty(), "{}: {text:?}", show_input(body));
    }
}
