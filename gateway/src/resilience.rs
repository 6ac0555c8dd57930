//! Upstream resilience state, one `UpstreamHealth` per upstream: the circuit
//! breaker (consecutive failures or error rate over a window; open answers
//! at once, half-open lets one probe through) and the retry budget that
//! bounds connect retries to a fraction of recent traffic. Kept across
//! reloads by upstream name while the settings stay the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use sluice_config::{CircuitBreaker, Retries, Snapshot, Upstream};

use crate::metrics::Metrics;
use sluice_config::locks::Recover;

pub struct UpstreamHealth {
    pub name: String,
    pub retries: Retries,
    breaker: Option<Breaker>,
    budget: RetryBudget,
}

/// The health of every upstream of `snap`, by upstream index, reusing the
/// state of `prev` where an upstream's settings did not change.
pub fn build(
    snap: &Snapshot,
    prev: &[Arc<UpstreamHealth>],
    m: &Metrics,
) -> Vec<Arc<UpstreamHealth>> {
    snap.upstreams
        .iter()
        .map(|up| {
            prev.iter()
                .find(|h| h.same_settings(up))
                .cloned()
                .unwrap_or_else(|| {
                    m.circuit_state
                        .with_label_values(&[up.name.as_str()])
                        .set(0);
                    Arc::new(UpstreamHealth::new(up))
                })
        })
        .collect()
}

impl UpstreamHealth {
    pub fn new(up: &Upstream) -> Self {
        Self {
            name: up.name.clone(),
            retries: up.retries.clone(),
            breaker: up.circuit_breaker.clone().map(Breaker::new),
            budget: RetryBudget::new(&up.retries),
        }
    }

    fn same_settings(&self, up: &Upstream) -> bool {
        self.name == up.name
            && self.retries == up.retries
            && self.breaker.as_ref().map(|b| &b.cfg) == up.circuit_breaker.as_ref()
    }

    /// May a request go to this upstream now? `Err` carries when to retry.
    pub fn admit(self: &Arc<Self>, m: &Metrics) -> Result<Option<Ticket>, Duration> {
        self.budget.deposit();
        let Some(b) = &self.breaker else {
            return Ok(None);
        };
        let probe = b.admit(Instant::now(), |s| self.changed(s, m))?;
        Ok(Some(Ticket {
            health: Arc::clone(self),
            probe,
            recorded: false,
        }))
    }

    /// May this request retry its connect once more?
    pub fn may_retry(&self, attempts_so_far: u32, m: &Metrics) -> bool {
        if attempts_so_far >= self.retries.attempts {
            return false;
        }
        let ok = self.budget.withdraw(Instant::now());
        let outcome = if ok { "retried" } else { "budget_exhausted" };
        m.upstream_retries
            .with_label_values(&[self.name.as_str(), outcome])
            .inc();
        ok
    }

    /// Backoff before retry number `n` (1-based): full jitter over an
    /// exponentially growing cap.
    pub fn backoff(&self, n: u32) -> Duration {
        let cap = self
            .retries
            .backoff
            .saturating_mul(1 << n.saturating_sub(1).min(16))
            .min(self.retries.max_backoff);
        let micros = cap.as_micros() as u64;
        Duration::from_micros(if micros == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=micros)
        })
    }

    fn changed(&self, state: State, m: &Metrics) {
        let (value, label) = match state {
            State::Closed => (0, "closed"),
            State::Open => (1, "open"),
            State::HalfOpen => (2, "half_open"),
        };
        m.circuit_state
            .with_label_values(&[self.name.as_str()])
            .set(value);
        m.circuit_transitions
            .with_label_values(&[self.name.as_str(), label])
            .inc();
        match state {
            State::Open => {
                tracing::warn!(upstream = %self.name, "circuit opened: upstream failing")
            }
            State::HalfOpen => tracing::info!(upstream = %self.name, "circuit half-open: probing"),
            State::Closed => {
                tracing::info!(upstream = %self.name, "circuit closed: upstream healthy")
            }
        }
    }
}

/// A request's place in the breaker's accounting. Recording the outcome
/// consumes it; dropped unrecorded (the request never reached the
/// upstream), a probe slot is handed back.
pub struct Ticket {
    health: Arc<UpstreamHealth>,
    probe: bool,
    recorded: bool,
}

impl Ticket {
    pub fn record(&mut self, ok: bool, m: &Metrics) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        if let Some(b) = &self.health.breaker {
            b.record(self.probe, ok, Instant::now(), |s| {
                self.health.changed(s, m)
            });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            if let Some(b) = &self.health.breaker {
                b.release_probe();
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

struct Breaker {
    cfg: CircuitBreaker,
    inner: Mutex<BreakerState>,
}

struct BreakerState {
    state: State,
    consecutive: u32,
    window_start: Instant,
    window_total: u32,
    window_failed: u32,
    open_until: Instant,
    probe_out: bool,
}

impl Breaker {
    fn new(cfg: CircuitBreaker) -> Self {
        let now = Instant::now();
        Self {
            cfg,
            inner: Mutex::new(BreakerState {
                state: State::Closed,
                consecutive: 0,
                window_start: now,
                window_total: 0,
                window_failed: 0,
                open_until: now,
                probe_out: false,
            }),
        }
    }

    /// `Ok(true)`: this request is the half-open probe.
    fn admit(&self, now: Instant, on_change: impl Fn(State)) -> Result<bool, Duration> {
        let mut s = self.inner.lock().recover();
        match s.state {
            State::Closed => Ok(false),
            State::Open if now < s.open_until => Err(s.open_until - now),
            State::Open | State::HalfOpen => {
                if s.state == State::Open {
                    s.state = State::HalfOpen;
                    on_change(State::HalfOpen);
                }
                if s.probe_out {
                    // One probe at a time; the others wait for its verdict.
                    Err(Duration::from_secs(1))
                } else {
                    s.probe_out = true;
                    Ok(true)
                }
            }
        }
    }

    fn release_probe(&self) {
        let mut s = self.inner.lock().recover();
        s.probe_out = false;
    }

    fn record(&self, probe: bool, ok: bool, now: Instant, on_change: impl Fn(State)) {
        let mut s = self.inner.lock().recover();
        if probe {
            s.probe_out = false;
        }
        if s.state == State::HalfOpen {
            if !probe {
                return;
            }
            if ok {
                s.state = State::Closed;
                s.consecutive = 0;
                s.window_start = now;
                s.window_total = 0;
                s.window_failed = 0;
                on_change(State::Closed);
            } else {
                s.state = State::Open;
                s.open_until = now + self.cfg.open_for;
                on_change(State::Open);
            }
            return;
        }
        if s.state == State::Open {
            // Answers of requests admitted before the circuit opened.
            return;
        }
        if let Some((_, window, _)) = self.cfg.error_rate {
            if now.duration_since(s.window_start) >= window {
                s.window_start = now;
                s.window_total = 0;
                s.window_failed = 0;
            }
        }
        s.window_total += 1;
        if ok {
            s.consecutive = 0;
            return;
        }
        s.consecutive += 1;
        s.window_failed += 1;
        let by_count = s.consecutive >= self.cfg.consecutive_failures;
        let by_rate = self.cfg.error_rate.is_some_and(|(rate, _, min)| {
            s.window_total >= min && f64::from(s.window_failed) >= rate * f64::from(s.window_total)
        });
        if by_count || by_rate {
            s.state = State::Open;
            s.open_until = now + self.cfg.open_for;
            on_change(State::Open);
        }
    }
}

/// Retries allowed: `budget_ratio` of requests, plus `budget_min_per_s`
/// per second whatever the traffic. Counted in thousandths of a retry.
struct RetryBudget {
    per_request: u64,
    min_per_s: u64,
    cap: u64,
    tokens: AtomicU64,
    last_refill: Mutex<Instant>,
}

impl RetryBudget {
    fn new(r: &Retries) -> Self {
        let min_per_s = u64::from(r.budget_min_per_s) * 1000;
        let per_request = (r.budget_ratio * 1000.0) as u64;
        Self {
            per_request,
            min_per_s,
            // Ten seconds' worth of the floor, and at least a few retries.
            cap: (min_per_s * 10).max(per_request * 100).max(3000),
            tokens: AtomicU64::new(min_per_s.max(3000)),
            last_refill: Mutex::new(Instant::now()),
        }
    }

    fn deposit(&self) {
        if self.per_request == 0 {
            return;
        }
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.cap).then(|| (t + self.per_request).min(self.cap))
            });
    }

    fn withdraw(&self, now: Instant) -> bool {
        {
            let mut last = self.last_refill.lock().recover();
            let earned = (now.duration_since(*last).as_millis() as u64)
                .saturating_mul(self.min_per_s)
                / 1000;
            if earned > 0 {
                *last = now;
                let _ = self
                    .tokens
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                        Some((t + earned).min(self.cap))
                    });
            }
        }
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(consecutive: u32, rate: Option<(f64, u32)>) -> Breaker {
        Breaker::new(CircuitBreaker {
            consecutive_failures: consecutive,
            error_rate: rate.map(|(r, min)| (r, Duration::from_secs(10), min)),
            open_for: Duration::from_secs(5),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = breaker(3, None);
        let t0 = Instant::now();
        let changes = std::cell::RefCell::new(Vec::new());
        let note = |s| changes.borrow_mut().push(s);
        for _ in 0..2 {
            assert_eq!(b.admit(t0, note), Ok(false));
            b.record(false, false, t0, note);
        }
        b.record(false, true, t0, note);
        for _ in 0..3 {
            b.record(false, false, t0, note);
        }
        assert_eq!(*changes.borrow(), vec![State::Open]);
        let wait = b.admit(t0 + Duration::from_secs(1), note).unwrap_err();
        assert_eq!(wait, Duration::from_secs(4));
        // After the open period: exactly one probe.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(later, note), Ok(true));
        assert!(b.admit(later, note).is_err(), "one probe at a time");
        b.record(true, false, later, note);
        assert!(b.admit(later, note).is_err(), "a failed probe reopens");
        let again = later + Duration::from_secs(5);
        assert_eq!(b.admit(again, note), Ok(true));
        b.record(true, true, again, note);
        assert_eq!(b.admit(again, note), Ok(false), "a good probe closes");
        assert_eq!(
            *changes.borrow(),
            vec![
                State::Open,
                State::HalfOpen,
                State::Open,
                State::HalfOpen,
                State::Closed
            ]
        );
    }

    #[test]
    fn an_abandoned_probe_is_handed_back() {
        let b = breaker(1, None);
        let t0 = Instant::now();
        b.record(false, false, t0, |_| {});
        let later = t0 + Duration::from_secs(6);
        assert_eq!(b.admit(later, |_| {}), Ok(true));
        b.release_probe();
        assert_eq!(b.admit(later, |_| {}), Ok(true));
    }

    #[test]
    fn opens_on_error_rate_with_enough_requests() {
        let b = breaker(100, Some((0.5, 10)));
        let t0 = Instant::now();
        for i in 0..9 {
            b.record(false, i % 2 == 0, t0, |_| {});
        }
        assert_eq!(b.admit(t0, |_| {}), Ok(false), "below min_requests");
        b.record(false, false, t0, |_| {});
        assert!(b.admit(t0, |_| {}).is_err(), "5 of 10 failed");
    }

    #[test]
    fn retry_budget_bounds_retries() {
        let r = Retries {
            attempts: 5,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            budget_ratio: 0.1,
            budget_min_per_s: 0,
        };
        let budget = RetryBudget::new(&r);
        let now = Instant::now();
        // The initial allowance, then nothing until traffic earns more.
        let first = (0..100).filter(|_| budget.withdraw(now)).count();
        assert_eq!(first, 3);
        for _ in 0..50 {
            budget.deposit();
        }
        assert_eq!((0..100).filter(|_| budget.withdraw(now)).count(), 5);
    }

    #[test]
    fn backoff_is_jittered_under_a_growing_cap() {
        let up = sluice_config::load(
            "listeners: [{ name: l, address: \"127.0.0.1:0\" }]\n\
             upstreams: [{ name: u, url: \"http://127.0.0.1:9/\", retries: { backoff_ms: 10, max_backoff_ms: 35 } }]",
            1,
        )
        .unwrap()
        .upstreams
        .remove(0);
        let h = UpstreamHealth::new(&up);
        for _ in 0..100 {
            assert!(h.backoff(1) <= Duration::from_millis(10));
            assert!(h.backoff(2) <= Duration::from_millis(20));
            assert!(h.backoff(5) <= Duration::from_millis(35));
        }
    }
}
