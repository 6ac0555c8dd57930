//! The `rate_limits` and `concurrency_limits` sections: rate and in-flight
//! caps, their selectors, and the optional shared store (Redis).

use serde::Deserialize;

use super::secret::RawSecretRef;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// Shared store for rules marked `shared: true`.
    #[serde(default)]
    pub shared_store: Option<RawSharedStore>,
    #[serde(default)]
    pub rules: Vec<RawRateRule>,
    /// Seconds between sweeps that forget idle keys. Default 60.
    pub sweep_interval_s: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSharedStore {
    /// `redis://host:port[/db]`; no credentials in the URL (use `password`).
    pub redis_url: String,
    #[serde(default)]
    pub password: Option<RawSecretRef>,
    /// Prefix of every key the gateway writes. Default `sluice:rl`.
    pub key_prefix: Option<String>,
    /// Longest wait for one check, milliseconds. Default 50.
    pub timeout_ms: Option<u64>,
    /// When the store is unreachable: `local` (default: each replica limits
    /// alone), `open` (allow) or `closed` (refuse with 503).
    pub on_unavailable: Option<String>,
}

/// Which requests a limit applies to. Every list given must match; an empty
/// list matches everything.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSelector {
    /// JSON-RPC methods (globs, e.g. `tools/*`).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Route names.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Upstream names (globs).
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Tool, prompt or resource names (globs).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Model names (globs), for model traffic.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub selector: RawSelector,
    /// One bucket per distinct combination of these: `tenant`, `subject`,
    /// `role`, `route`, `upstream`, `tool`, `model`. Empty: one bucket.
    #[serde(default)]
    pub per: Vec<String>,
    /// `<n>/<unit>` with unit `s`, `min`, `h` or `day`, e.g. `60/min`.
    pub rate: String,
    /// Requests allowed at once before the rate applies.
    pub burst: u32,
    /// Enforce across replicas through `shared_store`.
    #[serde(default)]
    pub shared: bool,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConcurrencyRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub selector: RawSelector,
    #[serde(default)]
    pub per: Vec<String>,
    /// Most calls in flight per key.
    pub max: u32,
}
