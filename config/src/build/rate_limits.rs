//! Builds the `rate_limits` and `concurrency_limits` sections: rates parsed
//! into emission intervals, selectors checked against the configured names,
//! key dimensions parsed, the shared store's URL and fallback checked.

use std::time::Duration;

use super::check::{secret_ref, Known};
use crate::error::ConfigError;
use crate::model::{
    ConcurrencyRule, KeyPart, OnUnavailable, RateLimits, RateRule, Selector, SharedStore,
};
use crate::raw::{RawConcurrencyRule, RawRateLimits, RawRateRule, RawSelector, RawSharedStore};

pub(crate) fn build_rate_limits(
    raw: &RawRateLimits,
    concurrency: &[RawConcurrencyRule],
    known: &Known<'_>,
    errs: &mut Vec<ConfigError>,
) -> RateLimits {
    let mut names: Vec<String> = Vec::new();
    let rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("rate_limits.rules[{i}]");
            unique(&mut names, &r.name, &path, errs);
            build_rate_rule(r, raw.shared_store.is_some(), known, &path, errs)
        })
        .collect();
    let concurrency = concurrency
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("concurrency_limits[{i}]");
            unique(&mut names, &c.name, &path, errs);
            build_cap(c, known, &path, errs)
        })
        .collect();
    let shared_store = raw
        .shared_store
        .as_ref()
        .map(|s| build_shared_store(s, errs));
    RateLimits {
        rules,
        concurrency,
        shared_store,
        sweep_interval: Duration::from_secs(raw.sweep_interval_s.unwrap_or(60).max(1)),
    }
}

/// Limit names are unique across rate and concurrency limits, and not empty.
fn unique(names: &mut Vec<String>, name: &str, path: &str, errs: &mut Vec<ConfigError>) {
    if name.is_empty() || names.iter().any(|n| n == name) {
        errs.push(ConfigError::new(
            format!("{path}.name"),
            format!("`{name}`: limit names must be unique and not empty"),
        ));
    }
    names.push(name.to_owned());
}

fn build_rate_rule(
    r: &RawRateRule,
    has_store: bool,
    known: &Known<'_>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> RateRule {
    let period = parse_rate(&r.rate).unwrap_or_else(|e| {
        errs.push(ConfigError::new(format!("{path}.rate"), e));
        Duration::from_secs(1)
    });
    if r.burst == 0 {
        errs.push(ConfigError::new(
            format!("{path}.burst"),
            "must be at least 1",
        ));
    }
    if r.shared && !has_store {
        errs.push(ConfigError::new(
            format!("{path}.shared"),
            "needs rate_limits.shared_store",
        ));
    }
    let (selector, per) = build_selector_for(&r.selector, &r.per, known, path, errs);
    RateRule {
        name: r.name.clone(),
        selector,
        per,
        period,
        burst: r.burst.max(1),
        shared: r.shared,
    }
}

fn build_cap(
    c: &RawConcurrencyRule,
    known: &Known<'_>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> ConcurrencyRule {
    if c.max == 0 {
        errs.push(ConfigError::new(
            format!("{path}.max"),
            "must be at least 1",
        ));
    }
    let (selector, per) = build_selector_for(&c.selector, &c.per, known, path, errs);
    ConcurrencyRule {
        name: c.name.clone(),
        selector,
        per,
        max: c.max.max(1),
    }
}

fn build_shared_store(s: &RawSharedStore, errs: &mut Vec<ConfigError>) -> SharedStore {
    let path = "rate_limits.shared_store";
    match url::Url::parse(&s.redis_url) {
        Ok(u) if u.scheme() == "redis" => {
            if !u.username().is_empty() || u.password().is_some() {
                errs.push(ConfigError::new(
                    format!("{path}.redis_url"),
                    "credentials in the URL are not allowed: use `password`",
                ));
            }
        }
        Ok(_) => errs.push(ConfigError::new(
            format!("{path}.redis_url"),
            "expected a redis:// URL",
        )),
        Err(e) => errs.push(ConfigError::new(format!("{path}.redis_url"), e.to_string())),
    }
    let on_unavailable = match s.on_unavailable.as_deref() {
        None | Some("local") => OnUnavailable::Local,
        Some("open") => OnUnavailable::Open,
        Some("closed") => OnUnavailable::Closed,
        Some(o) => {
            errs.push(ConfigError::new(
                format!("{path}.on_unavailable"),
                format!("`{o}`: expected local, open or closed"),
            ));
            OnUnavailable::Local
        }
    };
    SharedStore {
        redis_url: s.redis_url.clone(),
        password: s
            .password
            .as_ref()
            .map(|p| secret_ref(p, &format!("{path}.password"), errs)),
        key_prefix: s.key_prefix.clone().unwrap_or_else(|| "sluice:rl".into()),
        timeout: Duration::from_millis(s.timeout_ms.unwrap_or(50).max(1)),
        on_unavailable,
    }
}

/// Parse `<n>/<unit>` into the emission interval (time per request).
pub fn parse_rate(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected <n>/<unit>, e.g. 60/min"))?;
    let n: u64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}`: the count must be a positive integer"))?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => return Err(format!("`{s}`: unknown unit `{other}` (s, min, h, day)")),
    };
    let nanos = per.as_nanos() / u128::from(n);
    if nanos == 0 {
        return Err(format!("`{s}`: more than one request per nanosecond"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

fn build_selector(
    raw: &RawSelector,
    known: &Known<'_>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Selector {
    let check = |list: &[String], names: &[String], what: &str, errs: &mut Vec<ConfigError>| {
        for n in list {
            if !names.contains(n) {
                errs.push(ConfigError::new(
                    format!("{path}.match.{what}"),
                    format!("`{n}` is not a configured {what}"),
                ));
            }
        }
    };
    check(&raw.routes, known.routes, "routes", errs);
    check(&raw.tenants, known.tenants, "tenants", errs);
    check(&raw.roles, known.roles, "roles", errs);
    Selector {
        methods: raw.methods.clone(),
        routes: raw.routes.clone(),
        upstreams: raw.upstreams.clone(),
        tools: raw.tools.clone(),
        models: raw.models.clone(),
        tenants: raw.tenants.clone(),
        roles: raw.roles.clone(),
    }
}

fn build_per(raw: &[String], path: &str, errs: &mut Vec<ConfigError>) -> Vec<KeyPart> {
    let mut out = Vec::new();
    for p in raw {
        match key_part(p) {
            Some(k) if !out.contains(&k) => out.push(k),
            Some(_) => {}
            None => errs.push(ConfigError::new(
                format!("{path}.per"),
                format!("`{p}`: expected tenant, subject, role, route, upstream, tool or model"),
            )),
        }
    }
    out
}

/// A selector and key dimensions, validated (shared with token limits).
pub(crate) fn build_selector_for(
    raw: &RawSelector,
    per: &[String],
    known: &Known<'_>,
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> (Selector, Vec<KeyPart>) {
    (
        build_selector(raw, known, path, errs),
        build_per(per, path, errs),
    )
}

fn key_part(s: &str) -> Option<KeyPart> {
    Some(match s {
        "tenant" => KeyPart::Tenant,
        "subject" => KeyPart::Subject,
        "role" => KeyPart::Role,
        "route" => KeyPart::Route,
        "upstream" => KeyPart::Upstream,
        "tool" => KeyPart::Tool,
        "model" => KeyPart::Model,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_to_emission_intervals() {
        assert_eq!(parse_rate("60/min").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_rate("10/s").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_rate("24/day").unwrap(), Duration::from_secs(3600));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
        assert!(parse_rate("five").is_err());
    }
}
