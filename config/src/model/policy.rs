//! RBAC compiled: rules (a scope and conditions on the call's arguments)
//! per role, indexed by kind and upstream so a decision looks at few rules.
//! The gateway decides calls against it (`sluice_gateway::policy::decide`).

use std::collections::HashMap;

use super::pattern::{Kind, Scope};

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

    /// The deny rules that may match this call (all that match are among them).
    pub fn deny_candidates<'a>(
        &'a self,
        kind: Kind,
        upstream: &str,
        name: &str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        let ids = self.deny_idx[kind.index()].candidates(upstream, name);
        ids.map(|i| &self.deny[i])
    }

    /// The allow rules that may match this call (all that match are among them).
    pub fn allow_candidates<'a>(
        &'a self,
        kind: Kind,
        upstream: &str,
        name: &str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        let ids = self.allow_idx[kind.index()].candidates(upstream, name);
        ids.map(|i| &self.allow[i])
    }
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

    /// The role of this name, if configured.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.by_name.get(name).map(|&i| &self.roles[i])
    }
}
