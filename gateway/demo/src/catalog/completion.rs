//! `completion/complete`: prefix completion for prompt arguments and template variables.

use serde_json::{json, Value};

use crate::jsonrpc::RpcError;

const ARG1_VALUES: [&str; 5] = ["paris", "park", "party", "test", "testValue1"];
const ARG2_VALUES: [&str; 3] = ["world", "testValue2", "tomorrow"];
const TEMPLATE_IDS: [&str; 4] = ["1", "2", "3", "123"];

pub fn complete(params: &Value) -> Result<Value, RpcError> {
    let reference = params
        .get("ref")
        .ok_or_else(|| RpcError::invalid_params("missing ref"))?;
    let argument = params
        .get("argument")
        .ok_or_else(|| RpcError::invalid_params("missing argument"))?;
    let arg_name = argument.get("name").and_then(Value::as_str).unwrap_or("");
    let prefix = argument.get("value").and_then(Value::as_str).unwrap_or("");
    let kind = reference.get("type").and_then(Value::as_str).unwrap_or("");
    let candidates: &[&str] = match (kind, arg_name) {
        ("ref/prompt", "arg1") if named(reference, "name", "test_prompt_with_arguments") => {
            &ARG1_VALUES
        }
        ("ref/prompt", "arg2") if named(reference, "name", "test_prompt_with_arguments") => {
            &ARG2_VALUES
        }
        ("ref/resource", "id") if named(reference, "uri", "test://template/{id}/data") => {
            &TEMPLATE_IDS
        }
        ("ref/prompt" | "ref/resource", _) => &[],
        _ => {
            return Err(RpcError::invalid_params(format!(
                "unsupported ref type {kind:?}"
            )))
        }
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|value| value.starts_with(prefix))
        .collect();
    Ok(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
}

fn named(reference: &Value, key: &str, expected: &str) -> bool {
    reference.get(key).and_then(Value::as_str) == Some(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_by_prefix() {
        let params = json!({
            "ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
            "argument": {"name": "arg1", "value": "par"},
        });
        let result = complete(&params).expect("completion");
        assert_eq!(
            result["completion"]["values"],
            json!(["paris", "park", "party"])
        );
    }

    #[test]
    fn unknown_references_complete_to_nothing() {
        let params = json!({
            "ref": {"type": "ref/prompt", "name": "other"},
            "argument": {"name": "x", "value": ""},
        });
        assert_eq!(
            complete(&params).expect("completion")["completion"]["values"],
            json!([])
        );
    }
}
