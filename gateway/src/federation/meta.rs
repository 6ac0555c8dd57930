//! The trace context in a request's `params._meta` (`traceparent`,
//! `tracestate`), where MCP carries it beside the HTTP headers: written
//! into the request as the gateway forwards it, every other byte as sent.

use super::call::{push_string, RawMap};

/// `body` (one JSON-RPC request) with `params._meta.traceparent` set to
/// `traceparent` and `tracestate` to `tracestate` (left out when `None`),
/// whatever the caller had there removed, the rest of `_meta`, `params` and
/// the body as sent. `None`: no `params` object, or a body that cannot be
/// read one way (a key twice) — it is then forwarded unchanged.
pub fn with_trace_context(
    body: &[u8],
    traceparent: &str,
    tracestate: Option<&str>,
) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let params = RawMap::read(text)?.get("params")?;
    if !params.starts_with('{') {
        return None;
    }
    let members = RawMap::read(params)?;
    // `params` is a slice of `text`: where it starts in the body.
    let at = params.as_ptr() as usize - text.as_ptr() as usize;
    let write_meta = |out: &mut Vec<u8>, old: Option<&str>| -> Option<()> {
        out.extend_from_slice(br#"{"traceparent":"#);
        push_string(out, traceparent);
        if let Some(s) = tracestate {
            out.extend_from_slice(br#","tracestate":"#);
            push_string(out, s);
        }
        if let Some(old) = old {
            let old = RawMap::read(old)?;
            for (k, v) in old
                .0
                .iter()
                .filter(|(k, _)| k != "traceparent" && k != "tracestate")
            {
                out.push(b',');
                push_string(out, k);
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
            }
        }
        out.push(b'}');
        Some(())
    };
    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(&body[..at]);
    out.push(b'{');
    let mut meta_written = false;
    for (n, (k, v)) in members.0.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_string(&mut out, k);
        out.push(b':');
        if k == "_meta" {
            if !v.starts_with('{') {
                return None;
            }
            write_meta(&mut out, Some(v))?;
            meta_written = true;
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
    if !meta_written {
        if !members.0.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(br#""_meta":"#);
        write_meta(&mut out, None)?;
    }
    out.push(b'}');
    out.extend_from_slice(&body[at + params.len()..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn set(body: &str, state: Option<&str>) -> Option<Value> {
        with_trace_context(body.as_bytes(), TP, state)
            .map(|b| serde_json::from_slice(&b).expect("valid JSON"))
    }

    #[test]
    fn the_context_is_added_to_meta_and_nothing_else_changes() {
        let v = set(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1, 2]}}}"#,
            Some("v=1"),
        )
        .expect("rewritten");
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2]},"_meta":{"traceparent":TP,"tracestate":"v=1"}}})
        );
        let empty = set(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#,
            None,
        )
        .expect("rewritten");
        assert_eq!(empty["params"], json!({"_meta": {"traceparent": TP}}));
    }

    #[test]
    fn the_callers_own_context_in_meta_is_replaced_the_rest_kept() {
        let v = set(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"_meta":{"progressToken":7,"traceparent":"00-aaaa","tracestate":"evil=1"},"name":"x"}}"#,
            None,
        )
        .expect("rewritten");
        assert_eq!(
            v["params"],
            json!({"_meta":{"traceparent":TP,"progressToken":7},"name":"x"})
        );
    }

    #[test]
    fn what_cannot_be_read_one_way_is_not_rewritten() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"traceparent":"a","traceparent":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":5}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2}}"#,
        ] {
            assert_eq!(set(body, None), None, "{body}");
        }
    }
}
