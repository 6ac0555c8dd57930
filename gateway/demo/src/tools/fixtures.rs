//! The conformance suite's fixture tools that need nothing from the client.

use std::time::Duration;

use serde_json::{json, Value};

use super::{definition, text_result, u64_arg, Outcome};
use crate::assets::{RED_PIXEL_PNG, SILENT_WAV};
use crate::dispatch::RequestCtx;
use crate::session::LogLevel;

/// The suite expects log and progress notifications spread out in time.
const STEP: Duration = Duration::from_millis(50);

pub fn definitions() -> Vec<Value> {
    let none = json!({});
    vec![
        definition(
            "test_simple_text",
            "Returns simple text content",
            none.clone(),
            &[],
        ),
        definition(
            "test_image_content",
            "Returns a 1x1 PNG image",
            none.clone(),
            &[],
        ),
        definition(
            "test_audio_content",
            "Returns a tiny WAV clip",
            none.clone(),
            &[],
        ),
        definition(
            "test_embedded_resource",
            "Returns an embedded text resource",
            none.clone(),
            &[],
        ),
        definition(
            "test_multiple_content_types",
            "Returns text, image and resource content together",
            none.clone(),
            &[],
        ),
        definition(
            "test_tool_with_logging",
            "Sends three info log notifications while it runs",
            none.clone(),
            &[],
        ),
        definition(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 when given a progress token",
            none.clone(),
            &[],
        ),
        definition(
            "test_error_handling",
            "Always fails with isError: true",
            none,
            &[],
        ),
        definition(
            "test_reconnection",
            "Closes its SSE stream before answering; the answer comes on a GET with Last-Event-ID (SEP-1699)",
            json!({ "delay_ms": { "type": "integer", "minimum": 0, "maximum": MAX_RECONNECTION_DELAY_MS, "description": "Work time after the close (default 0)" } }),
            &[],
        ),
        json!({
            "name": "json_schema_2020_12_tool",
            "description": "Tool with JSON Schema 2020-12 features",
            "inputSchema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": {
                            "street": { "type": "string" },
                            "city": { "type": "string" },
                        },
                    },
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                },
                "additionalProperties": false,
            },
        }),
    ]
}

pub fn simple_text() -> Outcome {
    Ok(text_result("This is a simple text response for testing."))
}

pub fn image_content() -> Outcome {
    Ok(json!({ "content": [image()] }))
}

pub fn audio_content() -> Outcome {
    Ok(json!({ "content": [{ "type": "audio", "data": SILENT_WAV, "mimeType": "audio/wav" }] }))
}

pub fn embedded_resource() -> Outcome {
    Ok(json!({ "content": [{
        "type": "resource",
        "resource": {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        },
    }]}))
}

pub fn multiple_content_types() -> Outcome {
    let data = json!({ "test": "data", "value": 123 }).to_string();
    Ok(json!({ "content": [
        { "type": "text", "text": "Multiple content types test:" },
        image(),
        {
            "type": "resource",
            "resource": {
                "uri": "test://mixed-content-resource",
                "mimeType": "application/json",
                "text": data,
            },
        },
    ]}))
}

pub async fn with_logging(ctx: &RequestCtx) -> Outcome {
    let steps = [
        "Tool execution started",
        "Tool processing data",
        "Tool execution completed",
    ];
    for (i, step) in steps.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(STEP).await;
        }
        ctx.peer
            .log(LogLevel::Info, "test_tool_with_logging", json!(step))
            .await;
    }
    Ok(text_result("Tool with logging executed successfully"))
}

pub async fn with_progress(ctx: &RequestCtx) -> Outcome {
    for (i, progress) in [0, 50, 100].into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(STEP).await;
        }
        ctx.peer
            .progress(progress, 100, &format!("{progress}% done"))
            .await;
    }
    Ok(text_result("Tool with progress executed successfully"))
}

pub fn error_handling() -> Outcome {
    Err("This tool intentionally returns an error for testing".to_owned())
}

/// How soon the client should reconnect after the stream is closed.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
const MAX_RECONNECTION_DELAY_MS: u64 = 60_000;

pub async fn reconnection(ctx: &RequestCtx, args: &Value) -> Outcome {
    let delay = u64_arg(args, "delay_ms", Some(0))?;
    if delay > MAX_RECONNECTION_DELAY_MS {
        return Err(format!(
            "delay_ms must be at most {MAX_RECONNECTION_DELAY_MS}"
        ));
    }
    // Without a resumable stream (JSON mode, old revisions) there is nothing
    // to close, and the answer simply comes back as usual.
    if ctx.peer.close_stream(RECONNECT_AFTER).await {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    Ok(text_result("Reconnection test completed successfully"))
}

pub fn json_schema_2020_12(args: &Value) -> Outcome {
    Ok(text_result(format!("Received: {args}")))
}

fn image() -> Value {
    json!({ "type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png" })
}
