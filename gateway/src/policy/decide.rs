//! Deciding one call against the snapshot's compiled policy: the RBAC
//! verdict (`Decide` on `Policy`) and whether the call waits for a human
//! (`ApprovalRequired` on `Approvals`). Pure functions of the compiled data
//! and the call.

use sluice_config::{ApprovalRule, Approvals, Kind, Policy};

use super::conditions::Truth;

/// The outcome of a decision on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// No grant (or an unconditional deny): the caller may not even know it exists.
    Hidden,
    /// Visible, but refused for this call: a deny rule's conditions held, or
    /// no allow rule's conditions did.
    Denied(&'static str),
}

/// RBAC decisions on a compiled `Policy`.
pub trait Decide {
    /// Decide one call. `args` is parsed only if a matching rule has
    /// conditions; `parse_args` is called at most once and returns `None`
    /// for arguments it refuses to read, which fails closed.
    fn decide<'r>(
        &self,
        roles: impl Iterator<Item = &'r str> + Clone,
        kind: Kind,
        upstream: &str,
        name: &str,
        parse_args: &mut dyn FnMut() -> Option<serde_json::Value>,
    ) -> Verdict;

    /// May these roles see this item in a list result? (Some call to it
    /// could be allowed.)
    fn visible<'r>(
        &self,
        roles: impl Iterator<Item = &'r str> + Clone,
        kind: Kind,
        upstream: &str,
        name: &str,
    ) -> bool;
}

impl Decide for Policy {
    fn decide<'r>(
        &self,
        roles: impl Iterator<Item = &'r str> + Clone,
        kind: Kind,
        upstream: &str,
        name: &str,
        parse_args: &mut dyn FnMut() -> Option<serde_json::Value>,
    ) -> Verdict {
        // Arguments are parsed once, and only if a matching rule needs them.
        let args: std::cell::OnceCell<Option<serde_json::Value>> = std::cell::OnceCell::new();
        let mut get_args = || args.get_or_init(&mut *parse_args).as_ref();
        let mut denied = None;
        for role in roles.clone().filter_map(|r| self.role(r)) {
            for rule in role.deny_candidates(kind, upstream, name) {
                if !rule.scope.matches(kind, upstream, name) {
                    continue;
                }
                if rule.when.is_empty() {
                    return Verdict::Hidden;
                }
                // Arguments that cannot be read (malformed, duplicate keys)
                // fail closed: the deny applies.
                // A value a condition cannot read one way counts as holding.
                match get_args().map(|a| Truth::all(&rule.when, a)) {
                    Some(Truth::False) => {}
                    Some(Truth::True) => denied = Some("a deny rule's conditions hold"),
                    Some(Truth::Unknown) => {
                        denied = Some("an argument a deny rule tests cannot be read one way")
                    }
                    None => denied = Some("arguments unreadable (duplicate or malformed)"),
                }
            }
        }
        if let Some(reason) = denied {
            return Verdict::Denied(reason);
        }
        let mut visible = false;
        for role in roles.filter_map(|r| self.role(r)) {
            for rule in role.allow_candidates(kind, upstream, name) {
                if !rule.scope.matches(kind, upstream, name) {
                    continue;
                }
                visible = true;
                if rule.when.is_empty() {
                    return Verdict::Allow;
                }
                if get_args().is_some_and(|a| Truth::all(&rule.when, a) == Truth::True) {
                    return Verdict::Allow;
                }
            }
        }
        if visible {
            Verdict::Denied("no allow rule's conditions hold")
        } else {
            Verdict::Hidden
        }
    }

    fn visible<'r>(
        &self,
        roles: impl Iterator<Item = &'r str> + Clone,
        kind: Kind,
        upstream: &str,
        name: &str,
    ) -> bool {
        let ids = || roles.clone().filter_map(|r| self.role(r));
        let hidden = ids().any(|role| {
            role.deny_candidates(kind, upstream, name)
                .any(|r| r.when.is_empty() && r.scope.matches(kind, upstream, name))
        });
        !hidden
            && ids().any(|role| {
                role.allow_candidates(kind, upstream, name)
                    .any(|r| r.scope.matches(kind, upstream, name))
            })
    }
}

/// Arguments an approval rule's conditions would read cannot be parsed one
/// way (malformed, or a key given twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

/// Approval decisions on the compiled `Approvals`.
pub trait ApprovalRequired {
    /// The first rule that makes this call wait for a decision. `args` is
    /// parsed only when a matching rule has conditions. A condition that
    /// cannot read its value one way counts as holding: the call waits.
    /// Arguments that cannot be read at all (malformed, a duplicate key)
    /// are `Err`: no approver could be shown what would run.
    fn required(
        &self,
        upstream: &str,
        tool: &str,
        args: &mut dyn FnMut() -> Option<serde_json::Value>,
    ) -> Result<Option<&ApprovalRule>, Unreadable>;
}

impl ApprovalRequired for Approvals {
    fn required(
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
    use super::*;
    use serde_json::json;
    use sluice_config::{compile, ConfigError, RawConfig};

    fn policy(yaml: &str) -> (Policy, Vec<ConfigError>, Vec<ConfigError>) {
        // The roles as the `roles:` section of a config file.
        let raw = RawConfig::from_yaml(&format!("roles:{yaml}")).expect("roles yaml");
        let (mut errs, mut warns) = (Vec::new(), Vec::new());
        let p = compile(&raw.roles, &["github", "fs", "demo"], &mut errs, &mut warns);
        (p, errs, warns)
    }

    const ROLES: &str = r#"
- name: reader
  allow: ["tools:github/get_*:call", "resources:fs/file:///pub/**:read", "prompts:demo/*:get"]
- name: writer
  allow:
    - "tools:github/*:call"
    - scope: "tools:demo/get-sum:call"
      when: [{ pointer: /a, max: 100 }, { pointer: /b, min: 0 }]
    - scope: "tools:demo/echo:call"
      when: [{ pointer: /message, glob: "hello*" }]
  deny:
    - "tools:github/delete_*:call"
    - scope: "tools:github/create_issue:call"
      when: [{ pointer: /repo, equals: "secret" }]
"#;

    fn decide(p: &Policy, roles: &[&str], kind: Kind, up: &str, name: &str, args: &str) -> Verdict {
        let mut parse = || serde_json::from_str(args).ok();
        p.decide(roles.iter().copied(), kind, up, name, &mut parse)
    }

    #[test]
    fn role_by_action_matrix() {
        let (p, errs, _) = policy(ROLES);
        assert!(errs.is_empty(), "{errs:?}");
        use Kind::*;
        type Case<'a> = (&'a [&'a str], Kind, &'a str, &'a str, &'a str, Verdict);
        let cases: &[Case] = &[
            (
                &["reader"],
                Tools,
                "github",
                "get_issue",
                "{}",
                Verdict::Allow,
            ),
            (
                &["reader"],
                Tools,
                "github",
                "create_issue",
                "{}",
                Verdict::Hidden,
            ),
            (
                &["writer"],
                Tools,
                "github",
                "create_issue",
                r#"{"repo":"open"}"#,
                Verdict::Allow,
            ),
            (
                &["writer"],
                Tools,
                "github",
                "create_issue",
                r#"{"repo":"secret"}"#,
                Verdict::Denied("a deny rule's conditions hold"),
            ),
            (
                &["writer"],
                Tools,
                "github",
                "delete_repo",
                "{}",
                Verdict::Hidden,
            ),
            (
                &["writer", "reader"],
                Tools,
                "github",
                "delete_repo",
                "{}",
                Verdict::Hidden,
            ),
            (
                &["writer"],
                Tools,
                "demo",
                "get-sum",
                r#"{"a":5,"b":1}"#,
                Verdict::Allow,
            ),
            (
                &["writer"],
                Tools,
                "demo",
                "get-sum",
                r#"{"a":500,"b":1}"#,
                Verdict::Denied("no allow rule's conditions hold"),
            ),
            (
                &["writer"],
                Tools,
                "demo",
                "get-sum",
                r#"{"b":1}"#,
                Verdict::Denied("no allow rule's conditions hold"),
            ),
            (
                &["writer"],
                Tools,
                "demo",
                "echo",
                r#"{"message":"hello there"}"#,
                Verdict::Allow,
            ),
            (
                &["writer"],
                Tools,
                "demo",
                "echo",
                r#"{"message":"bye"}"#,
                Verdict::Denied("no allow rule's conditions hold"),
            ),
            (
                &["reader"],
                Resources,
                "fs",
                "file:///pub/a/b.txt",
                "{}",
                Verdict::Allow,
            ),
            (
                &["reader"],
                Resources,
                "fs",
                "file:///etc/passwd",
                "{}",
                Verdict::Hidden,
            ),
            (&["reader"], Prompts, "demo", "greet", "{}", Verdict::Allow),
            (
                &["reader"],
                Prompts,
                "github",
                "greet",
                "{}",
                Verdict::Hidden,
            ),
            (&[], Tools, "github", "get_issue", "{}", Verdict::Hidden),
            (
                &["nobody"],
                Tools,
                "github",
                "get_issue",
                "{}",
                Verdict::Hidden,
            ),
        ];
        for (roles, kind, up, name, args, want) in cases {
            assert_eq!(
                &decide(&p, roles, *kind, up, name, args),
                want,
                "{roles:?} {kind:?} {up}/{name} {args}"
            );
        }
        assert!(p.visible(["writer"].into_iter(), Tools, "demo", "get-sum"));
        assert!(!p.visible(["writer"].into_iter(), Tools, "github", "delete_x"));
        assert!(!p.visible(["reader"].into_iter(), Tools, "demo", "get-sum"));
    }

    #[test]
    fn a_value_a_condition_cannot_read_counts_against_the_caller() {
        let (p, errs, _) = policy(
            r#"
- name: r
  allow:
    - "tools:demo/*:call"
    - scope: "tools:github/*:call"
      when: [{ pointer: /n, max: 10 }]
  deny:
    - scope: "tools:demo/pay:call"
      when: [{ pointer: /a, min: 100 }]
    - scope: "tools:demo/open:call"
      when: [{ pointer: /repo, equals: "secret" }]
    - scope: "tools:demo/count:call"
      when: [{ pointer: /n, equals: 5 }]
"#,
        );
        assert!(errs.is_empty(), "{errs:?}");
        let v = |name: &str, args: &str| decide(&p, &["r"], Kind::Tools, "demo", name, args);
        let unread = Verdict::Denied("an argument a deny rule tests cannot be read one way");
        // A lax upstream coerces "500" to 500.
        assert_eq!(v("pay", r#"{"a":"500"}"#), unread);
        assert_eq!(v("pay", r#"{"a":null}"#), unread);
        assert_eq!(v("pay", r#"{"a":[500]}"#), unread);
        assert_eq!(
            v("pay", r#"{"a":500}"#),
            Verdict::Denied("a deny rule's conditions hold")
        );
        assert_eq!(v("pay", r#"{"a":5}"#), Verdict::Allow);
        assert_eq!(v("pay", r#"{}"#), Verdict::Allow);
        // Go's decoder reads "A" and "Repo" as the fields a and repo.
        assert_eq!(v("pay", r#"{"A":500}"#), unread);
        assert_eq!(v("open", r#"{"repo":"open","Repo":"secret"}"#), unread);
        assert_eq!(v("open", r#"{"repo":"open"}"#), Verdict::Allow);
        // 5.0 and 5.0000000000000001 are 5 to some readers and not to others.
        assert_eq!(v("count", r#"{"n":5.0}"#), unread);
        assert_eq!(v("count", r#"{"n":"5"}"#), unread);
        assert_eq!(v("count", r#"{"n":6}"#), Verdict::Allow);
        // An allow whose condition cannot read its value does not match.
        let g = |args: &str| decide(&p, &["r"], Kind::Tools, "github", "x", args);
        let no = Verdict::Denied("no allow rule's conditions hold");
        assert_eq!(g(r#"{"n":9}"#), Verdict::Allow);
        assert_eq!(g(r#"{"n":"9"}"#), no);
        assert_eq!(g(r#"{"n":10.0000000000000001}"#), no);
        assert_eq!(g(r#"{"n":9.5}"#), Verdict::Allow);
        assert_eq!(g(r#"{"N":9}"#), no);
    }

    #[test]
    fn conditions_decide_whether_a_call_waits() {
        let yaml = r#"
listeners: [{ name: main, address: "127.0.0.1:0" }]
upstreams: [{ name: pay, url: "http://127.0.0.1:1" }]
routes: [{ name: pay, path: /mcp, upstream: pay }]
identity:
  api_keys:
    - { id: k, sha256: "0000000000000000000000000000000000000000000000000000000000000000", subject: s }
approvals:
  hold_ms: 500
  rules:
    - name: big-refunds
      scope: "tools:pay/refund:call"
      when: [{ pointer: /amount, min: 100 }]
      approvers: [finance]
"#;
        let s = sluice_config::load(yaml, 1).expect("valid");
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
