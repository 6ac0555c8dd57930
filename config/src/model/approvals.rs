//! Which tool calls wait for a human: approval rules (a tool scope, optional
//! conditions on the arguments, the control-side roles that may decide) and
//! how long a call is held while a decision is pending.

use std::time::Duration;

use super::pattern::{Kind, Scope};
use super::policy::{Condition, Truth};

/// Arguments an approval rule's conditions would read cannot be parsed one
/// way (malformed, or a key given twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

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

    /// The first rule that makes this call wait for a decision. `args` is
    /// parsed only when a matching rule has conditions. A condition that
    /// cannot read its value one way counts as holding: the call waits.
    /// Arguments that cannot be read at all (malformed, a duplicate key)
    /// are `Err`: no approver could be shown what would run.
    pub fn required(
        &self,
        upstream: &str,
        tool: &str,
        args: &mut dyn FnMut() -> Option<serde_json::Value>,
    ) -> Result<Option<&ApprovalRule>, Unreadable> {
        let mut parsed: Option<Option<serde_json::Value>> = None;
        for r in &self.rules {
            if !r.scope.matches(Kind::Tools, upstream, tool) {
                continue;
            }
            if r.when.is_empty() {
                return Ok(Some(r));
            }
            let v = parsed.get_or_insert_with(&mut *args);
            match v.as_ref().map(|v| Truth::all(&r.when, v)) {
                None => return Err(Unreadable),
                Some(Truth::False) => {}
                Some(Truth::True | Truth::Unknown) => return Ok(Some(r)),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::Unreadable;
    use serde_json::json;

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
    fn conditions_decide_whether_a_call_waits() {
        let s = snap(
            "approvals:\n  hold_ms: 500\n  rules:\n    - name: big-refunds\n      scope: \"tools:pay/refund:call\"\n      when: [{ pointer: /amount, min: 100 }]\n      approvers: [finance]\n",
        )
        .expect("valid");
        let a = &s.approvals;
        let big = json!({"amount": 500});
        let small = json!({"amount": 5});
        let needs = |args: Option<serde_json::Value>| {
            a.required("pay", "refund", &mut || args.clone())
                .map(|r| r.map(|r| r.name.as_str()))
        };
        let r = a
            .required("pay", "refund", &mut || Some(big.clone()))
            .expect("readable")
            .expect("needs approval");
        assert_eq!(r.name, "big-refunds");
        assert_eq!(r.hold.as_millis(), 500);
        assert_eq!(needs(Some(small.clone())), Ok(None));
        assert_eq!(
            a.required("pay", "other", &mut || Some(big.clone()))
                .map(|r| r.is_some()),
            Ok(false)
        );
        // A value the condition cannot read one way makes the call wait: a
        // lax upstream coerces "500" to 500.
        assert_eq!(
            needs(Some(json!({"amount": "500"}))),
            Ok(Some("big-refunds"))
        );
        assert_eq!(
            needs(Some(json!({"amount": null}))),
            Ok(Some("big-refunds"))
        );
        assert_eq!(needs(Some(json!({"Amount": 500}))), Ok(Some("big-refunds")));
        assert_eq!(needs(Some(json!({}))), Ok(None));
        // Arguments that cannot be parsed one way are refused outright.
        assert_eq!(needs(None), Err(Unreadable));
    }
}
