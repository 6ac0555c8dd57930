//! Inputs shared by Sluice's criterion benchmarks (see `benches/`).
//!
//! Every builder returns the exact bytes a client or an MCP server would put
//! on the wire, shaped like real traffic (stateless 2026-07-28 requests with
//! their `_meta`, `tools/call` results with text content, progress
//! notifications), so the benchmarks time the gateway's work on realistic
//! messages rather than on minimal JSON.

/// The revision the load scripts speak.
pub const REVISION: &str = "2026-07-28";

/// Nesting limit the gateway applies by default (`limits.max_json_depth`).
pub const MAX_DEPTH: u32 = 64;

/// Cap on inspected server messages (`limits.max_inspected_response_bytes`).
pub const MAX_INSPECTED: usize = 4 * 1024 * 1024;

/// The `_meta` a 2026-07-28 client sends with every request.
fn meta() -> String {
    format!(
        r#"{{"io.modelcontextprotocol/protocolVersion":"{REVISION}","io.modelcontextprotocol/clientCapabilities":{{"sampling":{{}},"elicitation":{{}}}},"io.modelcontextprotocol/clientInfo":{{"name":"sluice-bench","version":"0.1.0"}},"progressToken":"tok-1"}}"#
    )
}

/// A single `tools/call` whose `arguments.message` is `message_len` bytes.
pub fn tools_call(id: u64, tool: &str, message_len: usize) -> String {
    let message = "m".repeat(message_len);
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{message}","options":{{"verbose":false,"lang":"en"}}}},"_meta":{}}}}}"#,
        meta()
    )
}

/// A `tools/call` of about 1 KB, the typical agent request.
pub fn tools_call_1k() -> Vec<u8> {
    let base = tools_call(1, "echo", 0).len();
    tools_call(1, "echo", 1024usize.saturating_sub(base)).into_bytes()
}

/// A `tools/call` with a 64 KiB argument (a file, a document).
pub fn tools_call_64k() -> Vec<u8> {
    tools_call(2, "echo", 64 * 1024).into_bytes()
}

/// A `tools/list` with its `_meta`.
pub fn tools_list() -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{{"_meta":{}}}}}"#,
        meta()
    )
    .into_bytes()
}

/// A JSON-RPC batch of `n` small `tools/call` requests.
pub fn batch(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n as u64)
        .map(|i| tools_call(100 + i, "get-sum", 16))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// The JSON-RPC response to a `tools/call` with `text_len` bytes of text.
pub fn call_result(id: u64, text_len: usize) -> String {
    let text = "x".repeat(text_len);
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[{{"type":"text","text":"{text}"}}],"isError":false,"resultType":"complete"}}}}"#
    )
}

/// A `notifications/progress` message.
pub fn progress(step: u64, total: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"tok-1","progress":{step},"total":{total},"message":"step {step} of {total}"}}}}"#
    )
}

/// One SSE event carrying `data`, with an id, as MCP servers send them.
pub fn sse_event(id: u64, data: &str) -> String {
    format!("id: {id}\nevent: message\ndata: {data}\n\n")
}

/// A stream of `n` SSE events: a priming event, `n - 2` progress
/// notifications and a final ~2 KB `tools/call` result.
pub fn sse_stream(n: usize) -> Vec<u8> {
    assert!(
        n >= 2,
        "a stream has at least the priming event and the result"
    );
    let total = (n - 2) as u64;
    let mut out = String::from("id: 0\ndata: \n\n");
    for step in 1..=total {
        out.push_str(&sse_event(step, &progress(step, total)));
    }
    out.push_str(&sse_event(total + 1, &call_result(1, 2048)));
    out.into_bytes()
}

/// The `application/json` answer to [`tools_call_1k`]: a ~2 KB result.
pub fn json_call_response() -> Vec<u8> {
    call_result(1, 2048).into_bytes()
}

/// The `text/event-stream` answer to [`tools_call_1k`]: a priming event,
/// five progress notifications, then the ~2 KB result.
pub fn sse_call_response() -> Vec<u8> {
    sse_stream(7)
}

/// The first bytes of a legacy (2024-11-05) SSE stream: the `endpoint`
/// event the gateway rewrites, then a keep-alive comment.
pub fn legacy_endpoint_stream() -> Vec<u8> {
    b"event: endpoint\ndata: /v1/message?sessionId=3f6c2a8e-6a0b-4a55-9a2f-0c1d2e3f4a5b\n\n: keep-alive\n\n"
        .to_vec()
}

/// Split `bytes` into chunks of `size` bytes, as a socket might deliver them.
pub fn chunks(bytes: &[u8], size: usize) -> Vec<bytes::Bytes> {
    bytes
        .chunks(size)
        .map(bytes::Bytes::copy_from_slice)
        .collect()
}

/// A streamed chat completion as an OpenAI-compatible provider sends it
/// when asked for `include_usage`: `words` content chunks, each carrying
/// `"usage":null`, then the finish chunk, the usage chunk and `[DONE]`
/// (the shape of `sluice-demo --llm`). One entry per SSE event.
pub fn chat_stream_events(words: usize) -> Vec<String> {
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"choices\":[{{\"delta\":{delta},\"finish_reason\":{finish},\"index\":0}}],\"created\":1700000000,\"id\":\"chatcmpl-mock\",\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"usage\":null}}\n\n"
        )
    };
    let mut events = vec![chunk(r#"{"content":"","role":"assistant"}"#, "null")];
    events.extend((0..words).map(|_| chunk(r#"{"content":"word "}"#, "null")));
    events.push(chunk("{}", "\"stop\""));
    events.push(format!(
        "data: {{\"choices\":[],\"created\":1700000000,\"id\":\"chatcmpl-mock\",\"model\":\"m\",\"object\":\"chat.completion.chunk\",\"usage\":{{\"completion_tokens\":{words},\"completion_tokens_details\":{{\"reasoning_tokens\":0}},\"prompt_tokens\":2,\"prompt_tokens_details\":{{\"cached_tokens\":0}},\"total_tokens\":{}}}}}\n\n",
        words + 2
    ));
    events.push("data: [DONE]\n\n".to_string());
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_gateway::mcp::{classify, sse::SseParser, Method, Outcome, ResponseInspector};

    #[test]
    fn requests_classify_as_intended() {
        let small = tools_call_1k();
        assert!((1000..=1100).contains(&small.len()), "{}", small.len());
        let facts = classify(&small, MAX_DEPTH).expect("1 KB call");
        assert_eq!(facts.first().method, Method::ToolsCall);
        assert_eq!(facts.first().target.as_deref(), Some("echo"));
        assert!(facts.first().revision.is_some());

        let big = classify(&tools_call_64k(), MAX_DEPTH).expect("64 KiB call");
        assert!(big.first().arguments.as_ref().expect("arguments").len() > 64 * 1024);

        let list = classify(&tools_list(), MAX_DEPTH).expect("list");
        assert_eq!(list.first().method, Method::ToolsList);

        let b = classify(&batch(10), MAX_DEPTH).expect("batch");
        assert!(b.batch);
        assert_eq!(b.messages.len(), 10);
    }

    #[test]
    fn sse_stream_has_its_events() {
        let mut n = 0;
        let mut parser = SseParser::new(MAX_INSPECTED);
        for c in chunks(&sse_stream(20), 64) {
            parser.feed(&c, |_| n += 1);
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn responses_match_their_request() {
        let facts = classify(&tools_call_1k(), MAX_DEPTH).expect("call");
        let id = facts.first().id.clone().expect("id");
        for (ct, body) in [
            (&b"application/json"[..], json_call_response()),
            (&b"text/event-stream"[..], sse_call_response()),
        ] {
            let mut inspector = ResponseInspector::off();
            inspector.start(ct, Some(&facts), MAX_INSPECTED);
            inspector.feed(&body);
            inspector.finish();
            assert_eq!(inspector.outcome(&id), Some(Outcome::Ok));
            assert_eq!(inspector.unparsed, 0);
        }
    }

    #[test]
    fn endpoint_is_rewritten() {
        let mut rw = sluice_gateway::mcp::legacy::EndpointRewriter::new("/legacy", "/v1");
        let out = rw
            .process(Some(legacy_endpoint_stream().into()), false)
            .expect("output");
        let text = std::str::from_utf8(&out).expect("utf-8");
        assert!(text.starts_with("event: endpoint\ndata: /legacy/message?sessionId="));
    }
}
