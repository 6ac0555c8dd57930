//! Rate limits and concurrency caps, compiled once per snapshot. A request
//! passes every limit whose selector matches it. Limiter state lives in
//! `Arc`s handed from one runtime to the next while a limit's quota and key
//! stay the same, so a config push does not refill everyone's burst.
//!
//! Keys are built from what the gateway established itself — the
//! authenticated subject, tenant and roles (or the client's socket address
//! without identity), the route and the classified call — never from
//! headers a client could choose.

mod concurrency;
mod local;
mod select;
pub mod shared;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use sluice_config::{ConcurrencyRule, KeyPart, OnUnavailable, RateRule, Snapshot};

pub use concurrency::{Caps, Permit};
pub use local::LocalLimiter;
pub use select::{owner, LimitInput, SelectorMatch};
pub use shared::{RedisStore, StoreDown};

use crate::metrics::Metrics;

/// Why a request was held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limited {
    Rate {
        limit: String,
        retry_after: Duration,
    },
    Concurrency {
        limit: String,
    },
    /// A shared limit could not be checked and the fallback is `closed`.
    StoreDown {
        limit: String,
    },
}

impl Limited {
    pub fn limit(&self) -> &str {
        match self {
            Limited::Rate { limit, .. }
            | Limited::Concurrency { limit }
            | Limited::StoreDown { limit } => limit,
        }
    }

    /// When the client may try again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Limited::Rate { retry_after, .. } => *retry_after,
            Limited::Concurrency { .. } | Limited::StoreDown { .. } => Duration::from_secs(1),
        }
    }
}

struct RateEntry {
    rule: RateRule,
    local: Arc<LocalLimiter>,
}

struct CapEntry {
    rule: ConcurrencyRule,
    caps: Arc<Caps>,
}

#[derive(Default)]
pub struct Limits {
    rate: Vec<RateEntry>,
    caps: Vec<CapEntry>,
    store: Option<Arc<RedisStore>>,
    on_unavailable: Option<OnUnavailable>,
}

impl Limits {
    /// Compile `snap`'s limits, keeping the state of `prev`'s unchanged ones.
    pub fn build(
        snap: &Snapshot,
        prev: Option<&Limits>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let cfg = &snap.rate_limits;
        let rate = cfg
            .rules
            .iter()
            .map(|rule| {
                let kept = prev.and_then(|p| {
                    p.rate
                        .iter()
                        .find(|e| e.rule.state_key() == rule.state_key())
                        .map(|e| Arc::clone(&e.local))
                });
                RateEntry {
                    local: kept.unwrap_or_else(|| {
                        Arc::new(LocalLimiter::with_default_clock(rule.period, rule.burst))
                    }),
                    rule: rule.clone(),
                }
            })
            .collect();
        let caps = cfg
            .concurrency
            .iter()
            .map(|rule| {
                let kept = prev.and_then(|p| {
                    p.caps
                        .iter()
                        .find(|e| {
                            e.rule.name == rule.name
                                && e.rule.per == rule.per
                                && e.rule.max == rule.max
                        })
                        .map(|e| Arc::clone(&e.caps))
                });
                CapEntry {
                    caps: kept.unwrap_or_else(|| Caps::new(rule.max)),
                    rule: rule.clone(),
                }
            })
            .collect();
        let store = match &cfg.shared_store {
            None => None,
            Some(c) => match prev
                .and_then(|p| p.store.as_ref())
                .filter(|s| s.config == *c)
            {
                Some(s) => Some(Arc::clone(s)),
                None => {
                    // Connected by `maintain` on a runtime that lives on.
                    metrics.limit_store_up.set(0);
                    Some(RedisStore::new(c)?)
                }
            },
        };
        Ok(Self {
            rate,
            caps,
            on_unavailable: cfg.shared_store.as_ref().map(|s| s.on_unavailable),
            store,
        })
    }

    /// The shared store, when one is configured.
    pub fn store(&self) -> Option<&Arc<RedisStore>> {
        self.store.as_ref()
    }

    /// What a check does while the shared store is down: `Ok(true)` decide
    /// locally, `Ok(false)` let it through, `Err` refuse (counted under
    /// `limit`).
    pub fn store_down(&self, limit: &str, metrics: &Metrics) -> Result<bool, Limited> {
        let mode = self.on_unavailable.unwrap_or(OnUnavailable::Local);
        let label = match mode {
            OnUnavailable::Local => "local",
            OnUnavailable::Open => "open",
            OnUnavailable::Closed => "closed",
        };
        metrics
            .limit_store_fallbacks
            .with_label_values(&[label])
            .inc();
        match mode {
            OnUnavailable::Local => Ok(true),
            OnUnavailable::Open => Ok(false),
            OnUnavailable::Closed => {
                metrics.limit_refusals.with_label_values(&[limit]).inc();
                Err(Limited::StoreDown {
                    limit: limit.to_owned(),
                })
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rate.is_empty() && self.caps.is_empty()
    }

    /// Take one request from every rate limit that applies to `i`.
    pub async fn check_rate(&self, i: &LimitInput<'_>, metrics: &Metrics) -> Result<(), Limited> {
        for e in &self.rate {
            if !e.rule.selector.matches(i) {
                continue;
            }
            let key = key_hash(&e.rule.per, i);
            let verdict = match (&self.store, e.rule.shared) {
                (Some(store), true) => {
                    let bucket = format!("{}:{}:{key:016x}", store.config.key_prefix, e.rule.name);
                    match store
                        .check(&bucket, e.rule.period, e.rule.burst, 1, metrics)
                        .await
                    {
                        Ok(v) => v,
                        Err(StoreDown) => self.fallback(e, key, metrics)?,
                    }
                }
                _ => e.local.check(key),
            };
            if let Err(retry_after) = verdict {
                metrics
                    .limit_refusals
                    .with_label_values(&[e.rule.name.as_str()])
                    .inc();
                return Err(Limited::Rate {
                    limit: e.rule.name.clone(),
                    retry_after,
                });
            }
        }
        Ok(())
    }

    fn fallback(
        &self,
        e: &RateEntry,
        key: u64,
        metrics: &Metrics,
    ) -> Result<Result<(), Duration>, Limited> {
        match self.store_down(&e.rule.name, metrics)? {
            true => Ok(e.local.check(key)),
            false => Ok(Ok(())),
        }
    }

    /// A slot in every concurrency cap that applies to `i`; on refusal the
    /// slots already taken are given back (they drop with `permits`).
    pub fn acquire(
        &self,
        i: &LimitInput<'_>,
        permits: &mut Vec<Permit>,
        metrics: &Metrics,
    ) -> Result<(), Limited> {
        for e in &self.caps {
            if !e.rule.selector.matches(i) {
                continue;
            }
            match e.caps.try_acquire(key_hash(&e.rule.per, i)) {
                Some(p) => permits.push(p),
                None => {
                    permits.clear();
                    metrics
                        .limit_refusals
                        .with_label_values(&[e.rule.name.as_str()])
                        .inc();
                    return Err(Limited::Concurrency {
                        limit: e.rule.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Keep the shared store connected: start a probe while it is down.
    /// Called from the background service every few hundred milliseconds.
    pub fn maintain(&self, metrics: &Metrics) {
        if let Some(s) = &self.store {
            if !s.is_up() {
                s.start_probe(metrics);
            }
        }
    }

    /// Forget idle keys and give their memory back; report what is left.
    pub fn sweep(&self, metrics: &Metrics) {
        for e in &self.rate {
            let n = e.local.sweep();
            metrics
                .limit_keys
                .with_label_values(&[e.rule.name.as_str()])
                .set(n as i64);
        }
    }
}

/// The bucket of `i` under a limit keyed by `per`. Deterministic (the same
/// on every replica running the same build), so shared buckets line up.
pub fn key_hash(per: &[KeyPart], i: &LimitInput<'_>) -> u64 {
    let mut h = DefaultHasher::new();
    for part in per {
        // The part itself goes in, so `tenant=a` and `subject=a` differ.
        part.hash(&mut h);
        match part {
            KeyPart::Tenant => i.tenant.hash(&mut h),
            KeyPart::Subject => i.subject.hash(&mut h),
            KeyPart::Role => {
                for r in i.roles {
                    r.hash(&mut h);
                }
            }
            KeyPart::Route => i.route.hash(&mut h),
            KeyPart::Upstream => i.upstream.hash(&mut h),
            KeyPart::Tool => i.target.hash(&mut h),
            KeyPart::Model => i.model.hash(&mut h),
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests;
