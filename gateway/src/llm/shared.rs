//! Token limits and budgets shared across replicas (`shared: true`), kept in
//! the shared store (Redis) on its server's clock. One script admits a model
//! call — every shared budget of the tenant checked against its spend plus
//! the estimates of the calls in flight, then the estimate reserved in every
//! budget and taken from every shared token bucket, all or nothing — and
//! one settles it — the reservations given back, the usage and cost charged
//! to the budgets of the period it ends in: one round trip each per call,
//! for all shared checks together. Spend outlives restarts and is one for
//! every replica; a burst cannot overrun a budget by more than the calls
//! admitted before their estimates reached it.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use sluice_config::{Budget, Period, TokenLimit};

use super::{BudgetState, Exhausted, LlmDeny};
use crate::limits::shared::{RedisStore, StoreDown};
use crate::metrics::Metrics;

/// The period a budget's spend is kept under: UTC days and calendar months
/// from the Redis server's `TIME`; its start and end in Unix seconds.
pub const PERIOD: &str = r"
local function period(kind, now)
  local days = math.floor(now / 86400)
  if kind ~= 'month' then
    return days * 86400, days * 86400 + 86400
  end
  local function first_of_month(d)
    -- civil from days (H. Hinnant): the day of the month of day `d`.
    local z = d + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
      - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local dom = doy - math.floor((153 * mp + 2) / 5) + 1
    return d - (dom - 1)
  end
  local start = first_of_month(days)
  return start * 86400, first_of_month(start + 31) * 86400
end
";

/// KEYS: the budgets' keys, then the buckets'. ARGV: the number of budgets,
/// the tokens needed, then per budget its period, token and cost limits
/// (-1: none), then per bucket its tokens a minute. Returns {0, period
/// start per budget} admitted (the estimate reserved in each budget's
/// period `r`), {1, budget, seconds to reset, 0 token / 1 cost} exhausted,
/// {2, bucket, µs to wait} not yet, {3, bucket} never fits.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1])
local now_us = now * 1000000 + tonumber(t[2])
local nb = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local starts, ends = {}, {}
for i = 1, nb do
  local at = 3 + (i - 1) * 3
  local s, e = period(ARGV[at], now)
  starts[i], ends[i] = s, e
  local spent = redis.call('HMGET', KEYS[i] .. ':' .. s, 't', 'c', 'r')
  local tl, cl = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local held = tonumber(spent[1] or 0) + math.max(0, tonumber(spent[3] or 0))
  if tl >= 0 and held >= tl then return {1, i, e - now, 0} end
  if cl >= 0 and tonumber(spent[2] or 0) >= cl then return {1, i, e - now, 1} end
end
local first = 3 + nb * 3
local have = {}
for j = 1, #KEYS - nb do
  local per_min = tonumber(ARGV[first + j - 1])
  if need > per_min then return {3, j} end
  local b = redis.call('HMGET', KEYS[nb + j], 'tok', 'at')
  local tok, at = tonumber(b[1] or per_min), tonumber(b[2] or now_us)
  local h = math.min(per_min, tok + math.max(0, now_us - at) * per_min / 60000000)
  if h < need then return {2, j, math.ceil((need - h) * 60000000 / per_min)} end
  have[j] = h
end
for j = 1, #KEYS - nb do
  redis.call('HSET', KEYS[nb + j], 'tok', have[j] - need, 'at', now_us)
  redis.call('PEXPIRE', KEYS[nb + j], 120000)
end
local out = {0}
for i = 1, nb do
  local k = KEYS[i] .. ':' .. starts[i]
  redis.call('HINCRBY', k, 'r', need)
  redis.call('EXPIREAT', k, ends[i] + 86400)
  out[#out + 1] = starts[i]
end
return out
";

/// KEYS as for `ADMIT`. ARGV: the number of budgets, tokens reserved,
/// tokens used, tokens to charge, cost to charge, then per budget its
/// period, then per budget the period start its reservation was made in
/// (-1: none), then per bucket its tokens a minute. Returns per budget what
/// it has spent in this period: tokens, cost (as strings).
const SETTLE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1])
local nb = tonumber(ARGV[1])
local out = {}
for i = 1, nb do
  local s, e = period(ARGV[5 + i], now)
  local k = KEYS[i] .. ':' .. s
  local spent_t = redis.call('HINCRBY', k, 't', ARGV[4])
  local spent_c = redis.call('HINCRBYFLOAT', k, 'c', ARGV[5])
  redis.call('EXPIREAT', k, e + 86400)
  out[#out + 1] = tostring(spent_t)
  out[#out + 1] = tostring(spent_c)
  local rs = tonumber(ARGV[5 + nb + i])
  local rk = KEYS[i] .. ':' .. ARGV[5 + nb + i]
  if rs >= 0 and redis.call('EXISTS', rk) == 1 then
    if redis.call('HINCRBY', rk, 'r', -tonumber(ARGV[2])) < 0 then
      redis.call('HSET', rk, 'r', 0)
    end
  end
end
for j = 1, #KEYS - nb do
  local per_min = tonumber(ARGV[5 + 2 * nb + j])
  local tok = tonumber(redis.call('HGET', KEYS[nb + j], 'tok'))
  if tok then
    tok = tok + tonumber(ARGV[2]) - tonumber(ARGV[3])
    redis.call('HSET', KEYS[nb + j], 'tok', math.min(per_min, tok))
  end
end
return out
";

/// The scripts, compiled once.
pub struct Scripts {
    admit: Script,
    settle: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            admit: Script::new(&format!("{PERIOD}{ADMIT}")),
            settle: Script::new(&format!("{PERIOD}{SETTLE}")),
        }
    }
}

/// What a call holds in the shared store, to settle after it.
pub struct SharedHeld {
    pub store: Arc<RedisStore>,
    /// Each shared budget of the tenant, with its key.
    pub budgets: Vec<(Arc<str>, Arc<BudgetState>)>,
    /// Each shared bucket that applies, with its key.
    pub buckets: Vec<(String, Arc<TokenLimit>)>,
    /// The tokens reserved in every bucket and budget.
    pub need: u64,
    /// Per budget, the start of the period its reservation was made in
    /// (set by [`admit`]; -1 until then).
    pub reserved_in: Vec<i64>,
}

fn period_arg(p: Period) -> &'static str {
    match p {
        Period::Day => "day",
        Period::Month => "month",
    }
}

/// The keys a tenant's shared budget (under the store's `prefix`) and a
/// shared bucket are kept under.
pub fn budget_key(prefix: &str, b: &Budget) -> String {
    format!("{prefix}:llm:budget:{}:{}", b.name, b.tenant)
}

pub fn bucket_key(store: &RedisStore, l: &TokenLimit, key: u64) -> String {
    format!("{}:llm:tpm:{}:{key:016x}", store.config.key_prefix, l.name)
}

/// Check the budgets, reserve `held.need` in each and take it from every
/// bucket, in one round trip; the periods the reservations were made in
/// go to `held.reserved_in`. `Err(Ok(deny))`: refused; `Err(Err(StoreDown))`:
/// undecided.
pub async fn admit(
    scripts: &Scripts,
    held: &mut SharedHeld,
    metrics: &Metrics,
) -> Result<(), Result<LlmDeny, StoreDown>> {
    let mut inv = scripts.admit.prepare_invoke();
    keys(&mut inv, held);
    inv.arg(held.budgets.len()).arg(held.need);
    for (_, b) in &held.budgets {
        let b = &b.budget;
        inv.arg(period_arg(b.period))
            .arg(b.tokens.map_or(-1, |t| t as i64))
            .arg(b.cost_usd.map_or(-1.0, |c| c));
    }
    for (_, l) in &held.buckets {
        inv.arg(l.tokens_per_minute);
    }
    let verdict: Vec<i64> = held.store.run(&inv, metrics).await.map_err(Err)?;
    let at = |i: i64| usize::try_from(i - 1).unwrap_or(0);
    match verdict.as_slice() {
        [0, starts @ ..] => {
            held.reserved_in = starts.to_vec();
            Ok(())
        }
        [1, i, resets, what, ..] => {
            let b = &held.budgets[at(*i).min(held.budgets.len() - 1)].1.budget;
            Err(Ok(LlmDeny::Budget(Exhausted {
                budget: b.name.clone(),
                what: if *what == 1 { "cost" } else { "token" },
                resets_in: Duration::from_secs((*resets).max(1) as u64),
                period: period_arg(b.period),
            })))
        }
        [2, j, wait_us, ..] => Err(Ok(LlmDeny::TokenRate {
            limit: bucket_name(held, at(*j)),
            wait: Duration::from_micros((*wait_us).max(1) as u64),
        })),
        [3, j, ..] => Err(Ok(LlmDeny::NeverFits {
            limit: bucket_name(held, at(*j)),
            need: held.need,
        })),
        _ => Err(Err(StoreDown)),
    }
}

/// The name of the `j`th bucket's limit.
fn bucket_name(held: &SharedHeld, j: usize) -> String {
    held.buckets
        .get(j)
        .map_or_else(String::new, |(_, l)| l.name.clone())
}

/// Every budget's key, then every bucket's, as both scripts take them.
fn keys(inv: &mut redis::ScriptInvocation<'_>, held: &SharedHeld) {
    for (key, _) in &held.budgets {
        inv.key(&**key);
    }
    for (key, _) in &held.buckets {
        inv.key(key);
    }
}

/// What a finished call settles.
pub struct Settle {
    pub used: u64,
    pub charged_tokens: u64,
    pub cost_usd: f64,
}

/// Give back what was reserved and not used, charge the budgets; what each
/// budget has spent in its period after.
pub async fn settle(
    scripts: &Scripts,
    held: &SharedHeld,
    s: &Settle,
    metrics: &Metrics,
) -> Result<Vec<(u64, f64)>, StoreDown> {
    let mut inv = scripts.settle.prepare_invoke();
    keys(&mut inv, held);
    inv.arg(held.budgets.len())
        .arg(held.need)
        .arg(s.used)
        .arg(s.charged_tokens)
        .arg(s.cost_usd);
    for (_, b) in &held.budgets {
        inv.arg(period_arg(b.budget.period));
    }
    for i in 0..held.budgets.len() {
        inv.arg(held.reserved_in.get(i).copied().unwrap_or(-1));
    }
    for (_, l) in &held.buckets {
        inv.arg(l.tokens_per_minute);
    }
    let spent: Vec<String> = held.store.run(&inv, metrics).await?;
    Ok(spent
        .chunks(2)
        .map(|p| {
            let tokens = p.first().and_then(|t| t.parse().ok()).unwrap_or(0);
            let cost = p.get(1).and_then(|c| c.parse().ok()).unwrap_or(0.0);
            (tokens, cost)
        })
        .collect())
}

/// Settle in the background (the answer has gone; nothing waits on the
/// store): the budgets' remaining spend goes to `sluice_llm_budget_remaining`.
/// A store that is down loses this call's settlement — counted in
/// `sluice_limit_store_fallbacks_total{mode="unsettled"}` and logged.
pub fn settle_later(
    state: &super::LlmState,
    held: Arc<SharedHeld>,
    s: Settle,
    metrics: Arc<Metrics>,
) {
    let scripts = Arc::clone(&state.scripts);
    tokio::spawn(async move {
        match settle(&scripts, &held, &s, &metrics).await {
            Ok(spent) => {
                for ((_, b), (tokens, cost)) in held.budgets.iter().zip(spent) {
                    let b = &b.budget;
                    let g = &metrics.llm_budget_remaining;
                    if let Some(t) = b.tokens {
                        let left = t.saturating_sub(tokens) as f64;
                        g.with_label_values(&[b.name.as_str(), "tokens"]).set(left);
                    }
                    if let Some(c) = b.cost_usd {
                        let left = (c - cost).max(0.0);
                        g.with_label_values(&[b.name.as_str(), "usd"]).set(left);
                    }
                }
            }
            Err(StoreDown) => {
                tracing::warn!(
                    tokens = s.charged_tokens,
                    "a model call's shared spend was not settled: the store is down"
                );
                metrics
                    .limit_store_fallbacks
                    .with_label_values(&["unsettled"])
                    .inc();
            }
        }
    });
}
