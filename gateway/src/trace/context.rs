//! W3C trace context: a caller's `traceparent` read strictly, new ids, the
//! header written toward upstreams, and the ratio sampler on the trace id.

pub type TraceId = [u8; 16];
pub type SpanId = [u8; 8];

/// What a caller's `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

/// `version-traceid-parentid-flags`, lower-case hex. Version `ff`, all-zero
/// ids and malformed fields make it invalid (a new trace is started); a
/// later version is read for its first four fields, as the spec says.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version: [u8; 1] = hex(&v[0..2])?;
    match version[0] {
        0xff => return None,
        0x00 if v.len() != 55 => return None,
        0x00 => {}
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let trace_id: TraceId = hex(&v[3..35])?;
    let span_id: SpanId = hex(&v[36..52])?;
    let flags: [u8; 1] = hex(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

/// A `tracestate` worth passing on: visible ASCII, at most 512 bytes (the
/// spec's limit); anything else is dropped rather than repaired.
pub fn valid_tracestate(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 512 && v.iter().all(|b| (0x20..0x7f).contains(b))
}

fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(s[2 * i])? << 4) | nibble(s[2 * i + 1])?;
    }
    Some(out)
}

/// Lower-case hex of `bytes` into `out`.
pub fn write_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

/// The `traceparent` that names `span` of `trace` as the parent.
pub fn traceparent(trace: &TraceId, span: &SpanId, sampled: bool) -> [u8; 55] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    for (i, b) in trace.iter().enumerate() {
        out[3 + 2 * i] = DIGITS[usize::from(b >> 4)];
        out[4 + 2 * i] = DIGITS[usize::from(b & 0xf)];
    }
    for (i, b) in span.iter().enumerate() {
        out[36 + 2 * i] = DIGITS[usize::from(b >> 4)];
        out[37 + 2 * i] = DIGITS[usize::from(b & 0xf)];
    }
    if sampled {
        out[54] = b'1';
    }
    out
}

/// Random, never all zero.
pub fn new_trace_id() -> TraceId {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

pub fn new_span_id() -> SpanId {
    new_span_ids()[0]
}

/// Two span ids from one draw, neither all zero.
pub fn new_span_ids() -> [SpanId; 2] {
    loop {
        let id = rand::random::<u128>();
        let (a, b) = ((id >> 64) as u64, id as u64);
        if a != 0 && b != 0 {
            return [a.to_be_bytes(), b.to_be_bytes()];
        }
    }
}

/// OpenTelemetry's `TraceIdRatioBased`: the low 8 bytes of the trace id
/// against the ratio, so every service with the same ratio samples the
/// same traces.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    bound: u64,
    always: bool,
}

impl Ratio {
    pub fn new(ratio: f64) -> Ratio {
        Ratio {
            bound: (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64,
            always: ratio >= 1.0,
        }
    }

    pub fn sampled(&self, trace: &TraceId) -> bool {
        if self.always {
            return true;
        }
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace[8..]);
        (u64::from_be_bytes(low) >> 1) < self.bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_and_written_back_the_same() {
        let p = parse_traceparent(GOOD.as_bytes()).expect("valid");
        assert!(p.sampled);
        assert_eq!(&traceparent(&p.trace_id, &p.span_id, true), GOOD.as_bytes());
        let unsampled = GOOD.replace("-01", "-00");
        assert!(
            !parse_traceparent(unsampled.as_bytes())
                .expect("valid")
                .sampled
        );
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad.as_bytes()), None, "{bad}");
        }
        // A later version: its first four fields are read.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(parse_traceparent(later.as_bytes()).is_some());
    }

    #[test]
    fn tracestate_is_passed_on_only_when_plain_and_short() {
        assert!(valid_tracestate(b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(!valid_tracestate(b""));
        assert!(!valid_tracestate("a=\u{7f}".as_bytes()));
        assert!(!valid_tracestate(&[b'a'; 513]));
    }

    #[test]
    fn the_ratio_sampler_keeps_its_share_by_trace_id() {
        let ids: Vec<TraceId> = (0..20_000u128)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_be_bytes())
            .collect();
        let kept = |r: f64| ids.iter().filter(|id| Ratio::new(r).sampled(id)).count();
        assert_eq!(kept(1.0), 20_000);
        assert_eq!(kept(0.0), 0);
        let n = kept(0.01);
        assert!((100..300).contains(&n), "{n}");
    }
}
