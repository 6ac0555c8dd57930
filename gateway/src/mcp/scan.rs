//! One pass over raw JSON bytes that checks nesting depth, array lengths and
//! string lengths before any parser sees them, and salvages a top-level
//! `"id"` from a message that failed to parse so the error can still carry it.

/// Shape limits on a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonCaps {
    pub depth: u32,
    pub array_len: u32,
    pub string_len: u32,
}

impl JsonCaps {
    pub fn depth_only(depth: u32) -> Self {
        Self {
            depth,
            array_len: u32::MAX,
            string_len: u32::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    Depth,
    ArrayLen,
    StringLen,
}

/// Deepest nesting a check tracks element counts for; deeper is refused.
const MAX_TRACKED_DEPTH: usize = 512;

/// The first cap `bytes` breaks, if any. Brackets and commas inside strings
/// do not count. Allocation-free; string contents are skipped with `memchr`
/// rather than byte by byte.
pub fn check(bytes: &[u8], caps: JsonCaps) -> Option<Violation> {
    let limit = (caps.depth as usize).min(MAX_TRACKED_DEPTH);
    // Per open container: element count, or u32::MAX for objects. Sized to
    // the cap: zeroing the deepest possible table cost more than the scan.
    if limit < INLINE_DEPTH {
        check_in(bytes, caps, limit, &mut [0u32; INLINE_DEPTH])
    } else {
        check_in(bytes, caps, limit, &mut vec![0u32; limit + 1])
    }
}

/// Caps up to this depth keep their counts on the stack.
const INLINE_DEPTH: usize = 128;

/// `check` with a count table of at least `limit + 1` entries.
fn check_in(bytes: &[u8], caps: JsonCaps, limit: usize, counts: &mut [u32]) -> Option<Violation> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Find the closing quote, hopping over escapes.
                let start = i + 1;
                let mut j = start;
                loop {
                    // An escape as the body's last byte leaves `j` past the
                    // end: that string is unterminated too.
                    let rest = bytes.get(j..)?;
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(k) if rest[k] == b'\\' => j += k + 2,
                        Some(k) => {
                            j += k;
                            break;
                        }
                        // Unterminated: the parser reports it.
                        None => return None,
                    }
                }
                if j - start > caps.string_len as usize {
                    return Some(Violation::StringLen);
                }
                i = j + 1;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(Violation::Depth);
                }
                counts[depth] = if bytes[i] == b'[' { 0 } else { u32::MAX };
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth > 0 && counts[depth] != u32::MAX => {
                counts[depth] += 1;
                if counts[depth] >= caps.array_len {
                    return Some(Violation::ArrayLen);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
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
                    // Echoed verbatim in the refusal: only JSON a client
                    // can read (not `01`, `1.`, a raw control character).
                    return value_at(text, j)
                        .filter(|v| serde_json::from_str::<serde_json::Value>(v).is_ok());
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
