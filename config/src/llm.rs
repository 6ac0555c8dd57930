//! Model traffic as config: aliases routed to weighted (upstream, model)
//! targets, the price table, token budgets per tenant, and token-per-minute
//! limits. Routes with `transport: llm` serve the OpenAI-compatible API.

use std::collections::HashMap;

use crate::limits::{build_selector_for, KeyPart, Selector};
use crate::raw::RawLlm;
use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Index into `Snapshot::upstreams`.
    pub upstream: usize,
    pub model: String,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAlias {
    pub name: String,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub name: String,
    pub tenant: String,
    pub period: Period,
    pub tokens: Option<u64>,
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimit {
    pub name: String,
    pub selector: Selector,
    pub per: Vec<KeyPart>,
    pub tokens_per_minute: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Llm {
    pub models: Vec<ModelAlias>,
    pub prices: HashMap<String, Price>,
    pub budgets: Vec<Budget>,
    pub token_limits: Vec<TokenLimit>,
    pub audit_text: bool,
}

impl Llm {
    pub fn alias(&self, name: &str) -> Option<&ModelAlias> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Cost in USD of a call to `model` (the alias, else the upstream model).
    pub fn cost(&self, models: &[&str], u: &UsageCounts) -> Option<f64> {
        let p = models.iter().find_map(|m| self.prices.get(*m))?;
        let cached = u.cached.min(u.prompt);
        Some(
            ((u.prompt - cached) as f64 * p.input_per_mtok
                + cached as f64 * p.cached_input_per_mtok
                + u.completion as f64 * p.output_per_mtok)
                / 1_000_000.0,
        )
    }
}

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl UsageCounts {
    pub fn total(&self) -> u64 {
        self.prompt + self.completion
    }
}

pub(crate) fn build_llm(
    raw: &RawLlm,
    upstreams: &[String],
    tenants: &[String],
    known: &crate::limits::Known<'_>,
    errs: &mut Vec<ConfigError>,
) -> Llm {
    let mut models = Vec::new();
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("llm.models[{i}]");
        if m.name.is_empty() || raw.models[..i].iter().any(|o| o.name == m.name) {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                format!("`{}`: model names must be unique and not empty", m.name),
            ));
        }
        if m.targets.is_empty() {
            errs.push(ConfigError::new(
                format!("{path}.targets"),
                "at least one target",
            ));
        }
        let mut targets = Vec::new();
        for (j, t) in m.targets.iter().enumerate() {
            match upstreams.iter().position(|u| *u == t.upstream) {
                Some(upstream) => targets.push(Target {
                    upstream,
                    model: t.model.clone().unwrap_or_else(|| m.name.clone()),
                    weight: t.weight.unwrap_or(1),
                }),
                None => errs.push(ConfigError::new(
                    format!("{path}.targets[{j}].upstream"),
                    format!("unknown upstream `{}`", t.upstream),
                )),
            }
        }
        if !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
            errs.push(ConfigError::new(
                format!("{path}.targets"),
                "at least one target needs a weight above 0",
            ));
        }
        models.push(ModelAlias {
            name: m.name.clone(),
            targets,
        });
    }
    let mut prices = HashMap::new();
    for (i, p) in raw.prices.iter().enumerate() {
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        if bad(p.input_per_mtok)
            || bad(p.output_per_mtok)
            || p.cached_input_per_mtok.is_some_and(bad)
        {
            errs.push(ConfigError::new(
                format!("llm.prices[{i}]"),
                "prices must be finite and not negative",
            ));
        }
        prices.insert(
            p.model.clone(),
            Price {
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
                cached_input_per_mtok: p.cached_input_per_mtok.unwrap_or(p.input_per_mtok),
            },
        );
    }
    let mut budgets = Vec::new();
    for (i, b) in raw.budgets.iter().enumerate() {
        let path = format!("llm.budgets[{i}]");
        if !tenants.contains(&b.tenant) {
            errs.push(ConfigError::new(
                format!("{path}.tenant"),
                format!("unknown tenant `{}`", b.tenant),
            ));
        }
        let period = match b.period.as_deref() {
            None | Some("day") => Period::Day,
            Some("month") => Period::Month,
            Some(o) => {
                errs.push(ConfigError::new(
                    format!("{path}.period"),
                    format!("`{o}`: expected day or month"),
                ));
                Period::Day
            }
        };
        if b.tokens.is_none() && b.cost_usd.is_none() {
            errs.push(ConfigError::new(&path, "give tokens, cost_usd or both"));
        }
        budgets.push(Budget {
            name: b.name.clone(),
            tenant: b.tenant.clone(),
            period,
            tokens: b.tokens,
            cost_usd: b.cost_usd,
        });
    }
    let mut token_limits = Vec::new();
    for (i, l) in raw.token_limits.iter().enumerate() {
        let path = format!("llm.token_limits[{i}]");
        if l.tokens_per_minute == 0 {
            errs.push(ConfigError::new(
                format!("{path}.tokens_per_minute"),
                "must be above 0",
            ));
        }
        let (selector, per) = build_selector_for(&l.selector, &l.per, known, &path, errs);
        token_limits.push(TokenLimit {
            name: l.name.clone(),
            selector,
            per,
            tokens_per_minute: l.tokens_per_minute.max(1),
        });
    }
    Llm {
        models,
        prices,
        budgets,
        token_limits,
        audit_text: raw.audit_text,
    }
}
