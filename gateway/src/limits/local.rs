//! One rate limit held in this process: a keyed GCRA limiter (`governor`)
//! over 64-bit key hashes, generic over the clock so tests can drive time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

pub struct LocalLimiter<C: Clock = DefaultClock> {
    inner: RateLimiter<u64, DashMapStateStore<u64>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock + Clone> LocalLimiter<C> {
    /// One request back every `period`, `burst` at once.
    pub fn new(period: Duration, burst: u32, clock: C) -> Self {
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            inner: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Take one request from `key`'s allowance, or say how long until one
    /// is available.
    pub fn check(&self, key: u64) -> Result<(), Duration> {
        self.inner
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forget keys whose state is back to fresh and give memory back.
    pub fn sweep(&self) -> usize {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
        self.inner.len()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl LocalLimiter {
    pub fn with_default_clock(period: Duration, burst: u32) -> Self {
        Self::new(period, burst, DefaultClock::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(period_ms: u64, burst: u32) -> (LocalLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            LocalLimiter::new(Duration::from_millis(period_ms), burst, clock.clone()),
            clock,
        )
    }

    #[test]
    fn burst_then_exactly_one_per_period() {
        // 60/min, burst 10.
        let (l, clock) = limiter(1000, 10);
        for i in 0..10 {
            assert!(l.check(1).is_ok(), "burst request {i}");
        }
        let wait = l.check(1).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        clock.advance(Duration::from_millis(999));
        assert_eq!(l.check(1).unwrap_err(), Duration::from_millis(1));
        clock.advance(Duration::from_millis(1));
        assert!(l.check(1).is_ok(), "one more at exactly one period");
        assert!(l.check(1).is_err());
        // After a long pause the burst is back, never more than the burst.
        clock.advance(Duration::from_secs(3600));
        let allowed = (0..50).filter(|_| l.check(1).is_ok()).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn keys_are_independent() {
        let (l, _clock) = limiter(1000, 2);
        assert!(l.check(1).is_ok() && l.check(1).is_ok());
        assert!(l.check(1).is_err());
        assert!(l.check(2).is_ok() && l.check(2).is_ok());
        assert!(l.check(2).is_err());
        assert!(l.check(3).is_ok());
    }

    #[test]
    fn burst_of_one_is_a_steady_rate() {
        let (l, clock) = limiter(100, 1);
        let mut allowed = 0;
        // 10 seconds in 10 ms steps: exactly 100 requests (one per 100 ms).
        for _ in 0..1000 {
            if l.check(7).is_ok() {
                allowed += 1;
            }
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(allowed, 100);
    }

    #[test]
    fn sweep_forgets_idle_keys() {
        let (l, clock) = limiter(10, 1);
        for k in 0..1000u64 {
            let _ = l.check(k);
        }
        assert_eq!(l.len(), 1000);
        clock.advance(Duration::from_millis(5));
        assert_eq!(l.sweep(), 1000, "keys still inside their period stay");
        // Fresh again once a whole period has passed beyond the last arrival.
        clock.advance(Duration::from_millis(50));
        assert_eq!(l.sweep(), 0);
    }
}
