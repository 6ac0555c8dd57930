//! Virtual servers (`servers` in config): one MCP endpoint over several
//! upstreams. This module is the Pingora-free core the data path builds
//! on — names (`Catalog`: what a client sees for a source's item, and
//! which source serves a name it sends), merged tool lists with the
//! overrides applied (`tools`), the arguments a call is forwarded with
//! (`tools::call_arguments`), and cursors that carry every source's
//! position (`cursor`).
//!
//! Decide on exactly what is forwarded: policy sees a call's source and the
//! tool's name on the upstream, and the arguments after fixed and default
//! values are set — never the name or arguments as the client sent them.

pub mod call;
pub mod caps;
pub mod cursor;
pub mod idempotency;
pub mod legacy;
pub mod meta;
pub mod pins;
pub mod relay;
pub mod reply;
pub mod screen;
pub mod seal;
pub mod search;
pub mod sessions;
pub mod source_streams;
pub mod template;
pub mod tools;
pub mod validators;

use std::borrow::Cow;

use sluice_config::{glob, NameFilter, Server, Source};

/// The kinds of items a server federates by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemKind {
    Tool,
    Prompt,
    Resource,
    /// A resource template, known by its `uriTemplate` and filtered as the
    /// source's resources are.
    Template,
}

impl ItemKind {
    /// Known by a URI (or URI template) that no prefix may change.
    pub fn by_uri(self) -> bool {
        matches!(self, ItemKind::Resource | ItemKind::Template)
    }
}

/// Names across one virtual server's sources.
#[derive(Clone, Copy)]
pub struct Catalog<'s> {
    server: &'s Server,
}

impl<'s> Catalog<'s> {
    pub fn new(server: &'s Server) -> Self {
        Catalog { server }
    }

    pub fn server(&self) -> &'s Server {
        self.server
    }

    /// The name a client sees for source `i`'s item `name`, or `None` when
    /// the source's filter leaves it out.
    pub fn expose(&self, i: usize, kind: ItemKind, name: &str) -> Option<String> {
        let src = self.server.sources.get(i)?;
        if !admits(filter(src, kind), name) {
            return None;
        }
        let shown = match kind {
            ItemKind::Tool => src
                .override_for(name)
                .and_then(|o| o.name.as_deref())
                .unwrap_or(name),
            _ => name,
        };
        Some(format!("{}{shown}", src.prefix))
    }

    /// Does source `i`'s filter for `kind` serve `name` (a resource: its URI)?
    pub fn admits(&self, i: usize, kind: ItemKind, name: &str) -> bool {
        self.server
            .sources
            .get(i)
            .is_some_and(|src| admits(filter(src, kind), name))
    }

    /// The sources that could serve the name a client sent, each with the
    /// item's name on its upstream: longest prefix first, a rename undone,
    /// an item its filter leaves out (or a tool known only by its new name)
    /// not a candidate. More than one candidate is a collision unless only
    /// one upstream lists the item; the caller decides with the lists.
    pub fn resolve<'n>(&self, kind: ItemKind, exposed: &'n str) -> Vec<(usize, Cow<'n, str>)> {
        let mut order: Vec<usize> = (0..self.server.sources.len())
            .filter(|&i| exposed.starts_with(&self.server.sources[i].prefix))
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.server.sources[i].prefix.len()));
        order
            .into_iter()
            .filter_map(|i| {
                let src = &self.server.sources[i];
                let rest = &exposed[src.prefix.len()..];
                let original = original_name(src, kind, rest)?;
                admits(filter(src, kind), &original).then_some((i, original))
            })
            .collect()
    }
}

/// The upstream's name for an item a client calls `rest` (prefix removed):
/// a renamed tool answers only to its new name.
fn original_name<'n>(src: &Source, kind: ItemKind, rest: &'n str) -> Option<Cow<'n, str>> {
    if rest.is_empty() {
        return None;
    }
    if kind != ItemKind::Tool {
        return Some(Cow::Borrowed(rest));
    }
    if let Some(o) = src
        .overrides
        .iter()
        .find(|o| o.name.as_deref() == Some(rest))
    {
        return Some(Cow::Owned(o.tool.clone()));
    }
    match src.override_for(rest) {
        Some(o) if o.name.is_some() => None,
        _ => Some(Cow::Borrowed(rest)),
    }
}

fn filter(src: &Source, kind: ItemKind) -> &NameFilter {
    match kind {
        ItemKind::Tool => &src.tools,
        ItemKind::Prompt => &src.prompts,
        ItemKind::Resource | ItemKind::Template => &src.resources,
    }
}

/// Served when some `include` glob matches (none: all) and no `exclude` does.
pub fn admits(f: &NameFilter, name: &str) -> bool {
    let any = |globs: &[String]| globs.iter().any(|g| glob(g.as_bytes(), name.as_bytes()));
    (f.include.is_empty() || any(&f.include)) && !any(&f.exclude)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `config/examples/servers.yaml`: github (filtered, two overrides),
    /// everything (prefix `ev`), notes (no prefix).
    pub(crate) fn server() -> sluice_config::Snapshot {
        let yaml = include_str!("../../../config/examples/servers.yaml");
        sluice_config::load(yaml, 1).expect("valid")
    }

    #[test]
    fn a_sources_items_are_shown_with_its_prefix_and_their_new_names() {
        let snap = server();
        let c = Catalog::new(&snap.servers[0]);
        assert_eq!(
            c.expose(0, ItemKind::Tool, "get_repo").as_deref(),
            Some("github_get_repo")
        );
        assert_eq!(
            c.expose(0, ItemKind::Tool, "create_issue").as_deref(),
            Some("github_file_issue")
        );
        assert_eq!(
            c.expose(0, ItemKind::Tool, "delete_repo"),
            None,
            "not included"
        );
        assert_eq!(
            c.expose(0, ItemKind::Tool, "get_admin_token"),
            None,
            "excluded"
        );
        assert_eq!(
            c.expose(1, ItemKind::Tool, "echo").as_deref(),
            Some("ev_echo")
        );
        assert_eq!(
            c.expose(2, ItemKind::Prompt, "daily").as_deref(),
            Some("daily")
        );
    }

    #[test]
    fn a_name_resolves_to_the_source_and_the_upstreams_own_name() {
        let snap = server();
        let c = Catalog::new(&snap.servers[0]);
        let r = |n: &'static str| c.resolve(ItemKind::Tool, n);
        assert_eq!(
            r("github_get_repo"),
            [
                (0, Cow::Borrowed("get_repo")),
                (2, Cow::Borrowed("github_get_repo"))
            ],
            "longest prefix first; the source without a prefix could list it too"
        );
        assert_eq!(
            r("github_file_issue"),
            [
                (0, Cow::Owned::<str>("create_issue".into())),
                (2, Cow::Borrowed("github_file_issue"))
            ],
            "the source without a prefix could list that name too: a collision the lists decide"
        );
        assert_eq!(
            r("github_create_issue"),
            [(2, Cow::Borrowed("github_create_issue"))],
            "a renamed tool answers only to its new name"
        );
        assert_eq!(
            r("github_get_admin_token"),
            [(2, Cow::Borrowed("github_get_admin_token"))],
            "an excluded tool is not github's"
        );
        assert_eq!(r("ev_echo")[0], (1, Cow::Borrowed("echo")));
        assert!(r("ev_").iter().all(|(i, _)| *i != 1), "no empty name");
    }
}
