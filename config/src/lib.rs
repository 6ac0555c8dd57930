//! Sluice's config model: the YAML file's raw serde types (`raw`), the
//! immutable versioned `Snapshot` both the gateway and the control process
//! serve from (`model`), and the compilation of one into the other that
//! reports every error with its path (`build`). Data only: no I/O, no tokio,
//! no per-request decisions (those are the gateway's).

mod build;
mod canonical;
pub mod chain;
mod civil;
mod error;
pub mod fold;
pub mod locks;
pub mod model;
pub mod openapi;
pub mod raw;
pub mod uri;
pub mod wire;

pub use build::parse_rate;
pub use build::policy::compile;
pub use canonical::{canonical_hash, definition_digest};
pub use civil::{civil_from_days, days_from_civil};
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    glob, glob_path, AccessLog, ApiKey, ApprovalRule, Approvals, Audit, Budget, CircuitBreaker,
    ClientAuth, ConcurrencyRule, Condition, Credential, Egress, EgressRule, ExchangeGrant,
    HeadLimits, HostPolicy, HttpTool, Identity, JwtIssuer, JwtKeys, KeyPart, Kind, Listener,
    ListenerTls, Llm, ModelAlias, NameFilter, OnUnavailable, OtlpProtocol, Period, PinMode, Pins,
    Policy, Price, RateLimits, RateRule, Retries, Role, Route, RouteTransport, Rule, Scheme, Scope,
    Screen, SecretRef, Selector, Server, SharedStore, Snapshot, Source, Spool, Target, Test,
    TokenExchange, TokenLimit, ToolOverride, ToolState, Traces, Upstream, UpstreamTls, UsageCounts,
    UserCredentials, Version,
};
pub use raw::RawConfig;

/// The JSON Schema of the gateway's config file, derived from the types
/// the loader reads it into (so the two cannot drift apart). What the
/// schema cannot say — references between sections, value ranges — the
/// loader still checks, with the path of each error.
pub fn schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default();
    s["title"] = "Sluice gateway config".into();
    s
}

/// Parse and resolve a YAML document into a snapshot with the given generation.
pub fn load(yaml: &str, generation: u64) -> Result<Snapshot, ConfigErrors> {
    let raw = RawConfig::from_yaml(yaml)?;
    Snapshot::build(&raw, yaml.as_bytes(), generation)
}

#[cfg(test)]
mod tests;
