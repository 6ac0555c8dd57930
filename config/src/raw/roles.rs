//! The `roles` section: RBAC roles, their allow and deny scopes, and the
//! conditions on a call's arguments (also used by approval rules).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: String,
    #[serde(default)]
    pub allow: Vec<RawRule>,
    #[serde(default)]
    pub deny: Vec<RawRule>,
}

/// A scope, alone or with conditions on the call's arguments.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawRule {
    Scope(String),
    Conditional(RawConditionalRule),
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConditionalRule {
    pub scope: String,
    #[serde(default)]
    pub when: Vec<RawCondition>,
}

/// A test on one argument, found by JSON pointer (RFC 6901).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub pointer: String,
    #[schemars(with = "Option<serde_json::Value>")]
    pub equals: Option<serde_yaml::Value>,
    /// Glob over a string argument (`*` within a `/`-separated segment).
    pub glob: Option<String>,
    pub max: Option<f64>,
    pub min: Option<f64>,
}
