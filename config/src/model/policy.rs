//! RBAC compiled: rules (a scope and conditions on the call's arguments)
//! per role, indexed by kind and upstream so a decision looks at few rules,
//! and the pure decision functions the gateway calls per message. Deny wins
//! over allow; no allow means the action is hidden.

use std::collections::HashMap;

use super::pattern::{glob_path, Kind, Scope};

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(serde_json::Value),
    Glob(String),
    Max(f64),
    Min(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub pointer: String,
    pub test: Test,
}

/// What a condition says of one call's arguments. `Unknown` is a value the
/// condition cannot read one way — a string where a number is tested, a
/// float sitting on a bound, a key an upstream could match in another case —
/// and an upstream could read it either way: it counts against the caller
/// (a deny holds, an approval is needed, an allow does not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    /// Every condition of a rule: false if one is false, else unknown if
    /// one is unknown.
    pub fn all(conds: &[Condition], args: &serde_json::Value) -> Truth {
        let mut out = Truth::True;
        for c in conds {
            match c.test(args) {
                Truth::False => return Truth::False,
                Truth::Unknown => out = Truth::Unknown,
                Truth::True => {}
            }
        }
        out
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

impl Condition {
    /// Does the argument at `pointer` pass? A missing argument fails.
    pub fn holds(&self, args: &serde_json::Value) -> bool {
        self.test(args) == Truth::True
    }

    /// The condition on these arguments, in three values.
    pub fn test(&self, args: &serde_json::Value) -> Truth {
        let v = match lookup(args, &self.pointer) {
            Lookup::Found(v) => v,
            Lookup::Missing => return Truth::False,
            Lookup::Ambiguous => return Truth::Unknown,
        };
        match &self.test {
            Test::Equals(want) => equals(v, want),
            Test::Glob(g) => v
                .as_str()
                .map_or(Truth::Unknown, |s| glob_path(g, s).into()),
            Test::Max(m) => compare(v, *m, |x, m| x <= m),
            Test::Min(m) => compare(v, *m, |x, m| x >= m),
        }
    }
}

/// A number against a bound. A float equal to the bound may be a longer
/// literal that a double rounded onto it (`10.0000000000000001`), which an
/// exact reader puts on the other side: unknown. Any other float is on the
/// same side of the bound whatever precision reads it.
fn compare(v: &serde_json::Value, bound: f64, ok: fn(f64, f64) -> bool) -> Truth {
    let Some(n) = v.as_number() else {
        return Truth::Unknown;
    };
    let Some(x) = n.as_f64() else {
        return Truth::Unknown;
    };
    if n.is_f64() && x == bound {
        return Truth::Unknown;
    }
    ok(x, bound).into()
}

/// JSON equality as an upstream in any language reads it: another type is
/// unknown (a lax decoder coerces `"5"` to 5), numbers compare by value,
/// a float that equals an integer may have been rounded onto it.
fn equals(v: &serde_json::Value, want: &serde_json::Value) -> Truth {
    use serde_json::Value::*;
    match (v, want) {
        (Number(a), Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if x == y => {
                if a == b && !a.is_f64() {
                    Truth::True
                } else {
                    Truth::Unknown
                }
            }
            (Some(_), Some(_)) => Truth::False,
            _ => Truth::Unknown,
        },
        (String(a), String(b)) => (a == b).into(),
        (Bool(a), Bool(b)) => (a == b).into(),
        (Null, Null) => Truth::True,
        (Array(_), Array(_)) | (Object(_), Object(_)) => (v == want).into(),
        _ => Truth::Unknown,
    }
}

enum Lookup<'a> {
    Found(&'a serde_json::Value),
    Missing,
    /// An object on the way holds a key that equals the wanted one under
    /// case folding (Go's decoder matches `"Repo"` to a `repo` field).
    Ambiguous,
}

/// `serde_json::Value::pointer`, refusing keys an upstream could match in
/// another case.
fn lookup<'a>(mut v: &'a serde_json::Value, pointer: &str) -> Lookup<'a> {
    if pointer.is_empty() {
        return Lookup::Found(v);
    }
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        v = match v {
            serde_json::Value::Object(map) => {
                if map
                    .keys()
                    .any(|k| *k != token && crate::fold::fold_eq(k, &token))
                {
                    return Lookup::Ambiguous;
                }
                match map.get(&token) {
                    Some(next) => next,
                    None => return Lookup::Missing,
                }
            }
            serde_json::Value::Array(items) => {
                let at = (!token.starts_with('+') && (token == "0" || !token.starts_with('0')))
                    .then(|| token.parse::<usize>().ok())
                    .flatten();
                match at.and_then(|i| items.get(i)) {
                    Some(next) => next,
                    None => return Lookup::Missing,
                }
            }
            _ => return Lookup::Missing,
        };
    }
    Lookup::Found(v)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub scope: Scope,
    pub when: Vec<Condition>,
    /// Position in the role's list in the file, for reports.
    pub at: usize,
}

/// Rules of one role for one kind, indexed for lookup.
#[derive(Debug, Clone, Default)]
struct Index {
    /// By literal upstream, then by literal name; globs kept apart.
    by_upstream: HashMap<String, NameIndex>,
    wild_upstream: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
struct NameIndex {
    exact: HashMap<String, Vec<usize>>,
    globbed: Vec<usize>,
}

impl Index {
    fn add(&mut self, i: usize, rule: &Rule) {
        match rule.scope.upstream_literal() {
            None => self.wild_upstream.push(i),
            Some(u) => {
                let n = self.by_upstream.entry(u.to_owned()).or_default();
                match rule.scope.name_literal() {
                    Some(name) => n.exact.entry(name).or_default().push(i),
                    None => n.globbed.push(i),
                }
            }
        }
    }

    fn candidates<'a>(&'a self, upstream: &str, name: &str) -> impl Iterator<Item = usize> + 'a {
        let n = self.by_upstream.get(upstream);
        let exact = n.and_then(|n| n.exact.get(name)).into_iter().flatten();
        let globbed = n.into_iter().flat_map(|n| n.globbed.iter());
        exact
            .chain(globbed)
            .chain(self.wild_upstream.iter())
            .copied()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Role {
    pub name: String,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    allow_idx: [Index; 4],
    deny_idx: [Index; 4],
}

impl Role {
    /// A role with its rules indexed by kind and upstream.
    pub(crate) fn new(name: String, allow: Vec<Rule>, deny: Vec<Rule>) -> Role {
        let mut role = Role {
            name,
            allow,
            deny,
            ..Role::default()
        };
        for (i, rule) in role.allow.iter().enumerate() {
            role.allow_idx[rule.scope.kind.index()].add(i, rule);
        }
        for (i, rule) in role.deny.iter().enumerate() {
            role.deny_idx[rule.scope.kind.index()].add(i, rule);
        }
        role
    }
}

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

#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: Vec<Role>,
    by_name: HashMap<String, usize>,
}

impl Policy {
    /// The policy of these roles, each found by its name.
    pub(crate) fn new(roles: Vec<Role>) -> Policy {
        let by_name = roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        Policy { roles, by_name }
    }

    pub fn role_id(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    /// Decide one call. `args` is parsed only if a matching rule has
    /// conditions; `parse_args` is called at most once and returns `None`
    /// for arguments it refuses to read, which fails closed.
    pub fn decide<'r>(
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
        let k = kind.index();
        let mut denied = None;
        for role in roles
            .clone()
            .filter_map(|r| self.by_name.get(r))
            .map(|&i| &self.roles[i])
        {
            for i in role.deny_idx[k].candidates(upstream, name) {
                let rule = &role.deny[i];
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
        for role in roles
            .filter_map(|r| self.by_name.get(r))
            .map(|&i| &self.roles[i])
        {
            for i in role.allow_idx[k].candidates(upstream, name) {
                let rule = &role.allow[i];
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

    /// May these roles see this item in a list result? (Some call to it
    /// could be allowed.)
    pub fn visible<'r>(
        &self,
        roles: impl Iterator<Item = &'r str> + Clone,
        kind: Kind,
        upstream: &str,
        name: &str,
    ) -> bool {
        let k = kind.index();
        let ids = || {
            roles
                .clone()
                .filter_map(|r| self.by_name.get(r))
                .map(|&i| &self.roles[i])
        };
        let hidden = ids().any(|role| {
            role.deny_idx[k].candidates(upstream, name).any(|i| {
                let r = &role.deny[i];
                r.when.is_empty() && r.scope.matches(kind, upstream, name)
            })
        });
        !hidden
            && ids().any(|role| {
                role.allow_idx[k]
                    .candidates(upstream, name)
                    .any(|i| role.allow[i].scope.matches(kind, upstream, name))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::policy::compile;
    use crate::error::ConfigError;
    use crate::raw::RawRole;

    fn policy(yaml: &str) -> (Policy, Vec<ConfigError>, Vec<ConfigError>) {
        let roles: Vec<RawRole> = serde_yaml::from_str(yaml).expect("roles yaml");
        let (mut errs, mut warns) = (Vec::new(), Vec::new());
        let p = compile(&roles, &["github", "fs", "demo"], &mut errs, &mut warns);
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
}
