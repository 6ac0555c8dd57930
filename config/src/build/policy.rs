//! Compiles the `roles` section into the policy: each rule's scope parsed
//! and checked against the upstreams, its conditions compiled, rules a deny
//! of the same role covers reported, and every role indexed.

use crate::error::ConfigError;
use crate::model::{Condition, Policy, Role, Rule, Scope, Test};
use crate::raw::{RawCondition, RawRole, RawRule};

/// Compile the roles; `upstreams` are the configured upstream names.
pub fn compile(
    raw: &[RawRole],
    upstreams: &[&str],
    errs: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Policy {
    let mut roles: Vec<Role> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("roles[{i}]");
        if roles.iter().any(|role| role.name == r.name) {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                format!("duplicate role `{}`", r.name),
            ));
            continue;
        }
        let allow = compile_rules(&r.allow, &format!("{path}.allow"), upstreams, errs);
        let deny = compile_rules(&r.deny, &format!("{path}.deny"), upstreams, errs);
        warn_shadowed(&allow, &deny, &path, warnings);
        roles.push(Role::new(r.name.clone(), allow, deny));
    }
    Policy::new(roles)
}

fn compile_rules(
    raw: &[RawRule],
    path: &str,
    upstreams: &[&str],
    errs: &mut Vec<ConfigError>,
) -> Vec<Rule> {
    raw.iter()
        .enumerate()
        .filter_map(|(j, rule)| compile_rule(rule, j, &format!("{path}[{j}]"), upstreams, errs))
        .collect()
}

/// An allow rule an unconditional deny of the same role covers can never match.
fn warn_shadowed(allow: &[Rule], deny: &[Rule], path: &str, warnings: &mut Vec<ConfigError>) {
    for a in allow {
        let shadowed = deny.iter().any(|d| {
            d.when.is_empty()
                && a.scope.kind == d.scope.kind
                && match (a.scope.upstream_literal(), a.scope.name_literal()) {
                    (Some(u), Some(n)) => d.scope.matches(a.scope.kind, u, &n),
                    _ => d.scope.text == a.scope.text,
                }
        });
        if shadowed {
            warnings.push(ConfigError::new(
                format!("{path}.allow[{}]", a.at),
                format!(
                    "`{}` can never match: a deny rule of the same role covers it",
                    a.scope.text
                ),
            ));
        }
    }
}

pub(crate) fn compile_rule(
    rule: &RawRule,
    at: usize,
    path: &str,
    upstreams: &[&str],
    errs: &mut Vec<ConfigError>,
) -> Option<Rule> {
    let (scope_text, when): (&str, &[RawCondition]) = match rule {
        RawRule::Scope(s) => (s, &[]),
        RawRule::Conditional(c) => (&c.scope, &c.when),
    };
    let scope = match Scope::parse(scope_text) {
        Ok(s) => s,
        Err(e) => {
            errs.push(ConfigError::new(path, format!("`{scope_text}`: {e}")));
            return None;
        }
    };
    if let Some(u) = scope.upstream_literal() {
        if !upstreams.contains(&u) {
            errs.push(ConfigError::new(
                path,
                format!("`{scope_text}` names unknown upstream `{u}`"),
            ));
            return None;
        }
    }
    let mut conds = Vec::new();
    for (k, c) in when.iter().enumerate() {
        conds.extend(compile_condition(c, &format!("{path}.when[{k}]"), errs));
    }
    Some(Rule {
        scope,
        when: conds,
        at,
    })
}

/// A condition's tests, one `Condition` each (all must hold).
fn compile_condition(c: &RawCondition, p: &str, errs: &mut Vec<ConfigError>) -> Vec<Condition> {
    if !(c.pointer.is_empty() || c.pointer.starts_with('/')) {
        errs.push(ConfigError::new(
            p,
            "pointer must be empty or start with `/`",
        ));
        return Vec::new();
    }
    let tests: Vec<Test> = [
        c.equals
            .as_ref()
            .map(|v| serde_json::to_value(v).map(Test::Equals)),
        c.glob.clone().map(|g| Ok(Test::Glob(g))),
        c.max.map(|m| Ok(Test::Max(m))),
        c.min.map(|m| Ok(Test::Min(m))),
    ]
    .into_iter()
    .flatten()
    .filter_map(Result::ok)
    .collect();
    if tests.is_empty() {
        errs.push(ConfigError::new(
            p,
            "a condition needs equals, glob, max or min",
        ));
    }
    tests
        .into_iter()
        .map(|test| Condition {
            pointer: c.pointer.clone(),
            test,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> (Policy, Vec<ConfigError>, Vec<ConfigError>) {
        let roles: Vec<RawRole> = serde_yaml::from_str(yaml).expect("roles yaml");
        let (mut errs, mut warns) = (Vec::new(), Vec::new());
        let p = compile(&roles, &["github", "fs", "demo"], &mut errs, &mut warns);
        (p, errs, warns)
    }

    #[test]
    fn unreachable_rules_are_reported() {
        let (_, errs, warns) = policy(
            r#"
- name: r
  allow: ["tools:gitlab/x:call", "tools:github/admin_x:call", "tools:github/:call", "nonsense"]
  deny: ["tools:github/admin_*:call"]
"#,
        );
        let text = format!("{errs:?}");
        assert!(text.contains("unknown upstream `gitlab`"), "{text}");
        assert!(text.contains("nonsense"), "{text}");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(warns.len(), 1, "{warns:?}");
        assert!(warns[0].path.contains("allow[1]"));
    }
}
