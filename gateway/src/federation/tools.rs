//! Lists of named items (tools, prompts) merged across a server's sources,
//! and the arguments a tool call is forwarded with. A merged item carries
//! its client name; a tool also its override's title and description, and
//! an `inputSchema` without the fixed arguments (defaulted ones stay, no
//! longer required, with their default shown). Two items that would reach
//! clients under one name are both withheld and reported — never "first
//! wins".

use std::collections::HashMap;

use serde_json::{Map, Value};
use sluice_config::{ToolOverride, ToolState};

use super::{Catalog, ItemKind};

/// A client name two or more items would take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collision {
    pub name: String,
    /// `(source, the tool's name on its upstream)` of each claimant.
    pub claimants: Vec<(usize, String)>,
}

/// The merged list and what it had to withhold.
#[derive(Debug, Default)]
pub struct Merged {
    pub tools: Vec<Value>,
    pub collisions: Vec<Collision>,
    /// Items without a string `name`, left out.
    pub unreadable: usize,
}

/// Merge each source's listed items of `kind` (`lists`: source index and
/// its items, taken), in source order. Linear in the items: names are
/// grouped in one map, each item edited in place.
pub fn merge(catalog: Catalog<'_>, kind: ItemKind, lists: Vec<(usize, Vec<Value>)>) -> Merged {
    let mut out = Merged::default();
    // A resource is known by its URI, which no prefix may change.
    let field = match kind {
        ItemKind::Resource => "uri",
        ItemKind::Template => "uriTemplate",
        _ => "name",
    };
    let mut named: Vec<(String, usize, String, Value)> = Vec::new();
    for (i, tools) in lists {
        let src = &catalog.server().sources[i];
        for tool in tools {
            let Some(original) = tool.get(field).and_then(Value::as_str) else {
                out.unreadable += 1;
                continue;
            };
            let exposed = if kind.by_uri() {
                catalog
                    .admits(i, kind, original)
                    .then(|| original.to_owned())
            } else {
                catalog.expose(i, kind, original)
            };
            let Some(exposed) = exposed else {
                continue;
            };
            let original = original.to_owned();
            let o = (kind == ItemKind::Tool)
                .then(|| src.override_for(&original))
                .flatten();
            let mut shown = advertise(tool, (!kind.by_uri()).then_some(&exposed), o);
            if kind == ItemKind::Tool {
                lifecycle(&mut shown, src.state_of(&original), o);
            }
            named.push((exposed, i, original, shown));
        }
    }
    // Each client name, and the items that would take it.
    let mut claims: HashMap<&str, Vec<usize>> = HashMap::with_capacity(named.len());
    for (k, (name, ..)) in named.iter().enumerate() {
        claims.entry(name.as_str()).or_default().push(k);
    }
    let mut withheld = vec![false; named.len()];
    for (k, (name, ..)) in named.iter().enumerate() {
        let Some(items) = claims.get(name.as_str()).filter(|c| c.len() > 1) else {
            continue;
        };
        withheld[k] = true;
        if items[0] == k {
            out.collisions.push(Collision {
                name: name.clone(),
                claimants: items
                    .iter()
                    .map(|&j| (named[j].1, named[j].2.clone()))
                    .collect(),
            });
        }
    }
    drop(claims);
    out.tools = named
        .into_iter()
        .zip(withheld)
        .filter(|(_, w)| !w)
        .map(|((.., v), _)| v)
        .collect();
    out
}

/// One tool as clients see it.
/// `exposed`: its client name (none for an item known by its URI).
fn advertise(mut t: Value, exposed: Option<&String>, o: Option<&ToolOverride>) -> Value {
    let Some(obj) = t.as_object_mut() else {
        return t;
    };
    if let Some(name) = exposed {
        obj.insert("name".into(), Value::String(name.clone()));
    }
    let Some(o) = o else {
        return t;
    };
    if let Some(title) = &o.title {
        obj.insert("title".into(), Value::String(title.clone()));
    }
    if let Some(d) = &o.description {
        obj.insert("description".into(), Value::String(d.clone()));
    }
    if let Some(schema) = obj.get_mut("inputSchema").and_then(Value::as_object_mut) {
        hide_arguments(schema, o);
    }
    t
}

/// A deprecated tool says so first in its description; a tool's state
/// (other than published) and version are in `_meta` (`sluice/state`,
/// `sluice/version`).
fn lifecycle(t: &mut Value, state: ToolState, o: Option<&ToolOverride>) {
    let Some(obj) = t.as_object_mut() else {
        return;
    };
    if state == ToolState::Deprecated {
        let was = obj.get("description").and_then(Value::as_str).unwrap_or("");
        let said = format!("Deprecated: {was}");
        obj.insert("description".into(), Value::String(said));
    }
    let version = o.and_then(|o| o.version.as_deref());
    if state == ToolState::Published && version.is_none() {
        return;
    }
    let meta = obj
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        if state != ToolState::Published {
            m.insert("sluice/state".into(), Value::String(state.as_str().into()));
        }
        if let Some(v) = version {
            m.insert("sluice/version".into(), Value::String(v.into()));
        }
    }
}

/// Fixed arguments leave the schema; defaulted ones are no longer required
/// and show their default.
fn hide_arguments(schema: &mut Map<String, Value>, o: &ToolOverride) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for k in o.fixed.keys() {
            props.remove(k);
        }
        for (k, v) in &o.defaults {
            if let Some(p) = props.get_mut(k).and_then(Value::as_object_mut) {
                p.insert("default".into(), v.clone());
            }
        }
    }
    if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|r| {
            r.as_str()
                .is_none_or(|r| !o.fixed.contains_key(r) && !o.defaults.contains_key(r))
        });
    }
}

/// The arguments a call goes upstream with: the client's, with every fixed
/// value set over them and every default set where the client left it out.
/// `Err` when the client's `arguments` is not an object (nothing to set
/// the values in: the call is refused, not forwarded as sent).
pub fn call_arguments(
    o: Option<&ToolOverride>,
    args: Option<&Value>,
) -> Result<Option<Value>, &'static str> {
    let Some(o) = o.filter(|o| !o.fixed.is_empty() || !o.defaults.is_empty()) else {
        return Ok(args.cloned());
    };
    let mut map = match args {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("arguments must be an object"),
    };
    for (k, v) in &o.fixed {
        map.insert(k.clone(), v.clone());
    }
    for (k, v) in &o.defaults {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(Some(Value::Object(map)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::federation::tests::server;

    fn tool(name: &str) -> Value {
        json!({
            "name": name,
            "description": "upstream's",
            "inputSchema": {
                "type": "object",
                "properties": {"owner": {"type": "string"}, "repo": {"type": "string"}, "labels": {"type": "array"}},
                "required": ["owner", "repo", "labels"]
            }
        })
    }

    #[test]
    fn lists_merge_with_names_overrides_and_fixed_arguments_hidden() {
        let snap = server();
        let c = Catalog::new(&snap.servers[0]);
        let github = [
            tool("get_repo"),
            tool("create_issue"),
            tool("delete_repo"),
            json!({"x": 1}),
        ];
        let everything = [tool("echo")];
        let m = merge(
            c,
            ItemKind::Tool,
            vec![(0, github.to_vec()), (1, everything.to_vec())],
        );
        let names: Vec<&str> = m
            .tools
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["github_get_repo", "github_file_issue", "ev_echo"]);
        assert_eq!(m.unreadable, 1);
        let repo = &m.tools[0];
        assert_eq!(repo["title"], "Repository");
        assert!(
            repo["inputSchema"]["properties"].get("owner").is_none(),
            "fixed: not advertised"
        );
        assert_eq!(repo["inputSchema"]["required"], json!(["repo", "labels"]));
        let issue = &m.tools[1];
        assert_eq!(
            issue["inputSchema"]["properties"]["labels"]["default"],
            json!(["triage"])
        );
        assert_eq!(issue["inputSchema"]["required"], json!(["owner", "repo"]));
        assert_eq!(m.tools[2], {
            let mut t = tool("echo");
            t["name"] = "ev_echo".into();
            t
        });
    }

    #[test]
    fn two_tools_under_one_name_are_both_withheld_and_reported() {
        let snap = server();
        let c = Catalog::new(&snap.servers[0]);
        let github = [tool("get_repo")];
        let notes = [tool("github_get_repo"), tool("search")];
        let m = merge(
            c,
            ItemKind::Tool,
            vec![(0, github.to_vec()), (2, notes.to_vec())],
        );
        let names: Vec<&str> = m
            .tools
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["search"]);
        assert_eq!(
            m.collisions,
            [Collision {
                name: "github_get_repo".into(),
                claimants: vec![(0, "get_repo".into()), (2, "github_get_repo".into())],
            }]
        );
    }

    #[test]
    fn a_call_goes_upstream_with_fixed_values_over_and_defaults_under() {
        let snap = server();
        let gh = &snap.servers[0].sources[0];
        let repo = gh.override_for("get_repo");
        let sent = json!({"owner": "evil", "repo": "x"});
        assert_eq!(
            call_arguments(repo, Some(&sent)).unwrap(),
            Some(json!({"owner": "acme", "repo": "x"})),
            "the client cannot change a fixed value"
        );
        assert_eq!(
            call_arguments(repo, None).unwrap(),
            Some(json!({"owner": "acme"}))
        );
        let issue = gh.override_for("create_issue");
        assert_eq!(
            call_arguments(issue, Some(&json!({"labels": ["bug"]}))).unwrap(),
            Some(json!({"labels": ["bug"]})),
            "a default gives way to the client's value"
        );
        assert_eq!(
            call_arguments(issue, Some(&json!({}))).unwrap(),
            Some(json!({"labels": ["triage"]}))
        );
        assert!(call_arguments(repo, Some(&json!([1]))).is_err());
        assert_eq!(
            call_arguments(None, Some(&json!([1]))).unwrap(),
            Some(json!([1]))
        );
    }
}
