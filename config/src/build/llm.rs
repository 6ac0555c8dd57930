//! Builds the `llm` section: model aliases and their targets checked against
//! the upstreams, prices, per-tenant budgets and token limits.

use std::collections::HashMap;

use super::check::Known;
use super::rate_limits::build_selector_for;
use crate::error::ConfigError;
use crate::model::{Budget, Llm, ModelAlias, Period, Price, Target, TokenLimit};
use crate::raw::{RawBudget, RawLlm, RawModel, RawPrice, RawTokenLimit};

pub(crate) fn build_llm(
    raw: &RawLlm,
    upstreams: &[String],
    tenants: &[String],
    (known, has_store): (&Known<'_>, bool),
    errs: &mut Vec<ConfigError>,
) -> Llm {
    let models = raw
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            build_model(
                m,
                &raw.models[..i],
                upstreams,
                &format!("llm.models[{i}]"),
                errs,
            )
        })
        .collect();
    let mut prices = HashMap::new();
    for (i, p) in raw.prices.iter().enumerate() {
        prices.insert(
            p.model.clone(),
            build_price(p, &format!("llm.prices[{i}]"), errs),
        );
    }
    let budgets = raw
        .budgets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let path = format!("llm.budgets[{i}]");
            shared_needs_store(b.shared, has_store, &path, errs);
            build_budget(b, tenants, &path, errs)
        })
        .collect();
    let token_limits = raw
        .token_limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let path = format!("llm.token_limits[{i}]");
            shared_needs_store(l.shared, has_store, &path, errs);
            build_token_limit(l, known, &path, errs)
        })
        .collect();
    Llm {
        models,
        prices,
        budgets,
        token_limits,
        audit_text: raw.audit_text,
    }
}

/// An alias, unique among `before`, with at least one target that takes
/// traffic; a target on an unknown upstream is reported and left out.
fn build_model(
    m: &RawModel,
    before: &[RawModel],
    upstreams: &[String],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> ModelAlias {
    if m.name.is_empty() || before.iter().any(|o| o.name == m.name) {
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
    ModelAlias {
        name: m.name.clone(),
        targets,
    }
}

fn build_price(p: &RawPrice, path: &str, errs: &mut Vec<ConfigError>) -> Price {
    let bad = |v: f64| !(v.is_finite() && v >= 0.0);
    if bad(p.input_per_mtok) || bad(p.output_per_mtok) || p.cached_input_per_mtok.is_some_and(bad) {
        errs.push(ConfigError::new(
            path,
            "prices must be finite and not negative",
        ));
    }
    Price {
        input_per_mtok: p.input_per_mtok,
        output_per_mtok: p.output_per_mtok,
        cached_input_per_mtok: p.cached_input_per_mtok.unwrap_or(p.input_per_mtok),
    }
}

fn shared_needs_store(shared: bool, has_store: bool, path: &str, errs: &mut Vec<ConfigError>) {
    if shared && !has_store {
        errs.push(ConfigError::new(
            format!("{path}.shared"),
            "needs rate_limits.shared_store",
        ));
    }
}

fn build_budget(
    b: &RawBudget,
    tenants: &[String],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Budget {
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
        errs.push(ConfigError::new(path, "give tokens, cost_usd or both"));
    }
    Budget {
        name: b.name.clone(),
        tenant: b.tenant.clone(),
        period,
        tokens: b.tokens,
        cost_usd: b.cost_usd,
        shared: b.shared,
    }
}

fn build_token_limit(
    l: &RawTokenLimit,
    known: &Known<'_>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> TokenLimit {
    if l.tokens_per_minute == 0 {
        errs.push(ConfigError::new(
            format!("{path}.tokens_per_minute"),
            "must be above 0",
        ));
    }
    let (selector, per) = build_selector_for(&l.selector, &l.per, known, path, errs);
    TokenLimit {
        name: l.name.clone(),
        selector,
        per,
        tokens_per_minute: l.tokens_per_minute.max(1),
        shared: l.shared,
    }
}
