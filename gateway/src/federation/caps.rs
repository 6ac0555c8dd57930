//! The capabilities a virtual server advertises in `initialize`: what the
//! sources it opened declared, merged. A feature (`tools`, `prompts`,
//! `resources`, `completions`, `logging`) and its flags (`listChanged`,
//! `subscribe`) are advertised when some source has them — the gateway
//! routes each use to a source that does, and merges their notifications.
//! `tasks` as the first source that has them declares them. An extension
//! (`extensions`, `experimental`) is advertised only when
//! every source declared it: one that some source lacks would not work for
//! that source's items.

use serde_json::{json, Map, Value};

/// What the gateway serves whatever its sources say.
pub fn baseline() -> Value {
    json!({"tools": {}, "prompts": {}, "resources": {}, "completions": {}, "logging": {}})
}

/// The merged capabilities of `declared` (one per source that answered);
/// the baseline when none did.
pub fn merge(declared: &[Value]) -> Value {
    let mut out = baseline();
    if declared.is_empty() {
        return out;
    }
    let Some(obj) = out.as_object_mut() else {
        return out;
    };
    for feature in ["tools", "prompts", "resources"] {
        let mut flags = Map::new();
        for flag in ["listChanged", "subscribe"] {
            let any = declared
                .iter()
                .any(|c| c[feature][flag].as_bool() == Some(true));
            if any {
                flags.insert(flag.into(), Value::Bool(true));
            }
        }
        obj.insert(feature.into(), Value::Object(flags));
    }
    // Tasks are found by asking each source for the handle: advertised as
    // the first source that has them declares them.
    if let Some(tasks) = declared
        .iter()
        .find_map(|c| c.get("tasks").filter(|t| t.is_object()))
    {
        obj.insert("tasks".into(), tasks.clone());
    }
    for ext in ["extensions", "experimental"] {
        let mut common: Option<Map<String, Value>> = None;
        for c in declared {
            let mine = c[ext].as_object().cloned().unwrap_or_default();
            common = Some(match common {
                None => mine,
                Some(mut kept) => {
                    kept.retain(|k, _| mine.contains_key(k));
                    kept
                }
            });
        }
        if let Some(kept) = common.filter(|k| !k.is_empty()) {
            obj.insert(ext.into(), Value::Object(kept));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_from_any_source_extensions_only_from_all() {
        let a = json!({"tools": {"listChanged": true}, "resources": {"subscribe": true},
                       "extensions": {"io.x/ui": {}, "io.x/both": {"v": 1}}});
        let b = json!({"tools": {}, "prompts": {"listChanged": true},
                       "extensions": {"io.x/both": {"v": 2}}});
        let m = merge(&[a, b]);
        assert_eq!(m["tools"], json!({"listChanged": true}));
        assert_eq!(m["prompts"], json!({"listChanged": true}));
        assert_eq!(m["resources"], json!({"subscribe": true}));
        assert_eq!(m["logging"], json!({}));
        assert_eq!(
            m["extensions"],
            json!({"io.x/both": {"v": 1}}),
            "only what all declare"
        );
        assert!(m.get("experimental").is_none());
        assert!(m.get("tasks").is_none());
        let t = merge(&[json!({}), json!({"tasks": {"list": {}}})]);
        assert_eq!(t["tasks"], json!({"list": {}}));
        assert_eq!(merge(&[]), baseline());
        let lone = merge(&[json!({"extensions": {"io.x/ui": {}}})]);
        assert_eq!(lone["extensions"], json!({"io.x/ui": {}}));
    }
}
