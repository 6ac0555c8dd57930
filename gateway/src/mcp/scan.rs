//! One pass over raw JSON bytes that measures nesting depth before any parser
//! sees them, and salvages a top-level `"id"` from a message that failed to
//! parse so the error can still carry it.

/// Deepest nesting of `[`/`{` in `bytes`, ignoring brackets inside strings.
/// Stops early and returns `limit + 1` once `limit` is exceeded.
pub fn depth(bytes: &[u8], limit: u32) -> u32 {
    let mut depth = 0u32;
    let mut max = 0u32;
    let mut in_str = false;
    let mut escaped = false;
    for &b in bytes {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    max = depth;
                    if max > limit {
                        return max;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The raw text of a top-level `"id"` member (a number or a string) in a
/// possibly broken JSON object, if one can be read with confidence.
pub fn salvage_id(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0u32;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = string_end(b, i)?;
                if depth == 1 && &text[i..=end] == "\"id\"" {
                    let mut j = end + 1;
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if b.get(j) != Some(&b':') {
                        i = end + 1;
                        continue;
                    }
                    j += 1;
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    return value_at(text, j);
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of the string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn value_at(text: &str, j: usize) -> Option<&str> {
    let b = text.as_bytes();
    match b.get(j)? {
        b'"' => {
            let end = string_end(b, j)?;
            let s = &text[j..=end];
            // Only simple strings: the salvaged text is echoed back verbatim.
            (!s.contains('\\') && s.len() <= 256).then_some(s)
        }
        b'-' | b'0'..=b'9' => {
            let end = b[j..]
                .iter()
                .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .map_or(b.len(), |p| j + p);
            let s = &text[j..end];
            (end < b.len() && s.len() <= 32 && s.parse::<f64>().is_ok()).then_some(s)
        }
        _ => None,
    }
}
