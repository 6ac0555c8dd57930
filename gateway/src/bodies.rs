//! One ceiling on the request-body bytes the whole process holds at once
//! (`limits.max_body_bytes_held`): each body being read or waiting to be
//! forwarded counts the buffer it occupies, and gives it back when its
//! request ends. Past the ceiling a new body is refused (503, retry later)
//! instead of growing memory without bound under many slow uploads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of request-body buffers held across all requests.
static HELD: AtomicU64 = AtomicU64::new(0);

/// Bytes held now, for tests and metrics.
pub fn held() -> u64 {
    HELD.load(Ordering::Relaxed)
}

/// The ceiling would be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the gateway holds as many request bodies as it may; retry shortly")]
pub struct BodiesFull;

/// One request's share, returned when it drops.
#[derive(Debug, Default)]
pub struct BodyHold {
    bytes: u64,
}

impl BodyHold {
    /// Take `more` bytes of the ceiling `max`, or none.
    pub fn grow(&mut self, more: u64, max: u64) -> Result<(), BodiesFull> {
        if more == 0 {
            return Ok(());
        }
        let before = HELD.fetch_add(more, Ordering::Relaxed);
        if before + more > max {
            HELD.fetch_sub(more, Ordering::Relaxed);
            return Err(BodiesFull);
        }
        self.bytes += more;
        Ok(())
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            HELD.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_holds_and_what_drops_is_given_back() {
        // Other tests in this process may hold bodies: measure from here.
        let base = held();
        let max = base + 100;
        let mut a = BodyHold::default();
        a.grow(60, max).expect("room");
        let mut b = BodyHold::default();
        assert_eq!(b.grow(50, max), Err(BodiesFull));
        b.grow(40, max).expect("room");
        drop(a);
        b.grow(50, max).expect("room again");
        drop(b);
        assert_eq!(held(), base);
    }
}
