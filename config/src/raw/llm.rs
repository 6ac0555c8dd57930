//! The `llm` section: model aliases and their targets, prices, budgets and
//! token limits for `transport: llm` routes.

use serde::Deserialize;

use super::rate_limits::RawSelector;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// Model names clients may ask for, and where each goes.
    #[serde(default)]
    pub models: Vec<RawModel>,
    /// USD per million tokens, by model name (alias or upstream model).
    #[serde(default)]
    pub prices: Vec<RawPrice>,
    #[serde(default)]
    pub budgets: Vec<RawBudget>,
    #[serde(default)]
    pub token_limits: Vec<RawTokenLimit>,
    /// Record prompt and completion text in audit events (redacted by
    /// `audit.redact` pointers). Default false.
    #[serde(default)]
    pub audit_text: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    pub targets: Vec<RawTarget>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub upstream: String,
    /// The model name the upstream knows; default: the alias.
    pub model: Option<String>,
    /// Share of traffic; default 1. The others are fallbacks, in order.
    pub weight: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub name: String,
    pub tenant: String,
    /// `day` (default) or `month`, in UTC.
    pub period: Option<String>,
    pub tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// Spend kept in the shared store (`rate_limits.shared_store`), one
    /// budget across replicas and restarts.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenLimit {
    pub name: String,
    #[serde(default, rename = "match")]
    pub selector: RawSelector,
    /// Any of tenant, subject, role, route, upstream, model.
    #[serde(default)]
    pub per: Vec<String>,
    pub tokens_per_minute: u64,
    /// One bucket across replicas, in the shared store.
    #[serde(default)]
    pub shared: bool,
}
