//! Which tool calls wait for a human: approval rules (a tool scope, optional
//! conditions on the arguments, the control-side roles that may decide) and
//! how long a call is held while a decision is pending.

use std::time::Duration;

use super::pattern::Scope;
use super::policy::Condition;

#[derive(Debug, Clone, Default)]
pub struct Approvals {
    pub rules: Vec<ApprovalRule>,
}

#[derive(Debug, Clone)]
pub struct ApprovalRule {
    pub name: String,
    pub scope: Scope,
    pub when: Vec<Condition>,
    pub approvers: Vec<String>,
    pub allow_self_approval: bool,
    pub hold: Duration,
    pub expires: Duration,
}

impl Approvals {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
