//! Traffic limits, resolved: rate limits (GCRA rate + burst) and concurrency
//! caps, each scoped by a selector and keyed by caller dimensions, plus the
//! optional shared store (Redis) that makes a limit global across replicas.

use std::time::Duration;

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
