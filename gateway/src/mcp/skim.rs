//! A walk over the top-level members of a JSON object that does not
//! validate: strings and nested values are hopped over with `memchr`. For
//! watching server messages the gateway forwards unchanged, where a full
//! parse of every large tool result cost more than the rest of the response
//! path. Anything it cannot walk plainly, the caller parses properly.

/// Calls `f` with each top-level member of the object in `bytes`: the raw key
/// (between its quotes) and the raw value. `None` when the text is not an
/// object this walk reads plainly — a key with an escape, a broken structure,
/// a scalar that is not `true`, `false`, `null` or made of number bytes,
/// anything after the object. Strings are not checked for UTF-8 or escapes,
/// and brackets inside a nested value only for balance.
pub fn members<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    if bytes.get(i) == Some(&b'}') {
        return (skip_ws(bytes, i + 1) == bytes.len()).then_some(());
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let end = quote_end(bytes, i)?;
        let key = &bytes[i + 1..end];
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_ws(bytes, end + 1);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let value_end = value_end(bytes, i)?;
        f(key, &bytes[i..value_end]);
        i = skip_ws(bytes, value_end);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(bytes, i + 1),
            Some(b'}') => return (skip_ws(bytes, i + 1) == bytes.len()).then_some(()),
            _ => return None,
        }
    }
}

/// The raw values of `keys` among the object's top-level members, in the
/// order of `keys`. `None` when `members` cannot walk the object or a wanted
/// key appears twice (a parser would have to choose one copy).
pub fn pick<'a, const N: usize>(
    bytes: &'a [u8],
    keys: [&[u8]; N],
) -> Option<[Option<&'a [u8]>; N]> {
    let mut found = [None; N];
    let mut duplicate = false;
    members(bytes, |key, value| {
        if let Some(i) = keys.iter().position(|k| *k == key) {
            duplicate |= found[i].replace(value).is_some();
        }
    })?;
    (!duplicate).then_some(found)
}

/// The contents of a JSON string value without escapes (`"abc"` → `abc`).
pub fn plain_str(value: &[u8]) -> Option<&str> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(inner).ok()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Index of the quote that closes the string opening at `start`.
fn quote_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        let k = memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j + k] == b'\\' {
            j += k + 2;
        } else {
            return Some(j + k);
        }
    }
}

/// One past the end of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => Some(quote_end(b, i)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = quote_end(b, j)? + 1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric() && !matches!(c, b'-' | b'+' | b'.'))
                .unwrap_or(b.len() - i);
            let s = &b[i..i + len];
            let number = s
                .iter()
                .all(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'));
            (matches!(s, b"true" | b"false" | b"null") || (!s.is_empty() && number))
                .then_some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{members, pick, plain_str};

    fn walk(text: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(text.as_bytes(), |k, v| {
            out.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ))
        })?;
        Some(out)
    }

    #[test]
    fn top_level_members_are_found_whatever_they_hold() {
        let text = r#" { "id" : 7, "result":{"content":[{"text":"a \" } ] { \\"}],"isError":true},"e":-1.5e3 ,"n":null,"s":"x\"y"}
"#;
        let got = walk(text).expect("walkable");
        let pairs: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("id", "7"),
                (
                    "result",
                    r#"{"content":[{"text":"a \" } ] { \\"}],"isError":true}"#
                ),
                ("e", "-1.5e3"),
                ("n", "null"),
                ("s", r#""x\"y""#),
            ]
        );
        assert_eq!(walk("{}"), Some(vec![]));
        // The same members serde_json sees, for valid JSON.
        let v: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(v.as_object().map(|o| o.len()), Some(got.len()));
    }

    #[test]
    fn what_it_cannot_walk_plainly_is_left_to_the_parser() {
        for text in [
            "",
            "[1]",
            r#"{"id":1"#,
            r#"{"id":1,}"#,
            r#"{"id" 1}"#,
            r#"{"\u0069d":1}"#,
            r#"{"id":tru}"#,
            r#"{"id":@}"#,
            r#"{"id":1} x"#,
            r#"{"result":{"a":[1,2}"#,
            r#"{"s":"unterminated}"#,
            r#"{"s":"ends in escape\"#,
            r#"{"id":1 2}"#,
        ] {
            assert_eq!(walk(text), None, "{text}");
        }
    }

    #[test]
    fn picked_members_come_back_in_the_asked_order_and_duplicates_refuse() {
        let text = br#"{"b":2,"x":[1],"a":"s"}"#;
        assert_eq!(
            pick(text, [&b"a"[..], b"b", b"c"]),
            Some([Some(&br#""s""#[..]), Some(&b"2"[..]), None])
        );
        assert_eq!(pick(br#"{"a":1,"a":2}"#, [&b"a"[..]]), None);
        assert_eq!(pick(br#"{"a":1,"a":2}"#, [&b"b"[..]]), Some([None]));
        assert_eq!(pick(b"[1]", [&b"a"[..]]), None);
    }

    #[test]
    fn plain_strings_only() {
        assert_eq!(plain_str(br#""tools/list""#), Some("tools/list"));
        assert_eq!(plain_str(br#""a\nb""#), None);
        assert_eq!(plain_str(b"12"), None);
    }
}
