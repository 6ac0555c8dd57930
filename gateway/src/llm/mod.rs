//! Model traffic on `transport: llm` routes: the OpenAI-compatible API (and
//! Anthropic's `/messages`) with the same identity, policy, limits and audit
//! as tool traffic. Admission decides before any upstream is touched: the
//! endpoint, the model alias and the caller's grant for it, request rate
//! limits, the tenant's budgets, and token-per-minute reservations. The
//! exchange itself (`exchange::llm`) tries the alias's targets in order until one
//! answers, then streams the answer back while reading its usage.

pub mod budget;
pub mod request;
pub mod shared;
pub mod usage;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sluice_config::{Kind, Snapshot, TokenLimit, UsageCounts};

pub use budget::{BudgetState, Exhausted, Refused, TokenBuckets};
pub use request::{Api, LlmRequest, RequestError};

use crate::limits::{key_hash, LimitInput, SelectorMatch};
use crate::metrics::Metrics;
use crate::policy::decide::{Decide, Verdict};
use crate::policy::Caller;

/// Output tokens reserved when a request sets no cap.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

/// Why a model request was refused; answered in the OpenAI error shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmDeny {
    #[error("unknown endpoint")]
    UnknownEndpoint,
    #[error("{0}")]
    BadRequest(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("You are not allowed to use the model `{0}`.")]
    ModelDenied(String),
    #[error(
        "This request needs about {need} tokens, more than the {limit} limit allows per minute."
    )]
    NeverFits { limit: String, need: u64 },
    #[error("Token rate limit `{limit}` reached; retry in {} ms.", wait.as_millis().max(1))]
    TokenRate { limit: String, wait: Duration },
    #[error("The {} budget `{}` of this tenant is used up for this {}; it resets in {} s.", .0.what, .0.budget, .0.period, .0.resets_in.as_secs())]
    Budget(Exhausted),
}

impl LlmDeny {
    pub fn reason(&self) -> &'static str {
        match self {
            LlmDeny::UnknownEndpoint => "unknown_endpoint",
            LlmDeny::BadRequest(_) => "invalid_request",
            LlmDeny::ModelNotFound(_) => "model_not_found",
            LlmDeny::ModelDenied(_) => "model_not_allowed",
            LlmDeny::NeverFits { .. } => "tokens_exceed_limit",
            LlmDeny::TokenRate { .. } => "token_rate_limited",
            LlmDeny::Budget(_) => "budget_exhausted",
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmDeny::TokenRate { wait, .. } => Some(*wait),
            LlmDeny::Budget(e) => Some(e.resets_in),
            _ => None,
        }
    }

    pub fn is_access_decision(&self) -> bool {
        matches!(
            self,
            LlmDeny::ModelDenied(_)
                | LlmDeny::NeverFits { .. }
                | LlmDeny::TokenRate { .. }
                | LlmDeny::Budget(_)
        )
    }
}

/// Model-traffic state that outlives one snapshot: token buckets and budget
/// spend, kept across reloads by name while their settings stay the same.
#[derive(Default)]
pub struct LlmState {
    tpm: Vec<(Arc<TokenLimit>, Arc<TokenBuckets>)>,
    budgets: Vec<Arc<BudgetState>>,
    /// Each budget's key in the shared store, when it is shared and there
    /// is one (made once here, not per call).
    budget_keys: Vec<Option<Arc<str>>>,
    next: AtomicU64,
    /// The shared store's scripts (`shared`).
    pub scripts: Arc<shared::Scripts>,
}

impl LlmState {
    pub fn build(snap: &Snapshot, prev: Option<&LlmState>) -> Self {
        let tpm = snap
            .llm
            .token_limits
            .iter()
            .map(|l| {
                let kept = prev.and_then(|p| {
                    p.tpm
                        .iter()
                        .find(|(o, _)| {
                            o.name == l.name
                                && o.per == l.per
                                && o.tokens_per_minute == l.tokens_per_minute
                        })
                        .map(|(_, b)| Arc::clone(b))
                });
                (
                    Arc::new(l.clone()),
                    kept.unwrap_or_else(|| Arc::new(TokenBuckets::new(l.tokens_per_minute))),
                )
            })
            .collect();
        let budgets = snap
            .llm
            .budgets
            .iter()
            .map(|b| {
                prev.and_then(|p| p.budgets.iter().find(|s| s.budget == *b).cloned())
                    .unwrap_or_else(|| Arc::new(BudgetState::new(b.clone())))
            })
            .collect();
        let prefix = snap
            .rate_limits
            .shared_store
            .as_ref()
            .map(|s| &s.key_prefix);
        let budget_keys = snap
            .llm
            .budgets
            .iter()
            .map(|b| {
                let prefix = prefix.filter(|_| b.shared)?;
                Some(shared::budget_key(prefix, b).into())
            })
            .collect();
        Self {
            tpm,
            budgets,
            budget_keys,
            next: AtomicU64::new(0),
            scripts: Arc::default(),
        }
    }

    /// Forget full token buckets.
    pub fn sweep(&self) {
        let now = Instant::now();
        for (_, b) in &self.tpm {
            b.sweep(now);
        }
    }

    /// The targets to try, in order: one picked by weight, then the others
    /// (by weight, then as listed) as fallbacks.
    pub fn order(&self, targets: &[sluice_config::Target]) -> Vec<usize> {
        let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if total > 0 {
            let mut pick = self.next.fetch_add(1, Ordering::Relaxed) % total;
            let first = targets
                .iter()
                .position(|t| {
                    let w = u64::from(t.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            order.retain(|&i| i != first);
            order.sort_by_key(|&i| std::cmp::Reverse(targets[i].weight));
            order.insert(0, first);
        }
        order
    }
}

/// What admission decided: targets to try, tokens held, budgets to charge.
pub struct Admitted {
    pub order: Vec<usize>,
    pub reservations: Vec<Reservation>,
    pub budgets: Vec<Arc<BudgetState>>,
    /// The shared limits and budgets to ask the store for (`shared`).
    pub shared: Option<shared::SharedHeld>,
}

/// Tokens held in one bucket: (buckets, key, tokens).
pub type Reservation = (Arc<TokenBuckets>, u64, u64);

/// A model call admitted and waiting to be sent (and, after, settled).
pub struct LlmCall {
    pub req: LlmRequest,
    /// The path after the route prefix (e.g. `/chat/completions`) and query.
    pub rest: String,
    /// Target indexes of the alias, in the order to try them.
    pub order: Vec<usize>,
    pub reservations: Vec<Reservation>,
    pub budgets: Vec<Arc<BudgetState>>,
    /// Held in the shared store, once it admitted the call.
    pub shared: Option<Arc<shared::SharedHeld>>,
    /// Filled by the exchange.
    pub outcome: Option<Outcome>,
}

pub struct Outcome {
    pub target: usize,
    pub status: u16,
    pub usage: UsageCounts,
    pub saw_usage: bool,
    pub first_token_at: Option<Instant>,
    pub attempts: u32,
    /// The answer's text, when `llm.audit_text` is on.
    pub text: Option<String>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Admission checks that need no I/O: grant, alias, budgets and token
/// reservations. Rate limits and concurrency are the caller's (shared with
/// tool traffic).
pub fn decide(
    snap: &Snapshot,
    state: &LlmState,
    route_upstream: &str,
    caller: Option<&Caller>,
    input: &LimitInput<'_>,
    (req, store): (&LlmRequest, Option<&Arc<crate::limits::shared::RedisStore>>),
) -> Result<Admitted, LlmDeny> {
    // Unknown models are unknown to everyone; a known model the caller has
    // no grant for is a 403, as SDKs expect.
    let alias = snap
        .llm
        .alias(&req.model)
        .ok_or_else(|| LlmDeny::ModelNotFound(req.model.clone()))?;
    if let Some(c) = caller {
        let verdict = snap.policy.decide(
            c.roles(),
            Kind::Models,
            route_upstream,
            &req.model,
            &mut || None,
        );
        if verdict != Verdict::Allow {
            return Err(LlmDeny::ModelDenied(req.model.clone()));
        }
    }
    let need = req.estimate(DEFAULT_OUTPUT_ESTIMATE);
    // With a store, shared limits are the store's; without, local.
    let (reservations, budgets) =
        state.hold_local(input, need, |shared| !shared || store.is_none())?;
    let shared = store.and_then(|store| state.shared_ask(store, input, need));
    Ok(Admitted {
        order: state.order(&alias.targets),
        reservations,
        budgets,
        shared,
    })
}

impl LlmState {
    /// Check the tenant's budgets and reserve `need` in every token bucket
    /// whose limit `which(shared)` picks; all or nothing.
    pub fn hold_local(
        &self,
        input: &LimitInput<'_>,
        need: u64,
        which: impl Fn(bool) -> bool,
    ) -> Result<(Vec<Reservation>, Vec<Arc<BudgetState>>), LlmDeny> {
        let now = now_unix();
        let budgets: Vec<Arc<BudgetState>> = self
            .budgets
            .iter()
            .filter(|b| which(b.budget.shared) && Some(b.budget.tenant.as_str()) == input.tenant)
            .cloned()
            .collect();
        for b in &budgets {
            b.check(now).map_err(LlmDeny::Budget)?;
        }
        let mut held: Vec<Reservation> = Vec::new();
        let t = Instant::now();
        for (limit, buckets) in &self.tpm {
            if !which(limit.shared) || !limit.selector.matches(input) {
                continue;
            }
            let key = key_hash(&limit.per, input);
            if let Err(refused) = buckets.reserve(key, need, t) {
                for (b, k, n) in held.drain(..) {
                    b.reconcile(k, n, 0);
                }
                return Err(match refused {
                    Refused::NeverFits => LlmDeny::NeverFits {
                        limit: limit.name.clone(),
                        need,
                    },
                    Refused::Wait(wait) => LlmDeny::TokenRate {
                        limit: limit.name.clone(),
                        wait,
                    },
                });
            }
            held.push((Arc::clone(buckets), key, need));
        }
        Ok((held, budgets))
    }

    /// The shared budgets and buckets that apply to the call, as the store
    /// keeps them; `None` when none does.
    fn shared_ask(
        &self,
        store: &Arc<crate::limits::shared::RedisStore>,
        input: &LimitInput<'_>,
        need: u64,
    ) -> Option<shared::SharedHeld> {
        let budgets: Vec<_> = self
            .budgets
            .iter()
            .zip(&self.budget_keys)
            .filter(|(b, _)| Some(b.budget.tenant.as_str()) == input.tenant)
            .filter_map(|(b, key)| Some((Arc::clone(key.as_ref()?), Arc::clone(b))))
            .collect();
        let buckets: Vec<_> = self
            .tpm
            .iter()
            .filter(|(l, _)| l.shared && l.selector.matches(input))
            .map(|(l, _)| {
                let key = shared::bucket_key(store, l, key_hash(&l.per, input));
                (key, Arc::clone(l))
            })
            .collect();
        (!budgets.is_empty() || !buckets.is_empty()).then(|| shared::SharedHeld {
            store: Arc::clone(store),
            budgets,
            buckets,
            need,
            reserved_in: Vec::new(),
        })
    }
}

/// Settle a finished (or failed) call: token buckets get back what was
/// reserved and not used, budgets are charged. Returns the cost, if priced.
pub fn settle(
    (snap, state): (&Snapshot, &LlmState),
    call: &LlmCall,
    m: &Arc<Metrics>,
    tenant: &str,
) -> Option<f64> {
    let used = call
        .outcome
        .as_ref()
        .filter(|o| o.saw_usage)
        .map(|o| o.usage);
    // Without usage (the call failed, or the upstream said nothing), keep
    // the reservation for an answered call and refund one that never ran.
    let answered = call.outcome.as_ref().is_some_and(|o| o.status < 400);
    for (b, key, reserved) in &call.reservations {
        let actual = used.map_or(if answered { *reserved } else { 0 }, |u| u.total());
        b.reconcile(*key, *reserved, actual);
    }
    let cost = used.and_then(|u| {
        let o = call.outcome.as_ref()?;
        let target = snap.llm.alias(&call.req.model)?.targets.get(o.target)?;
        snap.llm
            .cost(&[call.req.model.as_str(), target.model.as_str()], &u)
    });
    if let Some(held) = &call.shared {
        let s = shared::Settle {
            used: used.map_or(if answered { held.need } else { 0 }, |u| u.total()),
            charged_tokens: used.map_or(0, |u| u.total()),
            cost_usd: cost.unwrap_or(0.0),
        };
        shared::settle_later(state, Arc::clone(held), s, Arc::clone(m));
    }
    let u = used?;
    let now = now_unix();
    for b in &call.budgets {
        b.charge(now, u.total(), cost.unwrap_or(0.0));
        let (tokens, usd) = b.remaining(now);
        let name = b.budget.name.as_str();
        if let (Some(t), Some(limit)) = (tokens, b.budget.tokens) {
            m.llm_budget_remaining
                .with_label_values(&[name, "tokens"])
                .set(t as f64);
            m.llm_budget_limit
                .with_label_values(&[name, "tokens"])
                .set(limit as f64);
        }
        if let (Some(c), Some(limit)) = (usd, b.budget.cost_usd) {
            m.llm_budget_remaining
                .with_label_values(&[name, "usd"])
                .set(c);
            m.llm_budget_limit
                .with_label_values(&[name, "usd"])
                .set(limit);
        }
    }
    if let Some(c) = cost {
        m.llm_cost
            .with_label_values(&[tenant, call.req.model.as_str()])
            .inc_by(c);
    }
    cost
}

/// `GET <route>/models`: the aliases the caller may use, OpenAI's shape.
pub fn models_list(snap: &Snapshot, route_upstream: &str, caller: Option<&Caller>) -> String {
    let data: Vec<serde_json::Value> = snap
        .llm
        .models
        .iter()
        .filter(|m| {
            caller.is_none_or(|c| {
                snap.policy.decide(c.roles(), Kind::Models, route_upstream, &m.name, &mut || None)
                    == Verdict::Allow
            })
        })
        .map(|m| serde_json::json!({"id": m.name, "object": "model", "created": 0, "owned_by": "sluice"}))
        .collect();
    serde_json::json!({"object": "list", "data": data}).to_string()
}
