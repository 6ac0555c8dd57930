//! What a limit looks at in one request (`LimitInput`), and whether a
//! limit's selector matches it.

use sluice_config::{glob, Selector};

/// Whom limits count: the authenticated caller, else the client's socket
/// address — never anything a header says. (subject, tenant, roles)
pub fn owner(
    client: Option<std::net::IpAddr>,
    caller: Option<&crate::policy::Caller>,
) -> (std::borrow::Cow<'_, str>, Option<&str>, &[Box<str>]) {
    match caller {
        Some(c) => (c.subject.as_ref().into(), c.tenant.as_deref(), &c.roles),
        None => {
            let ip = client.map_or_else(String::new, |ip| {
                crate::upstream::IpText::new(ip).as_str().to_owned()
            });
            (ip.into(), None, &[])
        }
    }
}

/// What a limit looks at in one request: who, where, what.
#[derive(Debug, Clone, Copy)]
pub struct LimitInput<'a> {
    pub tenant: Option<&'a str>,
    /// The authenticated subject, or the client's address without identity.
    pub subject: &'a str,
    pub roles: &'a [Box<str>],
    pub route: &'a str,
    pub upstream: &'a str,
    pub method: &'a str,
    pub target: Option<&'a str>,
    pub model: Option<&'a str>,
}

fn any_glob(pats: &[String], text: &str) -> bool {
    pats.is_empty() || pats.iter().any(|p| glob(p.as_bytes(), text.as_bytes()))
}

/// A limit's selector applied to one request.
pub trait SelectorMatch {
    /// Does every list the selector gives match this request?
    fn matches(&self, i: &LimitInput<'_>) -> bool;
}

impl SelectorMatch for Selector {
    fn matches(&self, i: &LimitInput<'_>) -> bool {
        any_glob(&self.methods, i.method)
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == i.route))
            && any_glob(&self.upstreams, i.upstream)
            && (self.tools.is_empty() || i.target.is_some_and(|t| any_glob(&self.tools, t)))
            && (self.models.is_empty() || i.model.is_some_and(|m| any_glob(&self.models, m)))
            && (self.tenants.is_empty()
                || i.tenant
                    .is_some_and(|t| self.tenants.iter().any(|x| x == t)))
            && (self.roles.is_empty()
                || i.roles
                    .iter()
                    .any(|r| self.roles.iter().any(|x| **x == **r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_need_every_given_list_to_match() {
        let roles: Vec<Box<str>> = vec!["dev".into()];
        let input = LimitInput {
            tenant: Some("acme"),
            subject: "alice",
            roles: &roles,
            route: "mcp",
            upstream: "github",
            method: "tools/call",
            target: Some("create_issue"),
            model: None,
        };
        let mut s = Selector {
            methods: vec!["tools/*".into()],
            upstreams: vec!["git*".into()],
            ..Selector::default()
        };
        assert!(s.matches(&input));
        s.roles = vec!["admin".into()];
        assert!(!s.matches(&input));
        s.roles = vec!["dev".into()];
        s.tools = vec!["create_*".into()];
        assert!(s.matches(&input));
        s.models = vec!["*".into()];
        assert!(!s.matches(&input), "a model selector needs a model");
    }
}
