//! Sluice's config model: the YAML file's raw serde types, validation that
//! reports every error with its path, and the immutable versioned `Snapshot`
//! both the gateway and the control process build from it. No I/O, no tokio.

mod approvals;
mod civil;
mod error;
pub mod fold;
mod limits;
mod llm;
mod policy;
pub mod raw;
mod security;
mod snapshot;
pub mod uri;
pub mod wire;

pub use approvals::{canonical_hash, ApprovalRule, Approvals, Unreadable};
pub use civil::{civil_from_days, days_from_civil};
pub use error::{ConfigError, ConfigErrors};
pub use limits::*;
pub use llm::*;
pub use policy::*;
pub use raw::RawConfig;
pub use security::{
    ApiKey, Audit, Credential, Egress, EgressRule, Identity, JwtIssuer, JwtKeys, SecretRef,
    UserCredentials,
};
pub use snapshot::{
    CircuitBreaker, HeadLimits, HostPolicy, Listener, ListenerTls, Retries, Route, RouteTransport,
    Scheme, Snapshot, Upstream, UpstreamTls, Version,
};

/// Parse and resolve a YAML document into a snapshot with the given generation.
pub fn load(yaml: &str, generation: u64) -> Result<Snapshot, ConfigErrors> {
    let raw = RawConfig::from_yaml(yaml)?;
    Snapshot::build(&raw, yaml.as_bytes(), generation)
}

#[cfg(test)]
mod tests;
