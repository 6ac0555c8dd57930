//! An independent JSON reader for the fuzz targets and the differential
//! test: it keeps what other readers lose or refuse — every member of an
//! object in document order (duplicates included), each number's exact
//! text, lone surrogates in strings — so each "reader" being modelled
//! (last copy wins, first copy wins, case-insensitive member names, Python's
//! extensions) can be applied on top of one parse.

use std::collections::BTreeMap;

/// A parsed JSON value, nothing resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    /// The number's text exactly as written.
    Num(String),
    /// Unicode code points; a lone surrogate escape stays as its value.
    Str(Vec<u32>),
    Arr(Vec<J>),
    /// Members in document order, duplicates kept.
    Obj(Vec<(Vec<u32>, J)>),
}

/// What a reader accepts beyond RFC 8259.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// `NaN`, `Infinity`, `-Infinity` (Python's `json` module).
    pub non_finite: bool,
    /// Deepest nesting read; deeper is an error.
    pub max_depth: usize,
}

/// Python's `json.loads`: non-finite numbers, recursion up to about 1000.
pub const PYTHON: Dialect = Dialect {
    non_finite: true,
    max_depth: 990,
};

/// RFC 8259 with a generous depth.
pub const STRICT: Dialect = Dialect {
    non_finite: false,
    max_depth: 1000,
};

/// Parse one JSON text (UTF-8; whitespace around it allowed).
pub fn parse(bytes: &[u8], dialect: Dialect) -> Result<J, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        d: dialect,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    d: Dialect,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<J, String> {
        if depth >= self.d.max_depth {
            return Err("nested too deep".into());
        }
        match self.b.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(J::Str),
            Some(b't') if self.eat("true") => Ok(J::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(J::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(J::Null),
            Some(b'N') if self.d.non_finite && self.eat("NaN") => Ok(J::Num("NaN".into())),
            Some(b'I') if self.d.non_finite && self.eat("Infinity") => {
                Ok(J::Num("Infinity".into()))
            }
            Some(b'-') if self.d.non_finite && self.eat("-Infinity") => {
                Ok(J::Num("-Infinity".into()))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(c) => Err(format!("unexpected byte {c:#04x} at {}", self.i)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<J, String> {
        self.i += 1;
        let mut members = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(J::Obj(members));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected a key at {}", self.i));
            }
            let key = self.string()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(format!("expected `:` at {}", self.i));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(J::Obj(members));
                }
                _ => return Err(format!("expected `,` or `}}` at {}", self.i)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<J, String> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(J::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(J::Arr(items));
                }
                _ => return Err(format!("expected `,` or `]` at {}", self.i)),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<J, String> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(format!("bad number at {start}")),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(format!("bad fraction at {start}"));
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(format!("bad exponent at {start}"));
            }
        }
        Ok(J::Num(self.s[start..self.i].to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| format!("bad \\u escape at {}", self.i))?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|e| e.to_string())
    }

    /// A string starting at the opening quote; surrogate pairs joined as
    /// Python joins them, lone surrogates kept.
    fn string(&mut self) -> Result<Vec<u32>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err("unterminated string".into());
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1).ok_or("unterminated escape")?;
                    self.i += 2;
                    out.push(match e {
                        b'"' => 0x22,
                        b'\\' => 0x5c,
                        b'/' => 0x2f,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => 0x0a,
                        b'r' => 0x0d,
                        b't' => 0x09,
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xd800..0xdc00).contains(&u) && self.s[self.i..].starts_with("\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                match self.hex4() {
                                    Ok(l) if (0xdc00..0xe000).contains(&l) => {
                                        0x10000 + ((u - 0xd800) << 10) + (l - 0xdc00)
                                    }
                                    _ => {
                                        self.i = save;
                                        u
                                    }
                                }
                            } else {
                                u
                            }
                        }
                        _ => return Err(format!("bad escape at {}", self.i - 2)),
                    });
                }
                0..=0x1f => return Err(format!("control character in string at {}", self.i)),
                _ => {
                    let ch = self.s[self.i..]
                        .chars()
                        .next()
                        .ok_or("unterminated string")?;
                    out.push(ch as u32);
                    self.i += ch.len_utf8();
                }
            }
        }
    }
}

/// Code points of a Rust string.
pub fn cps(s: &str) -> Vec<u32> {
    s.chars().map(|c| c as u32).collect()
}

/// A string from code points, lone surrogates as U+FFFD.
pub fn lossy(cps: &[u32]) -> String {
    cps.iter()
        .map(|&c| char::from_u32(c).unwrap_or('\u{fffd}'))
        .collect()
}

/// Does any object, at any depth, name a member twice?
pub fn has_duplicate(j: &J) -> bool {
    match j {
        J::Arr(items) => items.iter().any(has_duplicate),
        J::Obj(members) => {
            members
                .iter()
                .enumerate()
                .any(|(i, (k, _))| members[..i].iter().any(|(k2, _)| k2 == k))
                || members.iter().any(|(_, v)| has_duplicate(v))
        }
        _ => false,
    }
}

/// The member `key`, last copy wins (serde_json's `Value`, Python, JS).
pub fn last<'a>(members: &'a [(Vec<u32>, J)], key: &str) -> Option<&'a J> {
    let key = cps(key);
    members
        .iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Go's `encoding/json` member-name fold (Go 1.21+ `foldName`): each rune
/// upper-cased after lower-casing, so `ſ` (U+017F) reads as `S`, the Kelvin
/// sign as `K`, `ı` (U+0131) as `I`. Runes whose mapping is not one rune are
/// kept, as Go's simple mappings keep them.
pub fn go_fold(key: &[u32]) -> Vec<u32> {
    fn one(mut it: impl Iterator<Item = char>) -> Option<char> {
        let c = it.next()?;
        it.next().is_none().then_some(c)
    }
    key.iter()
        .map(|&u| match char::from_u32(u) {
            Some(c) if c.is_ascii() => c.to_ascii_uppercase() as u32,
            Some(c) => {
                let lower = one(c.to_lowercase()).unwrap_or(c);
                one(lower.to_uppercase()).unwrap_or(lower) as u32
            }
            None => u,
        })
        .collect()
}

/// The struct field `key` as Go's `encoding/json` fills it: every member
/// whose name is `key` exactly or under `go_fold` writes the field, so the
/// last such member wins.
pub fn go_field<'a>(members: &'a [(Vec<u32>, J)], key: &str) -> Option<&'a J> {
    let exact = cps(key);
    let folded = go_fold(&exact);
    members
        .iter()
        .rev()
        .find(|(k, _)| *k == exact || go_fold(k) == folded)
        .map(|(_, v)| v)
}

/// A number's value in one canonical spelling (`-0` is `0`, `1e2` is
/// `1e2`, `100.0` is `1e2`): equal spellings, equal values.
pub fn canon_num(text: &str) -> String {
    match text {
        "NaN" | "nan" => return "NaN".into(),
        "Infinity" | "inf" => return "Infinity".into(),
        "-Infinity" | "-inf" => return "-Infinity".into(),
        _ => {}
    }
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (exp_neg, exp_digits) = match exp.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, exp.strip_prefix('+').unwrap_or(exp)),
    };
    let mut e: i64 = exp_digits.bytes().fold(0i64, |acc, d| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(d.wrapping_sub(b'0')))
    });
    if exp_neg {
        e = -e;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int}{frac}");
    e = e.saturating_sub(i64::try_from(frac.len()).unwrap_or(i64::MAX));
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return "0".into();
    }
    digits = trimmed.to_owned();
    while digits.ends_with('0') {
        digits.pop();
        e = e.saturating_add(1);
    }
    format!("{}{digits}e{e}", if neg { "-" } else { "" })
}

/// The canonical spelling of an `f64` a reader holds.
pub fn canon_f64(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        canon_num(&format!("{x:e}"))
    }
}

/// A JSON value as one reader holds it, compared by value: numbers in
/// canonical spelling, objects with one entry per name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum V {
    Null,
    Bool(bool),
    Num(String),
    Str(Vec<u32>),
    Arr(Vec<V>),
    Obj(BTreeMap<Vec<u32>, V>),
    /// The reader cannot settle on one value (e.g. a key given twice where
    /// the reader refuses duplicates); equal to nothing but itself.
    Unreadable(String),
}

impl V {
    /// `j` read exactly, the last copy of a member winning.
    pub fn exact(j: &J) -> V {
        match j {
            J::Null => V::Null,
            J::Bool(b) => V::Bool(*b),
            J::Num(n) => V::Num(canon_num(n)),
            J::Str(s) => V::Str(s.clone()),
            J::Arr(items) => V::Arr(items.iter().map(V::exact).collect()),
            J::Obj(members) => V::Obj(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), V::exact(v)))
                    .collect(),
            ),
        }
    }

    /// What `serde_json::Value` holds.
    pub fn serde(v: &serde_json::Value) -> V {
        use serde_json::Value as S;
        match v {
            S::Null => V::Null,
            S::Bool(b) => V::Bool(*b),
            S::Number(n) => V::Num(match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => canon_num(&u.to_string()),
                (_, Some(i), _) => canon_num(&i.to_string()),
                (_, _, Some(f)) => canon_f64(f),
                _ => canon_num(&n.to_string()),
            }),
            S::String(s) => V::Str(cps(s)),
            S::Array(items) => V::Arr(items.iter().map(V::serde).collect()),
            S::Object(m) => V::Obj(m.iter().map(|(k, v)| (cps(k), V::serde(v))).collect()),
        }
    }

    /// Compact display: strings as JSON-ish text with escapes for what is
    /// not plain.
    pub fn show(&self) -> String {
        fn s(cps: &[u32]) -> String {
            let mut out = String::from("\"");
            for &c in cps {
                match char::from_u32(c) {
                    Some('"') => out.push_str("\\\""),
                    Some('\\') => out.push_str("\\\\"),
                    Some(ch) if (' '..='~').contains(&ch) => out.push(ch),
                    _ => out.push_str(&format!("\\u{{{c:x}}}")),
                }
            }
            out.push('"');
            out
        }
        match self {
            V::Null => "null".into(),
            V::Bool(b) => b.to_string(),
            V::Num(n) => n.clone(),
            V::Str(c) => s(c),
            V::Arr(items) => format!(
                "[{}]",
                items.iter().map(V::show).collect::<Vec<_>>().join(",")
            ),
            V::Obj(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}:{}", s(k), v.show()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            V::Unreadable(why) => format!("<unreadable: {why}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        assert_eq!(canon_num("1e2"), canon_num("100"));
        assert_eq!(canon_num("100.0"), canon_num("1E+2"));
        assert_eq!(canon_num("-0"), canon_num("0.000"));
        assert_ne!(canon_num("10.0000000000000001"), canon_num("10"));
        assert_eq!(canon_f64(10.0), canon_num("10"));
    }
}
