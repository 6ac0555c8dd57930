//! Reads what the response watcher needs of one server message — `id`,
//! `method`, `error.code`, whether `result` is an object and its `isError`
//! — from the message fed in pieces, holding a few hundred bytes however
//! large it is. For answers too large to keep whole while a slow client
//! reads them: the gateway still learns how the call ended. What it cannot
//! read plainly (an escaped or repeated member name it looks at, a broken
//! structure, a batch) makes the message unreadable, as a parse error would.

use std::borrow::Cow;

/// Nesting deeper than this is refused (serde_json's limit).
const MAX_DEPTH: u8 = 128;
/// The longest value kept of a member it looks at (an id, a method name).
const MAX_CAPTURE: usize = 512;
/// Member names it compares are at most this long.
const KEY_ROOM: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// After `[`: a value or `]`.
    FirstValue,
    /// After `:` or `,` in an array (or at the start): a value.
    Value,
    /// After `{`: a member name or `}`.
    FirstKey,
    /// After `,` in an object: a member name.
    Key,
    Colon,
    /// After a value: `,` or the container's close.
    After,
    /// The message closed: whitespace only.
    Done,
}

/// A top-level member, or one inside `result`/`error`, that is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Id,
    Method,
    Result,
    Error,
    Code,
    IsError,
    Other,
}

#[derive(Debug, Default)]
struct Found {
    id: Option<Vec<u8>>,
    method: Option<Vec<u8>>,
    /// The first byte of the value (`{`: an object, `n`: null).
    result: Option<u8>,
    error: Option<u8>,
    code: Option<Vec<u8>>,
    is_error: Option<Vec<u8>>,
}

/// What the gateway reads of one server message, however it was read.
pub struct Seen<'a> {
    pub id: Option<&'a [u8]>,
    pub method: Option<Cow<'a, str>>,
    pub error_code: Option<i64>,
    /// The result, when it is an object.
    pub result: Option<ResultSeen<'a>>,
}

pub struct ResultSeen<'a> {
    /// `isError: true` (a `tools/call` tool error).
    pub is_error: bool,
    /// `tools` (a `tools/list` catalog), raw.
    pub tools: Option<&'a [u8]>,
}

/// An incremental reader of one JSON-RPC message's outline.
#[derive(Debug)]
pub struct Probe {
    expect: Expect,
    depth: u8,
    /// Bit `d - 1`: the container at depth `d` is an array.
    arrays: u128,
    /// Inside a string: `Some(true)` for a member name.
    string: Option<bool>,
    escape: bool,
    scalar: bool,
    key: [u8; KEY_ROOM],
    /// Bytes of the current member name; past `KEY_ROOM`, not one it looks at.
    key_len: usize,
    key_escaped: bool,
    /// The member whose value comes next, at depth 1 and 2.
    top: Member,
    inner: Member,
    /// The value being kept, and where it goes.
    capture: Vec<u8>,
    capturing: Option<Member>,
    found: Found,
    broken: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    pub fn new() -> Self {
        Probe {
            expect: Expect::Value,
            depth: 0,
            arrays: 0,
            string: None,
            escape: false,
            scalar: false,
            key: [0; KEY_ROOM],
            key_len: 0,
            key_escaped: false,
            top: Member::Other,
            inner: Member::Other,
            capture: Vec::new(),
            capturing: None,
            found: Found::default(),
            broken: false,
        }
    }

    /// Read the next piece of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.broken {
            if let Some(is_key) = self.string {
                if self.escape {
                    self.escape = false;
                    self.take(&bytes[..1], is_key);
                    bytes = &bytes[1..];
                    continue;
                }
                let Some(i) = memchr::memchr2(b'"', b'\\', bytes) else {
                    self.take(bytes, is_key);
                    return;
                };
                self.take(&bytes[..i], is_key);
                if bytes[i] == b'\\' {
                    self.escape = true;
                    self.key_escaped |= is_key;
                    self.take(b"\\", is_key);
                } else {
                    self.string = None;
                    if is_key {
                        self.key_done();
                    } else {
                        self.take(b"\"", false);
                        self.value_done();
                    }
                }
                bytes = &bytes[i + 1..];
                continue;
            }
            if self.scalar {
                let n = bytes
                    .iter()
                    .position(|c| !is_scalar_byte(*c))
                    .unwrap_or(bytes.len());
                self.take(&bytes[..n], false);
                if n == bytes.len() {
                    return;
                }
                self.scalar = false;
                self.value_done();
                bytes = &bytes[n..];
                continue;
            }
            let c = bytes[0];
            bytes = &bytes[1..];
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                continue;
            }
            self.structural(c);
        }
    }

    /// What the whole message said, once it has all been fed; `None` when
    /// it was not one readable JSON-RPC object.
    pub(super) fn seen(&self) -> Option<Seen<'_>> {
        if self.broken || self.expect != Expect::Done || self.escape || self.scalar {
            return None;
        }
        let f = &self.found;
        // A member that is `null` is read as absent, as serde reads an `Option`.
        fn given(v: &Option<Vec<u8>>) -> Option<&[u8]> {
            v.as_deref().filter(|v| *v != b"null")
        }
        let method = match given(&f.method) {
            None => None,
            Some(m) => Some(match super::skim::plain_str(m) {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(serde_json::from_slice::<String>(m).ok()?),
            }),
        };
        let error_code = match f.error {
            None | Some(b'n') => None,
            Some(b'{') => Some(match &f.code {
                Some(c) => serde_json::from_slice::<i64>(c).ok()?,
                None => 0,
            }),
            Some(_) => return None,
        };
        let result = (f.result == Some(b'{')).then(|| ResultSeen {
            is_error: f.is_error.as_deref() == Some(b"true"),
            tools: None,
        });
        Some(Seen {
            id: given(&f.id),
            method,
            error_code,
            result,
        })
    }

    /// Bytes it holds (itself and the value it keeps).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        let f = &self.found;
        let kept = [&f.id, &f.method, &f.code, &f.is_error]
            .iter()
            .filter_map(|v| v.as_ref().map(Vec::capacity))
            .sum::<usize>();
        std::mem::size_of::<Self>() + self.capture.capacity() + kept
    }

    fn in_array(&self) -> bool {
        self.depth > 0 && self.arrays & (1u128 << (self.depth - 1)) != 0
    }

    fn structural(&mut self, c: u8) {
        match self.expect {
            Expect::Done => self.broken = true,
            Expect::Colon => {
                if c == b':' {
                    self.expect = Expect::Value;
                } else {
                    self.broken = true;
                }
            }
            Expect::FirstKey | Expect::Key => match c {
                b'"' => {
                    self.string = Some(true);
                    self.key_len = 0;
                    self.key_escaped = false;
                }
                b'}' if self.expect == Expect::FirstKey => self.close(),
                _ => self.broken = true,
            },
            Expect::After => match c {
                b',' => {
                    self.expect = if self.in_array() {
                        Expect::Value
                    } else {
                        Expect::Key
                    }
                }
                b'}' if !self.in_array() => self.close(),
                b']' if self.in_array() => self.close(),
                _ => self.broken = true,
            },
            Expect::FirstValue | Expect::Value => {
                if c == b']' && self.expect == Expect::FirstValue {
                    self.close();
                    return;
                }
                self.value_start(c);
            }
        }
    }

    fn value_start(&mut self, c: u8) {
        let slot = self.slot();
        let container = matches!(c, b'{' | b'[');
        match slot {
            Some(Member::Result) => self.found.result = Some(c),
            Some(Member::Error) => self.found.error = Some(c),
            Some(m) if container => {
                // An id or method that is not a scalar matches nothing and
                // reads as no string; a kept `{` says so.
                self.store(m, b"{".to_vec());
            }
            Some(m) => {
                self.capture.clear();
                self.capturing = Some(m);
            }
            None => {}
        }
        match c {
            b'{' | b'[' => {
                if self.depth == MAX_DEPTH || (self.depth == 0 && c == b'[') {
                    // Too deep, or a batch: not read here.
                    self.broken = true;
                    return;
                }
                self.depth += 1;
                if c == b'[' {
                    self.arrays |= 1u128 << (self.depth - 1);
                    self.expect = Expect::FirstValue;
                } else {
                    self.arrays &= !(1u128 << (self.depth - 1));
                    self.expect = Expect::FirstKey;
                }
                if self.depth == 2 {
                    self.inner = Member::Other;
                }
            }
            b'"' => {
                if self.depth == 0 {
                    self.broken = true;
                    return;
                }
                self.string = Some(false);
                self.take(b"\"", false);
            }
            c if is_scalar_byte(c) && self.depth > 0 => {
                self.scalar = true;
                self.take(&[c], false);
            }
            _ => self.broken = true,
        }
    }

    /// The member a value starting now belongs to, if it is looked at.
    fn slot(&self) -> Option<Member> {
        match self.depth {
            1 if !self.in_array() => match self.top {
                Member::Other => None,
                m => Some(m),
            },
            2 if !self.in_array() && matches!(self.top, Member::Result | Member::Error) => {
                match self.inner {
                    Member::Code if self.top == Member::Error => Some(Member::Code),
                    Member::IsError if self.top == Member::Result => Some(Member::IsError),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn close(&mut self) {
        self.depth -= 1;
        self.value_done();
    }

    fn value_done(&mut self) {
        if let Some(m) = self.capturing.take() {
            let kept = std::mem::take(&mut self.capture);
            self.store(m, kept);
        }
        self.expect = if self.depth == 0 {
            Expect::Done
        } else {
            Expect::After
        };
    }

    fn store(&mut self, m: Member, value: Vec<u8>) {
        let f = &mut self.found;
        let slot = match m {
            Member::Id => &mut f.id,
            Member::Method => &mut f.method,
            Member::Code => &mut f.code,
            Member::IsError => &mut f.is_error,
            _ => return,
        };
        *slot = Some(value);
    }

    fn key_done(&mut self) {
        self.expect = Expect::Colon;
        let looked_at = self.depth == 1
            || (self.depth == 2 && matches!(self.top, Member::Result | Member::Error));
        if !looked_at || self.in_array() {
            return;
        }
        if self.key_escaped {
            // A name the gateway would have to unescape to compare: the
            // parser it defers to elsewhere reads it; here it is unreadable.
            self.broken = true;
            return;
        }
        let key = &self.key[..self.key_len.min(KEY_ROOM)];
        let long = self.key_len > KEY_ROOM;
        let f = &self.found;
        let (member, repeated) = if self.depth == 1 {
            match key {
                b"id" if !long => (Member::Id, f.id.is_some()),
                b"method" if !long => (Member::Method, f.method.is_some()),
                b"result" if !long => (Member::Result, f.result.is_some()),
                b"error" if !long => (Member::Error, f.error.is_some()),
                _ => (Member::Other, false),
            }
        } else {
            match key {
                b"code" if !long && self.top == Member::Error => (Member::Code, f.code.is_some()),
                b"isError" if !long && self.top == Member::Result => {
                    (Member::IsError, f.is_error.is_some())
                }
                _ => (Member::Other, false),
            }
        };
        if repeated {
            // Two copies: a parser would have to choose one.
            self.broken = true;
            return;
        }
        if self.depth == 1 {
            self.top = member;
        } else {
            self.inner = member;
        }
    }

    fn take(&mut self, bytes: &[u8], is_key: bool) {
        if is_key {
            let room = KEY_ROOM.saturating_sub(self.key_len);
            let n = bytes.len().min(room);
            self.key[self.key_len.min(KEY_ROOM)..][..n].copy_from_slice(&bytes[..n]);
            self.key_len = self.key_len.saturating_add(bytes.len());
        } else if self.capturing.is_some() {
            if self.capture.len() + bytes.len() > MAX_CAPTURE {
                self.broken = true;
                return;
            }
            self.capture.extend_from_slice(bytes);
        }
    }
}

fn is_scalar_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.')
}

#[cfg(test)]
mod tests {
    use super::Probe;

    /// (id, method, error code, result is an object, isError).
    type Outline = (Option<String>, Option<String>, Option<i64>, bool, bool);

    /// The outline as read
    /// when `text` is fed `step` bytes at a time.
    fn read(text: &[u8], step: usize) -> Option<Outline> {
        let mut p = Probe::new();
        for piece in text.chunks(step.max(1)) {
            p.feed(piece);
        }
        let s = p.seen()?;
        Some((
            s.id.map(|i| String::from_utf8_lossy(i).into_owned()),
            s.method.map(|m| m.into_owned()),
            s.error_code,
            s.result.is_some(),
            s.result.is_some_and(|r| r.is_error),
        ))
    }

    #[test]
    fn the_outline_is_read_whatever_the_piece_size_and_member_order() {
        let big = "x\\\"y".repeat(1000);
        let cases: Vec<(String, _)> = vec![
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"{big}"}}],"isError":true}}}}"#
                ),
                (Some("7".into()), None, None, true, true),
            ),
            (
                // The TypeScript SDK writes the result before the id.
                format!(
                    r#"{{"result":{{"content":[{{"text":"{big}","isError":true}}]}},"jsonrpc":"2.0","id":"a\"b"}}"#
                ),
                (Some(r#""a\"b""#.into()), None, None, true, false),
            ),
            (
                format!(r#" {{ "id" : 3 , "error" : {{ "data" : "{big}" , "code" : -32001 }} }} "#),
                (Some("3".into()), None, Some(-32001), false, false),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"id":9}}"#.into(),
                (
                    None,
                    Some("notifications/progress".into()),
                    None,
                    false,
                    false,
                ),
            ),
            (
                r#"{"id":1,"error":{"message":"no code"},"result":[1,{"isError":true}]}"#.into(),
                (Some("1".into()), None, Some(0), false, false),
            ),
            (
                r#"{"id":1,"result":{"nested":{"isError":true,"id":2}}}"#.into(),
                (Some("1".into()), None, None, true, false),
            ),
            (
                r#"{"id":null,"method":null,"error":null,"result":null}"#.into(),
                (None, None, None, false, false),
            ),
        ];
        for (text, want) in cases {
            for step in [1, 2, 7, 64, text.len()] {
                assert_eq!(
                    read(text.as_bytes(), step),
                    Some(want.clone()),
                    "{text} by {step}"
                );
            }
            // What serde_json reads of the same text agrees.
            let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
            let id = want
                .0
                .map(|i| serde_json::from_str::<serde_json::Value>(&i).expect("an id"));
            assert_eq!(id.as_ref(), v.get("id").filter(|i| !i.is_null()), "{text}");
        }
    }

    #[test]
    fn what_it_cannot_read_plainly_is_unreadable() {
        for text in [
            "",
            "[]",
            r#"[{"id":1,"result":{}}]"#,
            r#"{"id":1,"result":{}"#,
            r#"{"id":1,"result":{}} x"#,
            r#"{"id":1,"id":2,"result":{}}"#,
            r#"{"\u0069d":1,"result":{}}"#,
            r#"{"id":1,"error":{"code":1,"code":2}}"#,
            r#"{"id":1,"result":{"isError":false,"isError":true}}"#,
            r#"{"id":1,"error":"text"}"#,
            r#"{"id":1,"error":{"code":"1"}}"#,
            r#"{"method":7}"#,
            r#"{"id":1 2}"#,
            r#"{"id":1,}"#,
            r#"{"id":1]"#,
            r#""str""#,
            "17",
        ] {
            for step in [1, 3, text.len()] {
                assert_eq!(read(text.as_bytes(), step), None, "{text} by {step}");
            }
        }
        let deep = format!(
            r#"{{"id":1,"result":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(read(deep.as_bytes(), 16), None);
        let long_id = format!(r#"{{"id":"{}","result":{{}}}}"#, "a".repeat(1000));
        assert_eq!(read(long_id.as_bytes(), 16), None);
    }

    #[test]
    fn escaped_member_names_below_those_it_looks_at_pass() {
        let text = r#"{"id":1,"result":{"content":{"\u0069sError":true,"\"":1}}}"#;
        assert_eq!(
            read(text.as_bytes(), 5),
            Some((Some("1".into()), None, None, true, false))
        );
        let method = r#"{"method":"notifications/\u0070rogress"}"#;
        assert_eq!(
            read(method.as_bytes(), 5),
            Some((
                None,
                Some("notifications/progress".into()),
                None,
                false,
                false
            ))
        );
    }
}
