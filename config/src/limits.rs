//! Traffic limits as config: rate limits (GCRA rate + burst) and concurrency
//! caps, each scoped by a selector and keyed by caller dimensions, plus the
//! optional shared store (Redis) that makes a limit global across replicas.

use std::time::Duration;

use crate::policy::glob;
use crate::raw::{RawConcurrencyRule, RawRateLimits, RawSelector};
use crate::security::SecretRef;
use crate::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPart {
    Tenant,
    Subject,
    Role,
    Route,
    Upstream,
    Tool,
    Model,
}

impl KeyPart {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tenant" => Self::Tenant,
            "subject" => Self::Subject,
            "role" => Self::Role,
            "route" => Self::Route,
            "upstream" => Self::Upstream,
            "tool" => Self::Tool,
            "model" => Self::Model,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub methods: Vec<String>,
    pub routes: Vec<String>,
    pub upstreams: Vec<String>,
    pub tools: Vec<String>,
    pub models: Vec<String>,
    pub tenants: Vec<String>,
    pub roles: Vec<String>,
}

/// What a limit looks at in one request: who, where, what.
#[derive(Debug, Clone, Copy)]
pub struct LimitInput<'a> {
    pub tenant: Option<&'a str>,
    /// The authenticated subject, or the client's address without identity.
    pub subject: &'a str,
    pub roles: &'a [Box<str>],
    pub route: &'a str,
    pub upstream: &'a str,
    pub method: &'a str,
    pub target: Option<&'a str>,
    pub model: Option<&'a str>,
}

fn any_glob(pats: &[String], text: &str) -> bool {
    pats.is_empty() || pats.iter().any(|p| glob(p.as_bytes(), text.as_bytes()))
}

impl Selector {
    pub fn matches(&self, i: &LimitInput<'_>) -> bool {
        any_glob(&self.methods, i.method)
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == i.route))
            && any_glob(&self.upstreams, i.upstream)
            && (self.tools.is_empty() || i.target.is_some_and(|t| any_glob(&self.tools, t)))
            && (self.models.is_empty() || i.model.is_some_and(|m| any_glob(&self.models, m)))
            && (self.tenants.is_empty()
                || i.tenant
                    .is_some_and(|t| self.tenants.iter().any(|x| x == t)))
            && (self.roles.is_empty()
                || i.roles
                    .iter()
                    .any(|r| self.roles.iter().any(|x| **x == **r)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateRule {
    pub name: String,
    pub selector: Selector,
    pub per: Vec<KeyPart>,
    /// Time to earn one request back (the GCRA emission interval).
    pub period: Duration,
    pub burst: u32,
    pub shared: bool,
}

impl RateRule {
    /// What the limiter's state depends on: a reload that keeps these keeps
    /// the state, whatever else changed.
    pub fn state_key(&self) -> (String, Duration, u32, Vec<KeyPart>, bool) {
        (
            self.name.clone(),
            self.period,
            self.burst,
            self.per.clone(),
            self.shared,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcurrencyRule {
    pub name: String,
    pub selector: Selector,
    pub per: Vec<KeyPart>,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    Local,
    Open,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStore {
    pub redis_url: String,
    pub password: Option<SecretRef>,
    pub key_prefix: String,
    pub timeout: Duration,
    pub on_unavailable: OnUnavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub rules: Vec<RateRule>,
    pub concurrency: Vec<ConcurrencyRule>,
    pub shared_store: Option<SharedStore>,
    pub sweep_interval: Duration,
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

/// Names the selectors may refer to, for validation.
pub(crate) struct Known<'a> {
    pub routes: &'a [String],
    pub tenants: &'a [String],
    pub roles: &'a [String],
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
        match KeyPart::parse(p) {
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

pub(crate) fn build_rate_limits(
    raw: &RawRateLimits,
    concurrency: &[RawConcurrencyRule],
    known: &Known<'_>,
    errs: &mut Vec<ConfigError>,
) -> RateLimits {
    let mut names: Vec<String> = Vec::new();
    let mut unique = |name: &str, path: &str, errs: &mut Vec<ConfigError>| {
        if name.is_empty() || names.iter().any(|n| n == name) {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                format!("`{name}`: limit names must be unique and not empty"),
            ));
        }
        names.push(name.to_owned());
    };
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let path = format!("rate_limits.rules[{i}]");
        unique(&r.name, &path, errs);
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
        if r.shared && raw.shared_store.is_none() {
            errs.push(ConfigError::new(
                format!("{path}.shared"),
                "needs rate_limits.shared_store",
            ));
        }
        rules.push(RateRule {
            name: r.name.clone(),
            selector: build_selector(&r.selector, known, &path, errs),
            per: build_per(&r.per, &path, errs),
            period,
            burst: r.burst.max(1),
            shared: r.shared,
        });
    }
    let mut caps = Vec::new();
    for (i, c) in concurrency.iter().enumerate() {
        let path = format!("concurrency_limits[{i}]");
        unique(&c.name, &path, errs);
        if c.max == 0 {
            errs.push(ConfigError::new(
                format!("{path}.max"),
                "must be at least 1",
            ));
        }
        caps.push(ConcurrencyRule {
            name: c.name.clone(),
            selector: build_selector(&c.selector, known, &path, errs),
            per: build_per(&c.per, &path, errs),
            max: c.max.max(1),
        });
    }
    let shared_store = raw.shared_store.as_ref().map(|s| {
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
                .map(|p| SecretRef::from_raw(p, &format!("{path}.password"), errs)),
            key_prefix: s.key_prefix.clone().unwrap_or_else(|| "sluice:rl".into()),
            timeout: Duration::from_millis(s.timeout_ms.unwrap_or(50).max(1)),
            on_unavailable,
        }
    });
    RateLimits {
        rules,
        concurrency: caps,
        shared_store,
        sweep_interval: Duration::from_secs(raw.sweep_interval_s.unwrap_or(60).max(1)),
    }
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

    #[test]
    fn selectors_need_every_given_list_to_match() {
        let roles: Vec<Box<str>> = vec!["dev".into()];
        let input = LimitInput {
            tenant: Some("acme"),
            subject: "alice",
            roles: &roles,
            route: "mcp",
            upstream: "github",
            method: "tools/call",
            target: Some("create_issue"),
            model: None,
        };
        let mut s = Selector {
            methods: vec!["tools/*".into()],
            upstreams: vec!["git*".into()],
            ..Selector::default()
        };
        assert!(s.matches(&input));
        s.roles = vec!["admin".into()];
        assert!(!s.matches(&input));
        s.roles = vec!["dev".into()];
        s.tools = vec!["create_*".into()];
        assert!(s.matches(&input));
        s.models = vec!["*".into()];
        assert!(!s.matches(&input), "a model selector needs a model");
    }
}
