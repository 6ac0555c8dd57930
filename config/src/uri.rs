//! Resource URIs and request paths in the one form every reader agrees on.
//! A scope such as `file:///pub/**` is matched against the URI's text, while
//! an upstream may resolve dot segments and decode percent-escapes before it
//! reads a file: `file:///pub/../etc/passwd`, `…/%2e%2e/…` and `…/..%2F…`
//! would pass the scope and read outside it. So a URI is accepted only when
//! it already is in that form — no dot segments, no empty segments inside the
//! path, no percent-escape of an unreserved character or of a separator, no
//! backslash or NUL — and then its text is what both sides read.

use std::fmt;

/// Why a URI or path is not in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNormal {
    /// A `.` or `..` segment, written plainly or percent-encoded.
    DotSegment,
    /// `//` inside the path.
    EmptySegment,
    /// `%2F`, `%5C` or `%00`: a separator or NUL hidden in an escape.
    EncodedSeparator,
    /// A percent-escape of a character that needs none (`%41` for `A`),
    /// or a `%` not followed by two hex digits.
    NeedlessEscape,
    /// A backslash or a control character.
    BadCharacter,
}

impl fmt::Display for NotNormal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NotNormal::DotSegment => "a `.` or `..` segment",
            NotNormal::EmptySegment => "an empty segment (`//`) in the path",
            NotNormal::EncodedSeparator => "a percent-encoded `/`, `\\`, `?`, `#`, `%` or NUL",
            NotNormal::NeedlessEscape => "a percent-escape that normal form would not have",
            NotNormal::BadCharacter => {
                "a backslash, a control character, or a query or fragment in a file URI"
            }
        })
    }
}

/// Check a resource URI: `Ok` when its text is its normal form.
pub fn check_uri(uri: &str) -> Result<(), NotNormal> {
    // scheme ":" [ "//" authority ] path [ "?" query ] [ "#" fragment ]
    let rest = match uri.find(':') {
        Some(i) if is_scheme(&uri[..i]) => &uri[i + 1..],
        _ => uri,
    };
    let rest = match rest.strip_prefix("//") {
        Some(r) => &r[r.find(['/', '?', '#']).unwrap_or(r.len())..],
        None => rest,
    };
    // A file has no query or fragment: a server taking the rest for the
    // path would resolve what follows `?`.
    if uri
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"))
        && uri.contains(['?', '#'])
    {
        return Err(NotNormal::BadCharacter);
    }
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    check_chars(uri)?;
    check_path(path, true)
}

/// Check an HTTP request path (no query): no dot segments, no hidden
/// separators, no backslash. Empty segments are left to the route match.
pub fn check_request_path(path: &str) -> Result<(), NotNormal> {
    // The usual path has none of the bytes a problem needs.
    if !path
        .bytes()
        .any(|b| matches!(b, b'.' | b'%' | b'\\') || b < 0x20 || b == 0x7f)
    {
        return Ok(());
    }
    check_chars(path)?;
    check_path(path, false)
}

fn is_scheme(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

fn check_chars(s: &str) -> Result<(), NotNormal> {
    let bytes = s.as_bytes();
    if bytes.iter().any(|&b| b == b'\\' || b < 0x20 || b == 0x7f) {
        return Err(NotNormal::BadCharacter);
    }
    let mut i = 0;
    while let Some(at) = memchr_pct(&bytes[i..]) {
        let p = i + at;
        let hex = bytes
            .get(p + 1..p + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let Some(hex) = hex else {
            return Err(NotNormal::NeedlessEscape);
        };
        let v = (hexval(hex[0]) << 4) | hexval(hex[1]);
        // Separators, and delimiters or `%` that a reader decoding once
        // more, or before it parses, would take for structure.
        if matches!(v, b'/' | b'\\' | 0 | b'?' | b'#' | b'%') {
            return Err(NotNormal::EncodedSeparator);
        }
        if v == b'.' {
            // Judged as a dot segment where it makes one, else needless.
            i = p + 3;
            continue;
        }
        if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'_' | b'~') {
            return Err(NotNormal::NeedlessEscape);
        }
        i = p + 3;
    }
    Ok(())
}

fn memchr_pct(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'%')
}

fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// Segments of `path`: none may be a dot segment (plain or encoded); with
/// `no_empty`, none but the last may be empty.
fn check_path(path: &str, no_empty: bool) -> Result<(), NotNormal> {
    let body = path.strip_prefix('/').unwrap_or(path);
    let mut segs = body.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        if is_dot(seg) {
            return Err(NotNormal::DotSegment);
        }
        if seg.contains("%2e") || seg.contains("%2E") {
            // An encoded dot that does not make a dot segment needs no escape.
            return Err(NotNormal::NeedlessEscape);
        }
        if no_empty && seg.is_empty() && !last && !body.is_empty() {
            return Err(NotNormal::EmptySegment);
        }
    }
    Ok(())
}

/// `.`, `..`, with any of their dots percent-encoded.
fn is_dot(seg: &str) -> bool {
    let mut dots = 0;
    let mut rest = seg;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest
            .strip_prefix("%2e")
            .or_else(|| rest.strip_prefix("%2E"))
        {
            rest = r;
        } else {
            return false;
        }
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_in_normal_form_pass() {
        for ok in [
            "file:///pub/a/b.txt",
            "file:///pub/dir/",
            "file:///pub/a%20b.txt",
            "https://example.com/a/b?x=../y",
            "test://static/resource/1",
            "file:///pub/.hidden",
            "file:///pub/a..b",
            "urn:isbn:0451450523",
            "file:///",
        ] {
            assert_eq!(check_uri(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn every_way_out_of_a_directory_is_refused() {
        use NotNormal::*;
        for (bad, why) in [
            ("file:///pub/../etc/passwd", DotSegment),
            ("file:///pub/%2e%2e/etc/passwd", DotSegment),
            ("file:///pub/.%2E/etc/passwd", DotSegment),
            ("file:///pub//../etc/passwd", EmptySegment),
            ("file:///pub/./a", DotSegment),
            ("file:///pub/..", DotSegment),
            ("file:///pub/..%2Fetc/passwd", EncodedSeparator),
            ("file:///pub/..%5cetc", EncodedSeparator),
            ("file:///pub/a%00.txt", EncodedSeparator),
            ("file:///pub//etc/passwd", EmptySegment),
            ("file:///pub/%70ub", NeedlessEscape),
            ("file:///pub/a%2eb", NeedlessEscape),
            ("file:///pub/a%zz", NeedlessEscape),
            ("file:///pub/..\\etc", BadCharacter),
            ("file:///pub/a\nb", BadCharacter),
            ("file:///pub/x?/../../etc/passwd", BadCharacter),
            ("file:///pub/%252e%252e/etc/passwd", EncodedSeparator),
            ("file:///pub/..%3F-../", EncodedSeparator),
        ] {
            assert_eq!(check_uri(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn request_paths_refuse_dot_segments_and_hidden_separators() {
        assert_eq!(check_request_path("/mcp"), Ok(()));
        assert_eq!(check_request_path("/mcp/"), Ok(()));
        assert_eq!(check_request_path("/v1/chat/completions"), Ok(()));
        assert_eq!(
            check_request_path("/mcp/../admin"),
            Err(NotNormal::DotSegment)
        );
        assert_eq!(
            check_request_path("/mcp/%2e%2e/admin"),
            Err(NotNormal::DotSegment)
        );
        assert_eq!(
            check_request_path("/mcp%2fadmin"),
            Err(NotNormal::EncodedSeparator)
        );
        assert_eq!(
            check_request_path("/mcp\\..\\admin"),
            Err(NotNormal::BadCharacter)
        );
    }
}
