//! MCP protocol revisions and the rules that differ between them, in
//! particular the 2026-07-28 `Mcp-Method` / `Mcp-Name` headers.

/// The protocol revision a message speaks, from `MCP-Protocol-Version` or the
/// 2026-07-28 `_meta` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revision {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
    /// A version string this gateway does not know; passed through as is.
    Unknown,
}

impl Revision {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "2024-11-05" => Self::V2024_11_05,
            "2025-03-26" => Self::V2025_03_26,
            "2025-06-18" => Self::V2025_06_18,
            "2025-11-25" => Self::V2025_11_25,
            "2026-07-28" => Self::V2026_07_28,
            _ => Self::Unknown,
        }
    }

    pub fn as_label(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
            Self::Unknown => "unknown",
        }
    }

    /// Stateless revisions carry no session and require the mirrored headers.
    pub fn is_stateless(self) -> bool {
        self == Self::V2026_07_28
    }
}

/// An `Mcp-Name` header value for `name`: as it is when it is visible
/// ASCII (and does not look encoded), else `=?base64?…?=`.
pub fn encode_header_name(name: &str) -> std::borrow::Cow<'_, str> {
    use base64::Engine;
    let plain = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !name.starts_with("=?");
    if plain {
        return std::borrow::Cow::Borrowed(name);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
    std::borrow::Cow::Owned(format!("=?base64?{encoded}?="))
}

/// Decode an `Mcp-Name` header value: plain ASCII, or `=?base64?…?=` for
/// names that are not.
pub fn decode_header_name(value: &[u8]) -> Option<String> {
    if let Some(inner) = value
        .strip_prefix(b"=?base64?")
        .and_then(|v| v.strip_suffix(b"?="))
    {
        return String::from_utf8(base64_decode(inner)?).ok();
    }
    std::str::from_utf8(value).ok().map(str::to_owned)
}

fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let input: Vec<u8> = input.iter().copied().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}
