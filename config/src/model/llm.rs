//! Model traffic, resolved: aliases routed to weighted (upstream, model)
//! targets, the price table, token budgets per tenant and token-per-minute
//! limits, and the token counts of one call.

use std::collections::HashMap;

use super::rate_limits::{KeyPart, Selector};

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
    /// Spend kept in the shared store.
    pub shared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimit {
    pub name: String,
    pub selector: Selector,
    pub per: Vec<KeyPart>,
    pub tokens_per_minute: u64,
    /// One bucket across replicas, in the shared store.
    pub shared: bool,
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
