//! The config file's format: plain serde types that mirror the YAML one to
//! one, a file per top-level section. Nothing here is trusted; `build`
//! validates it and compiles it into the `model`.

mod approvals;
mod audit;
mod identity;
mod limits;
mod listeners;
mod llm;
mod rate_limits;
mod roles;
mod routes;
mod secret;
mod servers;
mod traces;
mod upstreams;

use serde::Deserialize;

pub use approvals::{RawApprovalRule, RawApprovals};
pub use audit::{RawAccessLog, RawAudit};
pub use identity::{RawApiKey, RawIdentity, RawJwtIssuer};
pub use limits::{RawLimits, RawShutdown};
pub use listeners::{RawAdmin, RawListener, RawListenerTls};
pub use llm::{RawBudget, RawLlm, RawModel, RawPrice, RawTarget, RawTokenLimit};
pub use rate_limits::{
    RawConcurrencyRule, RawRateLimits, RawRateRule, RawSelector, RawSharedStore,
};
pub use roles::{RawCondition, RawConditionalRule, RawRole, RawRule};
pub use routes::{RawHostPolicy, RawRoute};
pub use secret::RawSecretRef;
pub use servers::{
    RawHttpTool, RawNameFilter, RawPin, RawPinMode, RawScreen, RawServer, RawSource,
    RawToolOverride, RawToolState,
};
pub use traces::RawTraces;
pub use upstreams::{
    RawCircuitBreaker, RawCredential, RawInjection, RawRetries, RawTenantCredential, RawTimeouts,
    RawTokenExchange, RawUpstream, RawUpstreamTls, RawUserCredentials,
};

use crate::error::{ConfigError, ConfigErrors};

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub identity: RawIdentity,
    /// The tenants this gateway serves; every tenant named elsewhere must be here.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    #[serde(default)]
    pub audit: RawAudit,
    /// The access log: off when absent.
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    /// OpenTelemetry traces over OTLP: off when absent.
    #[serde(default)]
    pub traces: Option<RawTraces>,
    /// Upstream addresses allowed after resolution: names, IPs, CIDRs.
    /// Empty means no egress check.
    #[serde(default)]
    pub egress_allow: Vec<String>,
    #[serde(default)]
    pub rate_limits: RawRateLimits,
    /// Caps on calls in flight, per key.
    #[serde(default)]
    pub concurrency_limits: Vec<RawConcurrencyRule>,
    /// Model traffic on `transport: llm` routes.
    #[serde(default)]
    pub llm: RawLlm,
    /// Tool calls that wait for a human decision at the control process.
    #[serde(default)]
    pub approvals: RawApprovals,
    /// Virtual MCP servers federating several upstreams.
    #[serde(default)]
    pub servers: Vec<RawServer>,
    /// Tool definitions trusted on sources with `pin` (control writes
    /// these as operators approve).
    #[serde(default)]
    pub pins: Vec<RawPin>,
    /// Keys that seal virtual servers' session ids: the first seals, every
    /// one opens. Rotate by putting a new key first and dropping the old
    /// one once its sessions may have ended. None: a key per process.
    #[serde(default)]
    pub session_keys: Vec<RawSecretRef>,
}

impl RawConfig {
    /// Parse YAML; a syntax or shape error is reported with its location.
    pub fn from_yaml(yaml: &str) -> Result<Self, ConfigErrors> {
        serde_yaml::from_str(yaml).map_err(|e| {
            let path = e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "<document>".to_owned());
            // serde_yaml's message names the same location: said once.
            let message = e.to_string().replacen(&format!(" at {path}"), "", 1);
            ConfigError::new(path, message).into()
        })
    }
}
