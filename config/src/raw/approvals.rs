//! The `approvals` section: tool calls that wait for a human decision.

use serde::Deserialize;

use super::roles::RawCondition;

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// How long a call waits for a decision before the client is told it is
    /// pending. Default 2000 ms.
    pub hold_ms: Option<u64>,
    /// How long an approval request stays open before it counts as denied.
    /// Default one hour.
    pub expires_s: Option<u64>,
    #[serde(default)]
    pub rules: Vec<RawApprovalRule>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApprovalRule {
    pub name: String,
    /// `tools:<upstream>/<tool>:call`, globs as in role rules.
    pub scope: String,
    /// Approval is needed only when every condition holds.
    #[serde(default)]
    pub when: Vec<RawCondition>,
    /// Control-side roles whose members may decide.
    pub approvers: Vec<String>,
    /// May the subject who made the call approve it? Default false.
    #[serde(default)]
    pub allow_self_approval: bool,
    pub hold_ms: Option<u64>,
    pub expires_s: Option<u64>,
}
