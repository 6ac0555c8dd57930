//! Which tool calls wait for a human: approval rules (a tool scope, optional
//! conditions on the arguments, the control-side roles that may decide) and
//! how long a call is held while a decision is pending.

use std::time::Duration;

use crate::policy::{compile_rule, Condition, Kind, Scope, Truth};
use crate::raw::{RawApprovals, RawRule};
use crate::ConfigError;

/// Longest a call may be held open waiting for a decision.
const MAX_HOLD_MS: u64 = 120_000;

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

pub(crate) fn build_approvals(
    raw: &RawApprovals,
    upstreams: &[&str],
    errs: &mut Vec<ConfigError>,
) -> Approvals {
    let hold = raw.hold_ms.unwrap_or(2_000);
    let expires = raw.expires_s.unwrap_or(3_600);
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
        if r.approvers.is_empty() {
            errs.push(ConfigError::new(
                format!("{path}.approvers"),
                "name at least one role that may decide",
            ));
        }
        let hold_ms = r.hold_ms.unwrap_or(hold);
        if hold_ms > MAX_HOLD_MS {
            errs.push(ConfigError::new(
                format!("{path}.hold_ms"),
                format!("at most {MAX_HOLD_MS} ms: a held call keeps a client connection open"),
            ));
        }
        let expires_s = r.expires_s.unwrap_or(expires);
        if expires_s == 0 {
            errs.push(ConfigError::new(
                format!("{path}.expires_s"),
                "must be at least 1",
            ));
        }
        let raw_rule = RawRule::Conditional(crate::raw::RawConditionalRule {
            scope: r.scope.clone(),
            when: r.when.clone(),
        });
        let Some(rule) = compile_rule(&raw_rule, i, &path, upstreams, errs) else {
            continue;
        };
        if rule.scope.kind != Kind::Tools {
            errs.push(ConfigError::new(
                format!("{path}.scope"),
                "approvals apply to tools: `tools:<upstream>/<tool>:call`",
            ));
            continue;
        }
        rules.push(ApprovalRule {
            name: r.name.clone(),
            scope: rule.scope,
            when: rule.when,
            approvers: r.approvers.clone(),
            allow_self_approval: r.allow_self_approval,
            hold: Duration::from_millis(hold_ms),
            expires: Duration::from_secs(expires_s.max(1)),
        });
    }
    Approvals { rules }
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

/// Hex SHA-256 of `v` written canonically: object keys sorted at every
/// level, no whitespace. The gateway and control hash arguments (and tool
/// definitions) this way, so a key order or spacing change is the same call
/// and any value change is a different one.
pub fn canonical_hash(v: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    let d = Sha256::digest(&out);
    let mut hex = String::with_capacity(64);
    for b in d {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod hash_tests {
    #[test]
    fn key_order_and_spacing_do_not_change_the_hash() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).expect("json");
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a": { "x": "s", "y": [1, 2] }, "b": 1 }"#).expect("json");
        let c: serde_json::Value =
            serde_json::from_str(r#"{"b":2,"a":{"y":[1,2],"x":"s"}}"#).expect("json");
        assert_eq!(super::canonical_hash(&a), super::canonical_hash(&b));
        assert_ne!(super::canonical_hash(&a), super::canonical_hash(&c));
        assert_eq!(super::canonical_hash(&a).len(), 64);
    }
}
