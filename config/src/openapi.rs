//! OpenAPI 3.0/3.1 → HTTP tools (`sluice-gateway openapi import`): each
//! operation becomes one `http_tools` entry of a source — its
//! `operationId` the name (made a valid, unique tool name), its summary
//! and description the description, its path, query and header parameters
//! and its JSON request body (`body`) the properties of `input_schema`,
//! every `$ref` within the document resolved. The result is a source entry
//! to paste under a server's `sources`, printed as YAML to commit.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::raw::RawHttpTool;

/// Deepest `$ref` chain followed; deeper (a cycle) becomes `{}`.
const MAX_DEPTH: usize = 24;
/// Headers a tool may not set (the gateway and the upstream's credential do).
const RESERVED: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "accept",
    "host",
    "cookie",
    "connection",
    "transfer-encoding",
];

/// What an import made, and what it left out.
#[derive(Debug)]
pub struct Imported {
    pub title: String,
    pub tools: Vec<RawHttpTool>,
    /// `METHOD path: why` for each operation or parameter left out.
    pub skipped: Vec<String>,
}

/// Read an OpenAPI document (JSON or YAML text).
pub fn parse(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml::from_str(text).map_err(|e| format!("neither JSON nor YAML: {e}")),
    }
}

/// The HTTP tools of every operation of `doc`.
pub fn import(doc: &Value) -> Result<Imported, String> {
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.") {
        return Err(format!(
            "an OpenAPI 3.0 or 3.1 document is needed (`openapi: {}`)",
            if version.is_empty() { "?" } else { version }
        ));
    }
    let paths = doc["paths"]
        .as_object()
        .ok_or("the document has no `paths`")?;
    let title = format!(
        "{} {}",
        doc["info"]["title"].as_str().unwrap_or("an API"),
        doc["info"]["version"].as_str().unwrap_or("")
    );
    let mut out = Imported {
        title: title.trim().to_owned(),
        tools: Vec::new(),
        skipped: Vec::new(),
    };
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (path, item) in paths {
        let item = resolve(doc, item, 0);
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let op = resolve(doc, op, 0);
            match operation(doc, (path, &item), (method, &op), &mut out.skipped) {
                Ok(mut tool) => {
                    let n = names.entry(tool.name.clone()).or_default();
                    *n += 1;
                    if *n > 1 {
                        tool.name = format!("{}_{}", tool.name, n);
                    }
                    out.tools.push(tool);
                }
                Err(why) => out
                    .skipped
                    .push(format!("{} {path}: {why}", method.to_uppercase())),
            }
        }
    }
    Ok(out)
}

/// The source entry, as YAML, with a header saying what was imported.
pub fn to_yaml(imported: &Imported, upstream: &str) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        upstream: &'a str,
        http_tools: Vec<Printed<'a>>,
    }
    let tools = imported.tools.iter().map(tool_value).collect::<Vec<_>>();
    let entry = [Entry {
        upstream,
        http_tools: tools,
    }];
    let mut out = format!(
        "# {} operations of {} as HTTP tools (sluice-gateway openapi import).\n",
        imported.tools.len(),
        imported.title
    );
    for s in &imported.skipped {
        out.push_str(&format!("# left out: {s}\n"));
    }
    out.push_str(&serde_yaml::to_string(&entry).map_err(|e| e.to_string())?);
    Ok(out)
}

/// One tool as printed: what identifies it first, the schema last.
#[derive(serde::Serialize)]
struct Printed<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    query: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a Value>,
    input_schema: &'a Value,
}

fn tool_value(t: &RawHttpTool) -> Printed<'_> {
    Printed {
        name: &t.name,
        description: t.description.as_deref(),
        method: t.method.as_deref().unwrap_or("GET"),
        path: &t.path,
        query: &t.query,
        headers: &t.headers,
        body: t.body.as_ref(),
        annotations: t.annotations.as_ref(),
        input_schema: &t.input_schema,
    }
}

fn operation(
    doc: &Value,
    (path, item): (&str, &Value),
    (method, op): (&str, &Value),
    skipped: &mut Vec<String>,
) -> Result<RawHttpTool, String> {
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err("the path is not a plain path".into());
    }
    let name = tool_name(op["operationId"].as_str(), method, path);
    let mut props = Map::new();
    let mut required: Vec<Value> = Vec::new();
    let mut query = BTreeMap::new();
    let mut headers = BTreeMap::new();
    // Operation parameters replace the path item's of the same name and place.
    let mut params: Vec<Value> = Vec::new();
    for list in [&item["parameters"], &op["parameters"]] {
        for p in list.as_array().into_iter().flatten() {
            let p = resolve(doc, p, 0);
            let key = (p["name"].clone(), p["in"].clone());
            params.retain(|q| (q["name"].clone(), q["in"].clone()) != key);
            params.push(p);
        }
    }
    let at = format!("{} {path}", method.to_uppercase());
    for p in params {
        let (Some(pname), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
            continue;
        };
        if pname.contains(['{', '}']) || pname.is_empty() {
            skipped.push(format!(
                "{at}: parameter `{pname}` (its name cannot be a placeholder)"
            ));
            continue;
        }
        match place {
            "path" => {}
            "query" => {
                query.insert(pname.to_owned(), format!("{{{pname}}}"));
            }
            "header"
                if !RESERVED.contains(&pname.to_ascii_lowercase().as_str())
                    && pname
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) =>
            {
                headers.insert(pname.to_owned(), format!("{{{pname}}}"));
            }
            _ => {
                skipped.push(format!("{at}: {place} parameter `{pname}`"));
                continue;
            }
        }
        let mut schema = schema_of(doc, &p["schema"]);
        if let (Some(d), Some(s)) = (p["description"].as_str(), schema.as_object_mut()) {
            s.entry("description").or_insert_with(|| json!(cut(d, 500)));
        }
        props.insert(pname.to_owned(), schema);
        if place == "path" || p["required"] == json!(true) {
            required.push(json!(pname));
        }
    }
    let mut body = None;
    if let Some(rb) = op.get("requestBody") {
        let rb = resolve(doc, rb, 0);
        let content = rb["content"].as_object();
        let json_media = content.and_then(|c| {
            c.iter()
                .find(|(t, _)| t.starts_with("application/json") || t.ends_with("+json"))
        });
        match json_media {
            Some((_, media)) => {
                let mut schema = schema_of(doc, &media["schema"]);
                if let (Some(d), Some(s)) = (rb["description"].as_str(), schema.as_object_mut()) {
                    s.entry("description").or_insert_with(|| json!(cut(d, 500)));
                }
                props.insert("body".into(), schema);
                if rb["required"] == json!(true) {
                    required.push(json!("body"));
                }
                body = Some(json!("{body}"));
            }
            None => return Err("its request body is not JSON".into()),
        }
    }
    let mut input = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        input["required"] = Value::Array(required);
    }
    let description = [op["summary"].as_str(), op["description"].as_str()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let annotations = match method {
        "get" => json!({"readOnlyHint": true, "idempotentHint": true}),
        "delete" => json!({"destructiveHint": true, "idempotentHint": true}),
        "put" => json!({"idempotentHint": true}),
        _ => json!({}),
    };
    Ok(RawHttpTool {
        name,
        title: None,
        description: (!description.is_empty()).then(|| cut(&description, 1000)),
        input_schema: input,
        output_schema: None,
        annotations: annotations
            .as_object()
            .is_some_and(|a| !a.is_empty())
            .then_some(annotations),
        method: Some(method.to_uppercase()),
        path: path.to_owned(),
        query,
        headers,
        body,
        max_response_bytes: None,
    })
}

/// `operationId` as a tool name (`[A-Za-z0-9_.-]`, at most 128), or one
/// made of the method and path.
fn tool_name(id: Option<&str>, method: &str, path: &str) -> String {
    let raw = match id {
        Some(id) if !id.trim().is_empty() => id.to_owned(),
        _ => format!("{method}{}", path.replace(['{', '}'], "")),
    };
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    name = name.trim_matches('_').to_owned();
    if name.is_empty() {
        name = method.to_owned();
    }
    name.chars().take(128).collect()
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A parameter's or body's schema as JSON Schema: `$ref`s resolved, 3.0's
/// `nullable` made a type list.
fn schema_of(doc: &Value, schema: &Value) -> Value {
    if schema.is_null() {
        return json!({});
    }
    normalise(doc, schema, 0)
}

fn normalise(doc: &Value, v: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return json!({});
    }
    let v = resolve(doc, v, depth);
    match &v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                // Keys that name things (properties, definitions) hold
                // schemas in their values, not keywords.
                let value = match k.as_str() {
                    "properties" | "patternProperties" | "$defs" | "definitions" => {
                        let inner = x
                            .as_object()
                            .map(|o| {
                                o.iter()
                                    .map(|(n, s)| (n.clone(), normalise(doc, s, depth + 1)))
                                    .collect::<Map<String, Value>>()
                            })
                            .unwrap_or_default();
                        Value::Object(inner)
                    }
                    "example" | "examples" | "xml" | "externalDocs" | "discriminator" => continue,
                    _ => normalise(doc, x, depth + 1),
                };
                out.insert(k.clone(), value);
            }
            if out.remove("nullable") == Some(json!(true)) {
                if let Some(t) = out.get("type").and_then(Value::as_str) {
                    let t = t.to_owned();
                    out.insert("type".into(), json!([t, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(doc, x, depth + 1)).collect()),
        other => other.clone(),
    }
}

/// `v`, or what its `$ref` (`#/...` in this document) names, followed.
fn resolve(doc: &Value, v: &Value, depth: usize) -> Value {
    let mut v = v.clone();
    for _ in depth..MAX_DEPTH {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let Some(pointer) = r.strip_prefix('#') else {
            return json!({});
        };
        match doc.pointer(pointer) {
            Some(target) => v = target.clone(),
            None => return json!({}),
        }
    }
    json!({})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_becomes_a_tool() {
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "Pets", "version": "1"},
            "components": {
                "parameters": {"limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "nullable": true}}},
                "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "example": "Rex"}, "friend": {"$ref": "#/components/schemas/Pet"}}}}
            },
            "paths": {
                "/pets/{petId}": {
                    "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "get": {"operationId": "showPetById", "summary": "Info for a pet",
                            "parameters": [{"$ref": "#/components/parameters/limit"},
                                           {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                                           {"name": "session", "in": "cookie"}]},
                    "put": {"operationId": "update pet!", "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}},
                    "post": {"requestBody": {"content": {"multipart/form-data": {}}}}
                }
            }
        });
        let got = import(&doc).expect("imported");
        assert_eq!(got.tools.len(), 2);
        let show = &got.tools[0];
        assert_eq!(show.name, "showPetById");
        assert_eq!(show.path, "/pets/{petId}");
        assert_eq!(show.query.get("limit").map(String::as_str), Some("{limit}"));
        assert_eq!(
            show.headers.get("X-Trace").map(String::as_str),
            Some("{X-Trace}")
        );
        assert_eq!(show.input_schema["required"], json!(["petId"]));
        assert_eq!(
            show.input_schema["properties"]["limit"]["type"],
            json!(["integer", "null"])
        );
        let update = &got.tools[1];
        assert_eq!(update.name, "update_pet");
        assert_eq!(update.body, Some(json!("{body}")));
        assert_eq!(update.input_schema["required"], json!(["petId", "body"]));
        let pet = &update.input_schema["properties"]["body"];
        assert_eq!(
            pet["properties"]["name"],
            json!({"type": "string"}),
            "examples dropped"
        );
        assert!(
            pet["properties"]["friend"].is_object(),
            "a cycle ends, it does not loop"
        );
        assert!(
            got.skipped
                .iter()
                .any(|s| s.contains("cookie parameter `session`")),
            "{:?}",
            got.skipped
        );
        assert!(got
            .skipped
            .iter()
            .any(|s| s.starts_with("POST /pets/{petId}: its request body is not JSON")));
        assert!(import(&json!({"swagger": "2.0"})).is_err());
    }
}
