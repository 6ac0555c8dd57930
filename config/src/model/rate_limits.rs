//! Traffic limits, resolved: rate limits (GCRA rate + burst) and concurrency
//! caps, each scoped by a selector and keyed by caller dimensions, plus the
//! optional shared store (Redis) that makes a limit global across replicas.

use std::time::Duration;

use super::pattern::glob;
use super::secret::SecretRef;

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

#[cfg(test)]
mod tests {
    use super::*;

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
