//! Tools that need the client's help (sampling, elicitation), in both eras.
//!
//! With a session the server sends `sampling/createMessage` or
//! `elicitation/create` on the request's stream and waits for the client
//! to POST the response back. A stateless 2026-07-28 request has no such
//! channel: the tool answers `resultType: "input_required"` with the
//! request it needs, and the client retries with `inputResponses`.

use base64::Engine;
use serde_json::{json, Value};

use super::{definition, str_arg, text_result, Outcome};
use crate::dispatch::RequestCtx;
use crate::protocol::META_CLIENT_CAPABILITIES;

pub fn definitions() -> Vec<Value> {
    vec![
        definition(
            "test_sampling",
            "Asks the client's LLM to complete a prompt (sampling/createMessage)",
            json!({ "prompt": { "type": "string", "description": "The prompt to send to the LLM" } }),
            &["prompt"],
        ),
        definition(
            "test_elicitation",
            "Asks the user for a username and an email (elicitation/create)",
            json!({ "message": { "type": "string", "description": "The message to show the user" } }),
            &["message"],
        ),
        definition(
            "test_elicitation_sep1034_defaults",
            "Elicits fields of every primitive type, each with a default (SEP-1034)",
            json!({}),
            &[],
        ),
        definition(
            "test_elicitation_sep1330_enums",
            "Elicits the five enum schema variants (SEP-1330)",
            json!({}),
            &[],
        ),
    ]
}

pub async fn sampling(ctx: &RequestCtx, params: &Value, args: &Value) -> Outcome {
    let prompt = str_arg(args, "prompt")?;
    let request = json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100,
    });
    let result = match ask(ctx, params, "sampling", "sampling/createMessage", request).await? {
        Answer::Given(result) => result,
        Answer::InputRequired(result) => return Ok(result),
    };
    Ok(text_result(format!(
        "LLM response: {}",
        sampled_text(&result)
    )))
}

pub async fn elicitation(ctx: &RequestCtx, params: &Value, args: &Value) -> Outcome {
    let message = str_arg(args, "message")?;
    let request = json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" },
            },
            "required": ["username", "email"],
        },
    });
    let result = match ask(ctx, params, "elicitation", "elicitation/create", request).await? {
        Answer::Given(result) => result,
        Answer::InputRequired(result) => return Ok(result),
    };
    Ok(text_result(format!("User response: {}", describe(&result))))
}

pub async fn elicitation_defaults(ctx: &RequestCtx, params: &Value) -> Outcome {
    let request = json!({
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User age", "default": 30 },
                "score": { "type": "number", "description": "User score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": { "type": "boolean", "description": "Verification status", "default": true },
            },
            "required": [],
        },
    });
    completed(ctx, params, request).await
}

pub async fn elicitation_enums(ctx: &RequestCtx, params: &Value) -> Outcome {
    let request = json!({
        "message": "Please pick from each kind of list",
        "requestedSchema": {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Untitled single-select",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Titled single-select",
                    "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" },
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Legacy titled enum",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Untitled multi-select",
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Titled multi-select",
                    "items": {
                        "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" },
                        ],
                    },
                },
            },
            "required": [],
        },
    });
    completed(ctx, params, request).await
}

/// The SEP fixtures share their reply format.
async fn completed(ctx: &RequestCtx, params: &Value, request: Value) -> Outcome {
    match ask(ctx, params, "elicitation", "elicitation/create", request).await? {
        Answer::Given(result) => Ok(text_result(format!(
            "Elicitation completed: {}",
            describe(&result)
        ))),
        Answer::InputRequired(result) => Ok(result),
    }
}

enum Answer {
    /// The client's result for the request.
    Given(Value),
    /// Stateless: the complete `input_required` result to return instead.
    InputRequired(Value),
}

/// Gets the client's answer to `method`; `capability` is the client
/// capability it needs and doubles as the MRTR input key.
async fn ask(
    ctx: &RequestCtx,
    params: &Value,
    capability: &str,
    method: &str,
    request: Value,
) -> Result<Answer, String> {
    let Some(session) = &ctx.session else {
        return stateless_ask(params, capability, method, request);
    };
    if !session.client_supports(capability) {
        return Err(format!(
            "the client did not declare the {capability} capability"
        ));
    }
    ctx.peer
        .request(method, request)
        .await
        .map(Answer::Given)
        .map_err(|error| format!("{method} failed: {error}"))
}

fn stateless_ask(
    params: &Value,
    capability: &str,
    method: &str,
    request: Value,
) -> Result<Answer, String> {
    if let Some(response) = params
        .get("inputResponses")
        .and_then(|responses| responses.get(capability))
    {
        // Accept the bare result or a JSON-RPC-style `{ "result": … }` wrapper.
        let result = response
            .get("result")
            .filter(|r| r.is_object())
            .unwrap_or(response);
        return Ok(Answer::Given(result.clone()));
    }
    let declared = params
        .get("_meta")
        .and_then(|meta| meta.get(META_CLIENT_CAPABILITIES));
    if declared.is_some_and(|caps| caps.get(capability).is_none()) {
        return Err(format!(
            "the client did not declare the {capability} capability"
        ));
    }
    // Opaque to the client; the retry carries everything we need in
    // `inputResponses`, so this only names what was asked.
    let state = json!({ "method": method, "key": capability }).to_string();
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(state);
    Ok(Answer::InputRequired(json!({
        "resultType": "input_required",
        "inputRequests": { capability: { "method": method, "params": request } },
        "requestState": state,
    })))
}

/// The text of a sampling result, whose `content` is one block or (since 2025-11-25) a list.
fn sampled_text(result: &Value) -> String {
    let content = result.get("content").unwrap_or(&Value::Null);
    let block = match content {
        Value::Array(blocks) => blocks
            .iter()
            .find(|b| b["type"] == "text")
            .unwrap_or(&Value::Null),
        block => block,
    };
    match block.get("text").and_then(Value::as_str) {
        Some(text) => text.to_owned(),
        None => content.to_string(),
    }
}

fn describe(result: &Value) -> String {
    let action = result
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let content = result.get("content").cloned().unwrap_or(json!({}));
    format!("action={action}, content={content}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stateless_ask_requests_input_then_uses_the_answer() {
        let asked = stateless_ask(&json!({}), "sampling", "sampling/createMessage", json!({}))
            .expect("ask");
        let Answer::InputRequired(result) = asked else {
            panic!("expected input_required");
        };
        assert_eq!(result["resultType"], "input_required");
        assert_eq!(
            result["inputRequests"]["sampling"]["method"],
            "sampling/createMessage"
        );
        assert!(result["requestState"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));

        let retry = json!({ "inputResponses": { "sampling": { "content": { "type": "text", "text": "hi" } } } });
        let answered =
            stateless_ask(&retry, "sampling", "sampling/createMessage", json!({})).expect("ask");
        let Answer::Given(result) = answered else {
            panic!("expected the answer");
        };
        assert_eq!(sampled_text(&result), "hi");
    }

    #[test]
    fn stateless_ask_respects_declared_capabilities() {
        let params = json!({ "_meta": { META_CLIENT_CAPABILITIES: { "sampling": {} } } });
        assert!(stateless_ask(&params, "elicitation", "elicitation/create", json!({})).is_err());
    }

    #[test]
    fn sampled_text_reads_both_content_shapes() {
        assert_eq!(
            sampled_text(&json!({"content": {"type": "text", "text": "a"}})),
            "a"
        );
        assert_eq!(
            sampled_text(&json!({"content": [{"type": "image"}, {"type": "text", "text": "b"}]})),
            "b"
        );
    }
}
