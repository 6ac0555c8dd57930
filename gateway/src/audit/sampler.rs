//! Which allowed events are worth recording: denials and errors always are;
//! allowed traffic is sampled per session so a kept session is kept whole.

use super::Decision;

/// Keeps allowed events at `rate` (0.0 ..= 1.0), deciding per key so every
/// event of one session (or request) gets the same answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    pub rate: f64,
}

impl Sampler {
    pub fn new(rate: f64) -> Self {
        Self { rate }
    }

    /// Whether to record an event. `key` is the session id when there is one,
    /// else the request id.
    pub fn keep(&self, decision: Decision, session_or_request_key: &str) -> bool {
        match decision {
            Decision::Deny | Decision::Error => true,
            Decision::Allow => {
                if self.rate >= 1.0 {
                    true
                } else if self.rate > 0.0 {
                    unit_interval(session_or_request_key) < self.rate
                } else {
                    // 0.0, negative or NaN: record only what matters most.
                    false
                }
            }
        }
    }
}

/// Maps a key to [0, 1). FNV-1a is stable across processes and Rust versions
/// (unlike `DefaultHasher`), so every gateway replica samples the same
/// sessions; the murmur3 finalizer spreads FNV's weak high bits so that
/// sequential keys like `s-1`, `s-2` don't cluster.
fn unit_interval(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // Top 53 bits fit an f64 mantissa exactly.
    (h >> 11) as f64 / (1u64 << 53) as f64
}
