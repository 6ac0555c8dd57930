//! Token accounting that must hold before a call is sent: token-per-minute
//! buckets (reserve an estimate, reconcile with the real usage after) and
//! per-tenant token and cost budgets per UTC day or month. Times are passed
//! in, so tests drive the clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sluice_config::{Budget, Period};

use sluice_config::locks::Recover;
use sluice_config::{civil_from_days, days_from_civil};

/// Token-per-minute buckets, one per key, each holding at most a minute's
/// worth and refilling continuously.
pub struct TokenBuckets {
    per_min: f64,
    map: DashMap<u64, (f64, Instant)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Try again after this long.
    Wait(Duration),
    /// Larger than a whole minute's allowance: it can never fit.
    NeverFits,
}

impl TokenBuckets {
    pub fn new(tokens_per_minute: u64) -> Self {
        Self {
            per_min: tokens_per_minute as f64,
            map: DashMap::new(),
        }
    }

    fn rate(&self) -> f64 {
        self.per_min / 60.0
    }

    /// Take `n` tokens from `key`'s bucket now, or say when they will be there.
    pub fn reserve(&self, key: u64, n: u64, now: Instant) -> Result<(), Refused> {
        let n = n as f64;
        if n > self.per_min {
            return Err(Refused::NeverFits);
        }
        let mut e = self.map.entry(key).or_insert((self.per_min, now));
        let (tokens, at) = *e;
        let have = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate())
            .min(self.per_min);
        if have >= n {
            *e = (have - n, now);
            Ok(())
        } else {
            *e = (have, now);
            Err(Refused::Wait(Duration::from_secs_f64(
                (n - have) / self.rate(),
            )))
        }
    }

    /// Settle a reservation of `reserved` that used `actual`: the difference
    /// goes back (or, when the call used more, is taken: the bucket may go
    /// into debt and later calls wait for it).
    pub fn reconcile(&self, key: u64, reserved: u64, actual: u64) {
        if let Some(mut e) = self.map.get_mut(&key) {
            e.0 = (e.0 + reserved as f64 - actual as f64).min(self.per_min);
        }
    }

    /// Forget buckets that are full again.
    pub fn sweep(&self, now: Instant) {
        let (per_min, rate) = (self.per_min, self.rate());
        self.map.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < per_min
        });
        self.map.shrink_to_fit();
    }

    pub fn tokens(&self, key: u64) -> Option<f64> {
        self.map.get(&key).map(|e| e.0)
    }
}

/// What a tenant spent in the current period.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Spent {
    pub period_start: u64,
    pub tokens: u64,
    pub cost_usd: f64,
}

pub struct BudgetState {
    pub budget: Budget,
    spent: Mutex<Spent>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exhausted {
    pub budget: String,
    pub what: &'static str,
    /// Seconds until the period resets.
    pub resets_in: Duration,
    pub period: &'static str,
}

impl BudgetState {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            spent: Mutex::new(Spent::default()),
        }
    }

    fn current(&self, now_unix: u64) -> std::sync::MutexGuard<'_, Spent> {
        let mut s = self.spent.lock().recover();
        let start = period_start(self.budget.period, now_unix);
        if s.period_start != start {
            *s = Spent {
                period_start: start,
                ..Spent::default()
            };
        }
        s
    }

    /// Refuse when the period's budget is already spent.
    pub fn check(&self, now_unix: u64) -> Result<(), Exhausted> {
        let s = *self.current(now_unix);
        let b = &self.budget;
        let what = if b.tokens.is_some_and(|t| s.tokens >= t) {
            "token"
        } else if b.cost_usd.is_some_and(|c| s.cost_usd >= c) {
            "cost"
        } else {
            return Ok(());
        };
        let end = period_end(b.period, s.period_start);
        Err(Exhausted {
            budget: b.name.clone(),
            what,
            resets_in: Duration::from_secs(end.saturating_sub(now_unix).max(1)),
            period: match b.period {
                Period::Day => "day",
                Period::Month => "month",
            },
        })
    }

    pub fn charge(&self, now_unix: u64, tokens: u64, cost_usd: f64) {
        let mut s = self.current(now_unix);
        s.tokens += tokens;
        s.cost_usd += cost_usd;
    }

    /// What is left, as (tokens, cost) where a limit is set.
    pub fn remaining(&self, now_unix: u64) -> (Option<u64>, Option<f64>) {
        let s = *self.current(now_unix);
        (
            self.budget.tokens.map(|t| t.saturating_sub(s.tokens)),
            self.budget.cost_usd.map(|c| (c - s.cost_usd).max(0.0)),
        )
    }
}

const DAY: u64 = 86_400;

fn period_start(p: Period, now: u64) -> u64 {
    match p {
        Period::Day => now - now % DAY,
        Period::Month => {
            let (y, m, _) = civil_from_days((now / DAY) as i64);
            days_from_civil(y, m, 1) as u64 * DAY
        }
    }
}

fn period_end(p: Period, start: u64) -> u64 {
    match p {
        Period::Day => start + DAY,
        Period::Month => {
            let (y, m, _) = civil_from_days((start / DAY) as i64);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) as u64 * DAY
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm_reserves_then_reconciles_at_the_edges() {
        let b = TokenBuckets::new(6000); // 100 tokens a second
        let t0 = Instant::now();
        assert_eq!(b.reserve(1, 6001, t0), Err(Refused::NeverFits));
        assert_eq!(b.reserve(1, 6000, t0), Ok(()), "exactly a minute's worth");
        assert_eq!(
            b.reserve(1, 100, t0),
            Err(Refused::Wait(Duration::from_secs(1)))
        );
        assert_eq!(b.reserve(1, 100, t0 + Duration::from_secs(1)), Ok(()));
        // The 6000-token call used 1000: 5000 come back.
        b.reconcile(1, 6000, 1000);
        assert_eq!(b.reserve(1, 5000, t0 + Duration::from_secs(1)), Ok(()));
        assert!(b.reserve(1, 1, t0 + Duration::from_secs(1)).is_err());
        // A call that used more than reserved puts the bucket in debt.
        b.reconcile(1, 100, 700);
        assert_eq!(
            b.reserve(1, 100, t0 + Duration::from_secs(2)),
            Err(Refused::Wait(Duration::from_secs(6)))
        );
        assert_eq!(b.reserve(2, 6000, t0), Ok(()), "keys are independent");
        b.sweep(t0 + Duration::from_secs(600));
        assert!(b.tokens(1).is_none() && b.tokens(2).is_none());
    }

    #[test]
    fn budgets_exhaust_and_reset_with_the_period() {
        let day = BudgetState::new(Budget {
            name: "acme-daily".into(),
            tenant: "acme".into(),
            period: Period::Day,
            tokens: Some(1000),
            cost_usd: Some(1.0),
            shared: false,
        });
        let noon = 20_000 * DAY + 43_200;
        assert!(day.check(noon).is_ok());
        day.charge(noon, 999, 0.1);
        assert!(day.check(noon).is_ok(), "999 of 1000");
        day.charge(noon, 1, 0.0);
        let e = day.check(noon).unwrap_err();
        assert_eq!(
            (e.what, e.resets_in),
            ("token", Duration::from_secs(43_200))
        );
        assert_eq!(day.remaining(noon), (Some(0), Some(0.9)));
        assert!(day.check(noon + 43_200).is_ok(), "a new day");
        day.charge(noon + 43_200, 10, 1.5);
        assert_eq!(day.check(noon + 43_200).unwrap_err().what, "cost");
    }

    #[test]
    fn month_boundaries_are_calendar_months() {
        // 2026-02-14 12:00 UTC: February has 28 days in 2026.
        let feb14 = days_from_civil(2026, 2, 14) as u64 * DAY + 43_200;
        let start = period_start(Period::Month, feb14);
        assert_eq!(start, days_from_civil(2026, 2, 1) as u64 * DAY);
        assert_eq!(
            period_end(Period::Month, start),
            days_from_civil(2026, 3, 1) as u64 * DAY
        );
        assert_eq!(
            civil_from_days(days_from_civil(2024, 12, 31)),
            (2024, 12, 31)
        );
    }
}
