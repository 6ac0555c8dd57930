//! Prompts, with the exact messages the conformance suite checks.

use serde_json::{json, Value};

use crate::assets::RED_PIXEL_PNG;
use crate::jsonrpc::RpcError;

pub fn list() -> Value {
    json!({ "prompts": [
        {
            "name": "test_simple_prompt",
            "title": "Simple prompt",
            "description": "A prompt without arguments",
        },
        {
            "name": "test_prompt_with_arguments",
            "title": "Prompt with arguments",
            "description": "A prompt that substitutes two arguments",
            "arguments": [
                { "name": "arg1", "description": "First test argument", "required": true },
                { "name": "arg2", "description": "Second test argument", "required": true },
            ],
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt with an embedded resource",
            "description": "A prompt that embeds the resource it is given",
            "arguments": [
                { "name": "resourceUri", "description": "URI of the resource to embed", "required": true },
            ],
        },
        {
            "name": "test_prompt_with_image",
            "title": "Prompt with an image",
            "description": "A prompt carrying image content",
        },
    ]})
}

pub fn get(name: &str, arguments: &Value) -> Result<Value, RpcError> {
    let messages = match name {
        "test_simple_prompt" => vec![user(text("This is a simple prompt for testing."))],
        "test_prompt_with_arguments" => {
            let arg1 = argument(arguments, "arg1")?;
            let arg2 = argument(arguments, "arg2")?;
            vec![user(text(&format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            )))]
        }
        "test_prompt_with_embedded_resource" => {
            let uri = argument(arguments, "resourceUri")?;
            vec![
                user(json!({
                    "type": "resource",
                    "resource": {
                        "uri": uri,
                        "mimeType": "text/plain",
                        "text": "Embedded resource content for testing.",
                    },
                })),
                user(text("Please process the embedded resource above.")),
            ]
        }
        "test_prompt_with_image" => vec![
            user(json!({ "type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png" })),
            user(text("Please analyze the image above.")),
        ],
        _ => return Err(RpcError::invalid_params(format!("Unknown prompt: {name}"))),
    };
    Ok(json!({ "messages": messages }))
}

fn argument<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("missing required argument {name:?}")))
}

fn user(content: Value) -> Value {
    json!({ "role": "user", "content": content })
}

fn text(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_substituted() {
        let result = get(
            "test_prompt_with_arguments",
            &json!({"arg1": "hello", "arg2": "world"}),
        )
        .expect("prompt");
        assert_eq!(
            result["messages"][0]["content"]["text"],
            "Prompt with arguments: arg1='hello', arg2='world'"
        );
    }

    #[test]
    fn missing_arguments_are_invalid_params() {
        let error = get("test_prompt_with_arguments", &json!({"arg1": "x"})).expect_err("missing");
        assert_eq!(error.code, crate::jsonrpc::INVALID_PARAMS);
    }
}
