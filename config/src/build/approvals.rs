//! Builds the `approvals` section: each rule's tool scope and conditions
//! compiled as role rules are, its approvers, hold and expiry checked.

use std::time::Duration;

use super::policy::compile_rule;
use crate::error::ConfigError;
use crate::model::{ApprovalRule, Approvals, Kind};
use crate::raw::{RawApprovalRule, RawApprovals, RawConditionalRule, RawRule};

/// Longest a call may be held open waiting for a decision.
const MAX_HOLD_MS: u64 = 120_000;

pub(crate) fn build_approvals(
    raw: &RawApprovals,
    upstreams: &[&str],
    identity_enabled: bool,
    errs: &mut Vec<ConfigError>,
) -> Approvals {
    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let path = format!("approvals.rules[{i}]");
        if r.name.is_empty() || names.contains(&r.name.as_str()) {
            errs.push(ConfigError::new(
                &path,
                format!("rule name `{}` is empty or used twice", r.name),
            ));
        }
        names.push(&r.name);
        rules.extend(build_rule(r, raw, i, upstreams, &path, errs));
    }
    if !rules.is_empty() && !identity_enabled {
        // An approval binds to who asked; without identity every caller
        // would share every approval.
        errs.push(ConfigError::new(
            "approvals",
            "approval rules need identity (api_keys or jwt): an approval binds to the caller",
        ));
    }
    Approvals { rules }
}

fn build_rule(
    r: &RawApprovalRule,
    raw: &RawApprovals,
    i: usize,
    upstreams: &[&str],
    path: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<ApprovalRule> {
    if r.approvers.is_empty() {
        errs.push(ConfigError::new(
            format!("{path}.approvers"),
            "name at least one role that may decide",
        ));
    }
    let hold_ms = r.hold_ms.or(raw.hold_ms).unwrap_or(2_000);
    if hold_ms > MAX_HOLD_MS {
        errs.push(ConfigError::new(
            format!("{path}.hold_ms"),
            format!("at most {MAX_HOLD_MS} ms: a held call keeps a client connection open"),
        ));
    }
    let expires_s = r.expires_s.or(raw.expires_s).unwrap_or(3_600);
    if expires_s == 0 {
        errs.push(ConfigError::new(
            format!("{path}.expires_s"),
            "must be at least 1",
        ));
    }
    let raw_rule = RawRule::Conditional(RawConditionalRule {
        scope: r.scope.clone(),
        when: r.when.clone(),
    });
    let rule = compile_rule(&raw_rule, i, path, upstreams, errs)?;
    if rule.scope.kind != Kind::Tools {
        errs.push(ConfigError::new(
            format!("{path}.scope"),
            "approvals apply to tools: `tools:<upstream>/<tool>:call`",
        ));
        return None;
    }
    Some(ApprovalRule {
        name: r.name.clone(),
        scope: rule.scope,
        when: rule.when,
        approvers: r.approvers.clone(),
        allow_self_approval: r.allow_self_approval,
        hold: Duration::from_millis(hold_ms),
        expires: Duration::from_secs(expires_s.max(1)),
    })
}

#[cfg(test)]
mod tests {
    fn snap(extra: &str) -> Result<crate::Snapshot, crate::ConfigErrors> {
        crate::load(
            &format!(
                "listeners: [{{ name: main, address: \"127.0.0.1:0\" }}]\n\
                 upstreams: [{{ name: pay, url: \"http://127.0.0.1:1\" }}]\n\
                 routes: [{{ name: pay, path: /mcp, upstream: pay }}]\n\
                 identity: {{ audience: a, api_keys: [{{ id: k, sha256: \"{key}\", subject: s, roles: [r] }}] }}\n\
                 roles: [{{ name: r, allow: [\"tools:pay/*:call\"] }}]\n{extra}",
                key = "0".repeat(64)
            ),
            1,
        )
    }

    #[test]
    fn approvals_need_identity() {
        let e = crate::load(
            "listeners: [{ name: main, address: \"127.0.0.1:0\" }]\n\
             upstreams: [{ name: pay, url: \"http://127.0.0.1:1\" }]\n\
             routes: [{ name: pay, path: /mcp, upstream: pay }]\n\
             approvals: { rules: [{ name: a, scope: \"tools:pay/x:call\", approvers: [f] }] }\n",
            1,
        )
        .expect_err("refused");
        assert!(
            e.to_string().contains("approval rules need identity"),
            "{e}"
        );
    }

    #[test]
    fn bad_rules_are_reported_with_their_path() {
        let e = snap(
            "approvals:\n  rules:\n    - { name: a, scope: \"tools:nope/x:call\", approvers: [] }\n    - { name: b, scope: \"prompts:pay/x:get\", approvers: [r], hold_ms: 999999 }\n",
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("approvals.rules[0].approvers"), "{text}");
        assert!(text.contains("unknown upstream `nope`"), "{text}");
        assert!(text.contains("approvals.rules[1].hold_ms"), "{text}");
        assert!(text.contains("approvals.rules[1].scope"), "{text}");
    }
}
