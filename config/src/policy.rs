//! RBAC compiled at snapshot build: scopes parsed into per-segment matchers,
//! indexed by kind and upstream so a decision looks at few rules, and the
//! pure decision functions the gateway calls per message.
//!
//! Scope grammar: `<kind>:<upstream>/<name>:<action>` with kind/action one of
//! `tools…:call`, `resources…:read`, `prompts…:get`, `models…:use`. `<upstream>` is one
//! segment; `<name>` is a tool or prompt name, or a resource URI, split on
//! `/` into segments. In a segment `*` matches any run of characters except
//! `/`, so `github/*` never matches `github/admin/x`; a whole segment `**`
//! matches any number of segments. Deny wins over allow; no allow means the
//! action is hidden.

use std::collections::HashMap;

use crate::raw::{RawCondition, RawRole, RawRule};
use crate::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tools,
    Resources,
    Prompts,
    /// Model traffic: `models:<upstream>/<model>:use`, where `<upstream>` is
    /// the LLM route's upstream and `<model>` the name the client asked for.
    Models,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }
    pub fn action(self) -> &'static str {
        match self {
            Kind::Tools => "call",
            Kind::Resources => "read",
            Kind::Prompts => "get",
            Kind::Models => "use",
        }
    }
}

/// One `/`-free piece of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Literal(String),
    Glob(String),
    /// `**`: zero or more whole segments.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
struct Path(Vec<Seg>);

impl Path {
    fn parse(s: &str) -> Self {
        Path(
            s.split('/')
                .map(|seg| match seg {
                    "**" => Seg::Any,
                    s if s.contains('*') => Seg::Glob(s.to_owned()),
                    s => Seg::Literal(s.to_owned()),
                })
                .collect(),
        )
    }

    fn literal(&self) -> Option<String> {
        let mut out = Vec::new();
        for s in &self.0 {
            match s {
                Seg::Literal(l) => out.push(l.as_str()),
                _ => return None,
            }
        }
        Some(out.join("/"))
    }

    fn matches(&self, name: &str) -> bool {
        // With two or more `**` the backtracking walk below takes time
        // polynomial in the name's segments, of that degree: a long name
        // (a client's resource URI) could hold a thread for minutes. Those
        // patterns are matched by a table instead, in segments × pattern.
        if self.0.iter().filter(|s| matches!(s, Seg::Any)).count() > 1 {
            return self.matches_by_table(name);
        }
        /// `rest` is what is left of the name; `None` once every segment was used.
        fn go(pat: &[Seg], rest: Option<&str>) -> bool {
            match (pat.first(), rest) {
                (None, r) => r.is_none(),
                (Some(Seg::Any), None) => go(&pat[1..], None),
                (Some(Seg::Any), Some(r)) => go(&pat[1..], Some(r)) || go(pat, split(r).1),
                (Some(_), None) => false,
                (Some(Seg::Literal(l)), Some(r)) => {
                    let (head, tail) = split(r);
                    l == head && go(&pat[1..], tail)
                }
                (Some(Seg::Glob(g)), Some(r)) => {
                    let (head, tail) = split(r);
                    glob(g.as_bytes(), head.as_bytes()) && go(&pat[1..], tail)
                }
            }
        }
        fn split(s: &str) -> (&str, Option<&str>) {
            match s.split_once('/') {
                Some((h, t)) => (h, Some(t)),
                None => (s, None),
            }
        }
        go(&self.0, Some(name))
    }
}

impl Path {
    /// `matches`, by dynamic programming over (pattern, name) segment
    /// positions: `row[j]` says whether the pattern's segments from `i` on
    /// match the name's from `j` on.
    fn matches_by_table(&self, name: &str) -> bool {
        let segs: Vec<&str> = name.split('/').collect();
        let m = segs.len();
        // The pattern's end matches only the name's end.
        let mut next = vec![false; m + 1];
        next[m] = true;
        let mut row = vec![false; m + 1];
        for seg in self.0.iter().rev() {
            for j in (0..=m).rev() {
                row[j] = match seg {
                    // Zero segments, or one and then still `**`.
                    Seg::Any => next[j] || (j < m && row[j + 1]),
                    Seg::Literal(l) => j < m && l == segs[j] && next[j + 1],
                    Seg::Glob(g) => j < m && glob(g.as_bytes(), segs[j].as_bytes()) && next[j + 1],
                };
            }
            std::mem::swap(&mut row, &mut next);
        }
        next[0]
    }
}

/// `*` matches any run of bytes (the caller has split on `/` already).
pub fn glob(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pat.len() && pat[p] != b'*' && pat[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// A glob over a whole string, where `*` does not cross `/`.
pub fn glob_path(pat: &str, text: &str) -> bool {
    Path::parse(pat).matches(text)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub kind: Kind,
    upstream: Seg,
    name: Path,
    pub text: String,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or("expected <kind>:<upstream>/<name>:<action>")?;
        let kind = match kind {
            "tools" => Kind::Tools,
            "resources" => Kind::Resources,
            "prompts" => Kind::Prompts,
            "models" => Kind::Models,
            k => {
                return Err(format!(
                    "unknown kind `{k}` (tools, resources, prompts, models)"
                ))
            }
        };
        let (path, action) = rest.rsplit_once(':').ok_or("missing :<action>")?;
        if action != kind.action() {
            return Err(format!(
                "the action for {kind:?} is `{}`, not `{action}`",
                kind.action()
            ));
        }
        let (upstream, name) = path.split_once('/').ok_or("expected <upstream>/<name>")?;
        if upstream.is_empty() || name.is_empty() {
            return Err("upstream and name must not be empty".into());
        }
        let upstream = match upstream {
            "**" => return Err("`**` is not allowed for the upstream".into()),
            u if u.contains('*') => Seg::Glob(u.to_owned()),
            u => Seg::Literal(u.to_owned()),
        };
        Ok(Scope {
            kind,
            upstream,
            name: Path::parse(name),
            text: s.to_owned(),
        })
    }

    pub fn upstream_literal(&self) -> Option<&str> {
        match &self.upstream {
            Seg::Literal(l) => Some(l),
            _ => None,
        }
    }

    pub fn name_literal(&self) -> Option<String> {
        self.name.literal()
    }

    pub fn matches(&self, kind: Kind, upstream: &str, name: &str) -> bool {
        kind == self.kind
            && match &self.upstream {
                Seg::Literal(l) => l == upstream,
                Seg::Glob(g) => glob(g.as_bytes(), upstream.as_bytes()),
                Seg::Any => true,
            }
            && self.name.matches(name)
    }
}

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

/// Compile the roles; `upstreams` are the configured upstream names.
pub fn compile(
    raw: &[RawRole],
    upstreams: &[&str],
    errs: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Policy {
    let mut policy = Policy::default();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("roles[{i}]");
        if policy.by_name.contains_key(&r.name) {
            errs.push(ConfigError::new(
                format!("{path}.name"),
                format!("duplicate role `{}`", r.name),
            ));
            continue;
        }
        let mut role = Role {
            name: r.name.clone(),
            ..Role::default()
        };
        for (list, raw_rules, what) in [
            (&mut role.allow, &r.allow, "allow"),
            (&mut role.deny, &r.deny, "deny"),
        ] {
            for (j, rule) in raw_rules.iter().enumerate() {
                let p = format!("{path}.{what}[{j}]");
                if let Some(rule) = compile_rule(rule, j, &p, upstreams, errs) {
                    list.push(rule);
                }
            }
        }
        for a in &role.allow {
            let shadowed = role.deny.iter().any(|d| {
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
        for (i, rule) in role.allow.iter().enumerate() {
            role.allow_idx[rule.scope.kind.index()].add(i, rule);
        }
        for (i, rule) in role.deny.iter().enumerate() {
            role.deny_idx[rule.scope.kind.index()].add(i, rule);
        }
        policy.by_name.insert(r.name.clone(), policy.roles.len());
        policy.roles.push(role);
    }
    policy
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
        let p = format!("{path}.when[{k}]");
        if !(c.pointer.is_empty() || c.pointer.starts_with('/')) {
            errs.push(ConfigError::new(
                &p,
                "pointer must be empty or start with `/`",
            ));
            continue;
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
                &p,
                "a condition needs equals, glob, max or min",
            ));
        }
        conds.extend(tests.into_iter().map(|test| Condition {
            pointer: c.pointer.clone(),
            test,
        }));
    }
    Some(Rule {
        scope,
        when: conds,
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_never_cross() {
        let s = Scope::parse("tools:github/*:call").expect("scope");
        assert!(s.matches(Kind::Tools, "github", "create_issue"));
        assert!(!s.matches(Kind::Tools, "github", "admin/x"));
        assert!(!s.matches(Kind::Prompts, "github", "x"));
        let s = Scope::parse("tools:git*/get-*:call").expect("scope");
        assert!(s.matches(Kind::Tools, "github", "get-sum"));
        assert!(!s.matches(Kind::Tools, "gitlab", "put-sum"));
        let s = Scope::parse("resources:fs/file:///home/**:read").expect("scope");
        assert!(s.matches(Kind::Resources, "fs", "file:///home/a/b.txt"));
        assert!(!s.matches(Kind::Resources, "fs", "file:///etc/passwd"));
        assert!(Scope::parse("tools:github/x:read").is_err());
        assert!(Scope::parse("tools:**/x:call").is_err());
        assert!(glob(b"a*c*", b"abcxc"));
        assert!(!glob(b"a*d", b"abc"));
    }

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
    fn patterns_with_several_double_stars_match_as_the_walk_does_even_on_long_names() {
        let pats = [
            "**/a/**/b",
            "a/**/**",
            "**/**",
            "x/**/y/*/z/**",
            "**/a*/**",
            "**",
            "a/**/b",
        ];
        let names = [
            "a/b",
            "x/a/y/b",
            "a",
            "b",
            "",
            "a/x/b/b",
            "x/y/q/z",
            "x/y/q/z/w",
            "aa/b/c",
            "a/a/a/b",
        ];
        for p in pats {
            let path = Path::parse(p);
            for n in names {
                // The walk, forced, against the table.
                let walk = {
                    let single = Path(path.0.clone());
                    fn go(pat: &[Seg], rest: Option<&str>) -> bool {
                        let split = |s: &str| -> (String, Option<String>) {
                            match s.split_once('/') {
                                Some((h, t)) => (h.to_owned(), Some(t.to_owned())),
                                None => (s.to_owned(), None),
                            }
                        };
                        match (pat.first(), rest) {
                            (None, r) => r.is_none(),
                            (Some(Seg::Any), None) => go(&pat[1..], None),
                            (Some(Seg::Any), Some(r)) => {
                                go(&pat[1..], Some(r)) || go(pat, split(r).1.as_deref())
                            }
                            (Some(_), None) => false,
                            (Some(Seg::Literal(l)), Some(r)) => {
                                let (h, t) = split(r);
                                *l == h && go(&pat[1..], t.as_deref())
                            }
                            (Some(Seg::Glob(g)), Some(r)) => {
                                let (h, t) = split(r);
                                glob(g.as_bytes(), h.as_bytes()) && go(&pat[1..], t.as_deref())
                            }
                        }
                    }
                    go(&single.0, Some(n))
                };
                assert_eq!(path.matches_by_table(n), walk, "{p} vs {n}");
                assert_eq!(path.matches(n), walk, "{p} vs {n}");
            }
        }
        // 20,000 segments against four `**`: a table of 180,000 cells.
        let long = vec!["a"; 20_000].join("/") + "/c";
        assert!(!Path::parse("**/a/**/a/**/a/**/b").matches(&long));
        assert!(Path::parse("**/a/**/a/**/a/**/c").matches(&long));
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
