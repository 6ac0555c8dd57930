//! Sluice's own tools for tests and load runs (echo, sums, payloads, streams, delays) and the bulk `tool_NNN` set.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Number, Value};

use super::{definition, str_arg, text_result, u64_arg, Outcome};
use crate::catalog::resources::WATCHED;
use crate::dispatch::RequestCtx;
use crate::jsonrpc;
use crate::session::LogLevel;

/// Caps keep one call from exhausting the machine a load test runs on.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
const MAX_SLEEP_MS: u64 = 10 * 60 * 1000;
const MAX_TICKS: u64 = 10_000;

pub fn definitions() -> Vec<Value> {
    vec![
        definition(
            "echo",
            "Returns the message it is given",
            json!({ "message": { "type": "string", "description": "Text to echo back" } }),
            &["message"],
        ),
        definition(
            "get-sum",
            "Adds two numbers",
            json!({
                "a": { "type": "number", "description": "First addend" },
                "b": { "type": "number", "description": "Second addend" },
            }),
            &["a", "b"],
        ),
        definition(
            "payload",
            "Returns a text content of exactly `size` bytes",
            json!({ "size": { "type": "integer", "minimum": 0, "maximum": MAX_PAYLOAD, "description": "Bytes of text to return" } }),
            &["size"],
        ),
        definition(
            "ticker",
            "Streams `count` progress notifications (or log messages without a progress token), one per interval, then answers \"done N\"",
            json!({ "count": { "type": "integer", "minimum": 0, "maximum": MAX_TICKS, "default": 3, "description": "How many events to send" } }),
            &[],
        ),
        definition(
            "big-echo",
            "Reports the byte length, first and last 16 characters of `data`, to check large arguments arrive intact",
            json!({ "data": { "type": "string", "description": "Any text, typically over 64 KiB" } }),
            &["data"],
        ),
        definition(
            "slow",
            "Sleeps `ms` milliseconds, then answers \"slept\"",
            json!({ "ms": { "type": "integer", "minimum": 0, "maximum": MAX_SLEEP_MS, "description": "Milliseconds to sleep" } }),
            &["ms"],
        ),
        definition(
            "touch-resource",
            "Marks a resource as changed and sends notifications/resources/updated to its subscribers",
            json!({ "uri": { "type": "string", "description": "Resource URI, e.g. test://watched-resource" } }),
            &["uri"],
        ),
    ]
}

/// Zero-padded so names sort in creation order: at least three digits.
fn extra_name(index: usize, count: usize) -> String {
    let width = count.saturating_sub(1).to_string().len().max(3);
    format!("tool_{index:0width$}")
}

pub fn extra_definitions(count: usize) -> Vec<Value> {
    (0..count)
        .map(|index| {
            definition(
                &extra_name(index, count),
                "Bulk catalogue entry for list benchmarks; echoes `message`",
                json!({ "message": { "type": "string", "description": "Text to echo back" } }),
                &["message"],
            )
        })
        .collect()
}

pub fn is_extra(name: &str, count: usize) -> bool {
    name.strip_prefix("tool_")
        .and_then(|digits| digits.parse::<usize>().ok())
        .is_some_and(|index| index < count && extra_name(index, count) == name)
}

pub fn echo(args: &Value) -> Outcome {
    Ok(text_result(str_arg(args, "message")?))
}

pub fn get_sum(args: &Value) -> Outcome {
    let number = |key: &str| match args.get(key) {
        Some(Value::Number(n)) => Ok(n.clone()),
        _ => Err(format!("argument {key:?} must be a number")),
    };
    let (a, b) = (number("a")?, number("b")?);
    // Integers stay exact; anything else is added as f64.
    let sum = match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => a.checked_add(b).map(Number::from),
        _ => None,
    };
    let sum = match sum {
        Some(sum) => sum.to_string(),
        None => {
            let total = a.as_f64().unwrap_or(f64::NAN) + b.as_f64().unwrap_or(f64::NAN);
            total.to_string()
        }
    };
    Ok(text_result(sum))
}

pub fn payload(args: &Value) -> Outcome {
    let size = u64_arg(args, "size", None)?;
    if size > MAX_PAYLOAD {
        return Err(format!("size must be at most {MAX_PAYLOAD}"));
    }
    let size = usize::try_from(size).map_err(|_| "size does not fit in memory".to_owned())?;
    Ok(text_result("x".repeat(size)))
}

pub async fn ticker(ctx: &RequestCtx, args: &Value) -> Outcome {
    let count = u64_arg(args, "count", Some(3))?;
    if count > MAX_TICKS {
        return Err(format!("count must be at most {MAX_TICKS}"));
    }
    // The ticker exists to exercise streamed responses; a JSON response has
    // none, so it answers at once.
    if ctx.peer.has_stream() {
        let interval = Duration::from_millis(ctx.state.opts.sse_interval_ms);
        for tick in 1..=count {
            let message = format!("tick {tick}/{count}");
            if ctx.peer.has_progress_token() {
                ctx.peer.progress(tick, count, &message).await;
            } else {
                ctx.peer.log(LogLevel::Info, "ticker", json!(message)).await;
            }
            // Also wait after the last event, so the result always arrives
            // an interval later: a buffering intermediary shows up as events
            // that arrive together with the result.
            tokio::time::sleep(interval).await;
        }
    }
    Ok(text_result(format!("done {count}")))
}

pub fn big_echo(args: &Value) -> Outcome {
    let data = str_arg(args, "data")?;
    let chars: Vec<char> = data.chars().collect();
    let head: String = chars.iter().take(16).collect();
    let tail: String = chars[chars.len().saturating_sub(16)..].iter().collect();
    Ok(text_result(format!(
        "len={} head={head} tail={tail}",
        data.len()
    )))
}

pub async fn slow(args: &Value) -> Outcome {
    let ms = u64_arg(args, "ms", None)?;
    if ms > MAX_SLEEP_MS {
        return Err(format!("ms must be at most {MAX_SLEEP_MS}"));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(text_result("slept"))
}

pub async fn touch_resource(ctx: &RequestCtx, args: &Value) -> Outcome {
    let uri = str_arg(args, "uri")?;
    if uri == WATCHED {
        ctx.state.watched_version.fetch_add(1, Ordering::Relaxed);
    }
    let update = jsonrpc::notification("notifications/resources/updated", json!({ "uri": uri }));
    let mut notified = 0;
    for session in ctx.state.sessions.all() {
        if !session.is_subscribed(uri) {
            continue;
        }
        // Unsolicited messages belong on the session's standalone stream.
        if let Some(stream) = session.standalone() {
            if stream.send(&update).await {
                notified += 1;
            }
        }
    }
    Ok(text_result(format!("notified {notified} subscriber(s)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(outcome: Outcome) -> String {
        let result = outcome.expect("success");
        result["content"][0]["text"]
            .as_str()
            .expect("text")
            .to_owned()
    }

    #[test]
    fn sums_integers_exactly_and_floats_naturally() {
        assert_eq!(text(get_sum(&json!({"a": 2, "b": 3}))), "5");
        assert_eq!(text(get_sum(&json!({"a": 1.5, "b": 1}))), "2.5");
        assert!(get_sum(&json!({"a": "2", "b": 3})).is_err());
    }

    #[test]
    fn payload_has_the_requested_size() {
        assert_eq!(text(payload(&json!({"size": 2048}))).len(), 2048);
        assert!(payload(&json!({"size": MAX_PAYLOAD + 1})).is_err());
    }

    #[test]
    fn big_echo_reports_length_head_and_tail() {
        let data = format!("{}{}{}", "a".repeat(16), "m".repeat(70_000), "z".repeat(16));
        assert_eq!(
            text(big_echo(&json!({ "data": data }))),
            format!("len=70032 head={} tail={}", "a".repeat(16), "z".repeat(16))
        );
        assert_eq!(text(big_echo(&json!({"data": "é"}))), "len=2 head=é tail=é");
    }

    #[test]
    fn extra_tools_are_numbered_from_zero() {
        assert_eq!(extra_name(0, 200), "tool_000");
        assert_eq!(extra_name(199, 200), "tool_199");
        assert_eq!(extra_name(5, 2000), "tool_0005");
        assert!(is_extra("tool_199", 200));
        assert!(!is_extra("tool_200", 200));
        assert!(!is_extra("tool_1", 200));
    }
}
