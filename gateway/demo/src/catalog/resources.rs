//! Resources and resource templates, with the exact contents the conformance suite checks.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::assets::RED_PIXEL_PNG;
use crate::jsonrpc::{RpcError, RESOURCE_NOT_FOUND};
use crate::state::AppState;

pub const STATIC_TEXT: &str = "test://static-text";
pub const STATIC_BINARY: &str = "test://static-binary";
pub const WATCHED: &str = "test://watched-resource";
const TEMPLATE: &str = "test://template/{id}/data";

pub fn list() -> Value {
    json!({ "resources": [
        {
            "uri": STATIC_TEXT,
            "name": "static-text",
            "title": "Static text resource",
            "description": "A plain-text resource whose content never changes",
            "mimeType": "text/plain",
        },
        {
            "uri": STATIC_BINARY,
            "name": "static-binary",
            "title": "Static binary resource",
            "description": "A 1x1 PNG served as a base64 blob",
            "mimeType": "image/png",
        },
        {
            "uri": WATCHED,
            "name": "watched-resource",
            "title": "Watched resource",
            "description": "Subscribe to it; the touch-resource tool changes it and notifies subscribers",
            "mimeType": "text/plain",
        },
    ]})
}

pub fn templates() -> Value {
    json!({ "resourceTemplates": [
        {
            "uriTemplate": TEMPLATE,
            "name": "template-data",
            "title": "Templated data",
            "description": "JSON data for any id, substituted into the URI",
            "mimeType": "application/json",
        },
    ]})
}

pub fn read(state: &AppState, uri: &str) -> Result<Value, RpcError> {
    let content = match uri {
        STATIC_TEXT => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        STATIC_BINARY => json!({ "uri": uri, "mimeType": "image/png", "blob": RED_PIXEL_PNG }),
        WATCHED => {
            let version = state.watched_version.load(Ordering::Relaxed);
            json!({
                "uri": uri,
                "mimeType": "text/plain",
                "text": format!("Watched resource content, version {version}"),
            })
        }
        _ => match template_id(uri) {
            Some(id) => {
                let data =
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                json!({ "uri": uri, "mimeType": "application/json", "text": data.to_string() })
            }
            None => {
                return Err(RpcError::new(
                    RESOURCE_NOT_FOUND,
                    format!("Resource not found: {uri}"),
                ))
            }
        },
    };
    Ok(json!({ "contents": [content] }))
}

/// The `{id}` of `test://template/{id}/data`, if `uri` matches the template.
pub fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::DemoOptions;

    #[test]
    fn template_substitutes_the_id() {
        let state = AppState::new(DemoOptions::default());
        let result = read(&state, "test://template/123/data").expect("readable");
        let text = result["contents"][0]["text"].as_str().expect("text");
        let data: Value = serde_json::from_str(text).expect("json");
        assert_eq!(
            data,
            json!({"id":"123","templateTest":true,"data":"Data for ID: 123"})
        );
    }

    #[test]
    fn unknown_uris_are_not_found() {
        let state = AppState::new(DemoOptions::default());
        let error = read(&state, "test://nope").expect_err("unknown");
        assert_eq!(error.code, RESOURCE_NOT_FOUND);
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/a/b/data"), None);
    }
}
