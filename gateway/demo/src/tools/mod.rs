//! The tool catalogue: what `tools/list` advertises and which function serves each `tools/call`.

mod fixtures;
mod harness;
mod interactive;

use serde_json::{json, Value};

use crate::dispatch::RequestCtx;
use crate::jsonrpc::RpcError;

/// A tool's own outcome: `Err` is an execution failure the model may
/// correct (`isError: true`), never a protocol error.
type Outcome = Result<Value, String>;

pub fn list(extra_tools: usize) -> Value {
    let mut tools = fixtures::definitions();
    tools.extend(interactive::definitions());
    tools.extend(harness::definitions());
    tools.extend(harness::extra_definitions(extra_tools));
    Value::Array(tools)
}

pub async fn call(ctx: &RequestCtx, params: &Value) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params("missing tool name"))?;
    let no_arguments = json!({});
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &no_arguments,
        Some(args @ Value::Object(_)) => args,
        Some(_) => return Err(RpcError::invalid_params("arguments must be an object")),
    };
    let outcome = match name {
        "test_simple_text" => fixtures::simple_text(),
        "test_image_content" => fixtures::image_content(),
        "test_audio_content" => fixtures::audio_content(),
        "test_embedded_resource" => fixtures::embedded_resource(),
        "test_multiple_content_types" => fixtures::multiple_content_types(),
        "test_tool_with_logging" => fixtures::with_logging(ctx).await,
        "test_tool_with_progress" => fixtures::with_progress(ctx).await,
        "test_error_handling" => fixtures::error_handling(),
        "test_reconnection" => fixtures::reconnection(ctx, args).await,
        "json_schema_2020_12_tool" => fixtures::json_schema_2020_12(args),
        "test_sampling" => interactive::sampling(ctx, params, args).await,
        "test_elicitation" => interactive::elicitation(ctx, params, args).await,
        "test_elicitation_sep1034_defaults" => interactive::elicitation_defaults(ctx, params).await,
        "test_elicitation_sep1330_enums" => interactive::elicitation_enums(ctx, params).await,
        "echo" => harness::echo(args),
        "get-sum" => harness::get_sum(args),
        "payload" => harness::payload(args),
        "ticker" => harness::ticker(ctx, args).await,
        "big-echo" => harness::big_echo(args),
        "slow" => harness::slow(args).await,
        "touch-resource" => harness::touch_resource(ctx, args).await,
        _ if harness::is_extra(name, ctx.state.opts.extra_tools) => harness::echo(args),
        // The spec's own example answers an unknown tool with -32602.
        _ => return Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
    };
    Ok(outcome.unwrap_or_else(|message| error_result(&message)))
}

pub fn text_result(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }] })
}

pub fn error_result(message: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

/// A tool definition with an object schema over `properties`.
fn definition(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": { "type": "object", "properties": properties, "required": required },
    })
}

fn str_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, String> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {key:?} must be a string"))
}

fn u64_arg(args: &Value, key: &str, default: Option<u64>) -> Result<u64, String> {
    match (args.get(key), default) {
        (None | Some(Value::Null), Some(default)) => Ok(default),
        (Some(value), _) => value
            .as_u64()
            .ok_or_else(|| format!("argument {key:?} must be a non-negative integer")),
        (None, None) => Err(format!("argument {key:?} is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_tool_is_listed_once_with_a_schema() {
        let tools = list(3);
        let tools = tools.as_array().expect("array");
        let mut names = HashSet::new();
        for tool in tools {
            let name = tool["name"].as_str().expect("name");
            assert!(names.insert(name.to_owned()), "duplicate {name}");
            assert!(
                tool["description"].is_string(),
                "{name} lacks a description"
            );
            assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
            // 2025-11-25 limits tool names to 1–128 of [A-Za-z0-9_.-].
            assert!(name.len() <= 128);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        }
        // Every name `call` dispatches on (bar the bulk set) must be listed.
        let called = include_str!("mod.rs")
            .lines()
            .filter_map(|line| line.trim().strip_prefix('"')?.split_once("\" =>"))
            .map(|(name, _)| name)
            .collect::<Vec<_>>();
        assert!(called.len() > 20, "found only {called:?}");
        for name in called {
            assert!(names.contains(name), "{name} is callable but not listed");
        }
        assert!(names.contains("tool_002"));
        assert!(!names.contains("tool_003"));
    }

    #[test]
    fn argument_helpers_explain_bad_input() {
        let args = json!({"n": 3, "s": "x", "neg": -1});
        assert_eq!(u64_arg(&args, "n", None), Ok(3));
        assert_eq!(u64_arg(&args, "missing", Some(5)), Ok(5));
        assert!(u64_arg(&args, "neg", None).is_err());
        assert!(u64_arg(&args, "missing", None).is_err());
        assert_eq!(str_arg(&args, "s"), Ok("x"));
        assert!(str_arg(&args, "n").is_err());
    }
}
