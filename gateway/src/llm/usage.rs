//! Token usage read from model responses as they stream: JSON bodies at
//! their end, SSE streams event by event (OpenAI chat and completions
//! chunks, Responses API events, Anthropic message events), never holding
//! the stream back. When the gateway added `include_usage` itself, the extra
//! usage chunk (and the `"usage":null` it makes every chunk carry) is cut
//! out, so the client receives the upstream's bytes for what it asked.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde_json::Value;
use sluice_config::UsageCounts;

use super::request::Api;

pub struct UsageWatch {
    api: Api,
    sse: bool,
    strip: bool,
    /// SSE: the incomplete event so far; JSON: the body so far (bounded).
    buf: BytesMut,
    max_json: usize,
    pub usage: UsageCounts,
    pub saw_usage: bool,
    pub first_token_at: Option<Instant>,
    /// The answer's text, when audit asks for it (bounded).
    pub text: Option<String>,
}

/// Most answer text kept for audit.
const MAX_TEXT: usize = 64 * 1024;

impl UsageWatch {
    pub fn new(api: Api, sse: bool, strip: bool, max_json: usize) -> Self {
        Self {
            api,
            sse,
            strip: strip && sse,
            buf: BytesMut::new(),
            max_json,
            usage: UsageCounts::default(),
            saw_usage: false,
            first_token_at: None,
            text: None,
        }
    }

    /// Also keep the answer's text (for audit events that record it).
    pub fn capture_text(mut self) -> Self {
        self.text = Some(String::new());
        self
    }

    fn push_text(&mut self, v: &Value, pointer: &str) {
        if let (Some(t), Some(s)) = (
            self.text.as_mut(),
            v.pointer(pointer).and_then(Value::as_str),
        ) {
            if t.len() + s.len() <= MAX_TEXT {
                t.push_str(s);
            }
        }
    }

    /// Watch one chunk; returns what goes to the client now.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if !self.sse {
            if self.buf.len() + chunk.len() <= self.max_json {
                self.buf.extend_from_slice(&chunk);
            }
            return chunk;
        }
        self.buf.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.buf) {
            let event = self.buf.split_to(end).freeze();
            match self.event(&event) {
                Verdict::Keep if self.strip => strip_null_usage(&mut out, &event),
                Verdict::Keep | Verdict::Drop => {}
                Verdict::Replace(b) => out.extend_from_slice(&b),
            }
        }
        if self.strip {
            out.freeze()
        } else {
            chunk
        }
    }

    /// The stream ended: what is still held, and the JSON body's usage.
    pub fn finish(&mut self) -> Bytes {
        if !self.sse {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
                self.read_usage(&v);
                let pointer = match self.api {
                    Api::ChatCompletions => "/choices/0/message/content",
                    Api::Completions => "/choices/0/text",
                    Api::Responses => "/output/0/content/0/text",
                    Api::Messages => "/content/0/text",
                    Api::Embeddings | Api::Models => "",
                };
                self.push_text(&v, pointer);
            }
            self.buf.clear();
            return Bytes::new();
        }
        let rest = self.buf.split().freeze();
        if self.strip {
            rest
        } else {
            Bytes::new()
        }
    }

    /// Account one complete SSE event and say what the client gets of it:
    /// when the gateway asked for usage, the usage the client did not ask
    /// for is taken out (the whole chunk if it carries nothing else).
    fn event(&mut self, event: &[u8]) -> Verdict {
        let Some(data) = data_of(event) else {
            return Verdict::Keep;
        };
        if self.first_token_at.is_none() && memmem::find(data, b"delta").is_some() {
            self.first_token_at = Some(Instant::now());
        }
        if self.text.is_some() {
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                let pointer = match self.api {
                    Api::ChatCompletions => "/choices/0/delta/content",
                    Api::Completions => "/choices/0/text",
                    Api::Responses => "/delta",
                    Api::Messages => "/delta/text",
                    Api::Embeddings | Api::Models => "",
                };
                self.push_text(&v, pointer);
            }
        }
        if !has_usage_object(data) {
            return Verdict::Keep;
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(data) else {
            return Verdict::Keep;
        };
        self.read_usage(&v);
        if !self.strip {
            return Verdict::Keep;
        }
        let usage_only = v
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(|c| c.iter().all(empty_choice));
        if usage_only {
            return Verdict::Drop;
        }
        // Usage riding on a chunk with content (some gateways do this):
        // the chunk stays, without the usage.
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        Verdict::Replace(Bytes::from(format!("data: {v}\n\n")))
    }

    fn read_usage(&mut self, v: &Value) {
        let n = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_u64);
        match self.api {
            Api::Messages => {
                // message_start carries the input, message_delta the output.
                let u = v
                    .pointer("/message/usage")
                    .or_else(|| v.get("usage"))
                    .unwrap_or(&Value::Null);
                if let Some(i) = n(u, "/input_tokens") {
                    self.usage.prompt = i + n(u, "/cache_read_input_tokens").unwrap_or(0);
                    self.usage.cached = n(u, "/cache_read_input_tokens").unwrap_or(0);
                    self.saw_usage = true;
                }
                if let Some(o) = n(u, "/output_tokens") {
                    self.usage.completion = o;
                    self.saw_usage = true;
                }
            }
            Api::Responses => {
                let Some(u) = v.pointer("/response/usage").or_else(|| v.get("usage")) else {
                    return;
                };
                self.usage.prompt = n(u, "/input_tokens").unwrap_or(0);
                self.usage.completion = n(u, "/output_tokens").unwrap_or(0);
                self.usage.cached = n(u, "/input_tokens_details/cached_tokens").unwrap_or(0);
                self.usage.reasoning = n(u, "/output_tokens_details/reasoning_tokens").unwrap_or(0);
                self.saw_usage = true;
            }
            _ => {
                let Some(u) = v.get("usage").filter(|u| u.is_object()) else {
                    return;
                };
                self.usage.prompt = n(u, "/prompt_tokens").unwrap_or(0);
                self.usage.completion = n(u, "/completion_tokens").unwrap_or(0);
                self.usage.cached = n(u, "/prompt_tokens_details/cached_tokens").unwrap_or(0);
                self.usage.reasoning =
                    n(u, "/completion_tokens_details/reasoning_tokens").unwrap_or(0);
                self.saw_usage = true;
            }
        }
    }
}

enum Verdict {
    Keep,
    Drop,
    Replace(Bytes),
}

/// A choice that says nothing: empty delta (or text), no finish reason.
fn empty_choice(c: &Value) -> bool {
    c.get("delta")
        .is_none_or(|d| d.as_object().is_some_and(|o| o.is_empty()))
        && c.get("text").is_none_or(|t| t.as_str() == Some(""))
        && c.get("finish_reason").is_none_or(Value::is_null)
}

/// End of the first complete event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memmem::find(buf, b"\n\n").map(|p| p + 2);
    let crlf = memmem::find(buf, b"\r\n\r\n").map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The payload of the event's (first) `data:` line.
fn data_of(event: &[u8]) -> Option<&[u8]> {
    event.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let d = line.strip_prefix(b"data:")?;
        Some(d.strip_prefix(b" ").unwrap_or(d))
    })
}

/// Does the JSON text have `"usage"` followed by an object (not null)?
fn has_usage_object(data: &[u8]) -> bool {
    memmem::find_iter(data, b"\"usage\"").any(|p| {
        data[p + 7..]
            .iter()
            .find(|b| !b.is_ascii_whitespace() && **b != b':')
            == Some(&b'{')
    })
}

/// Copy `event` into `out` without the `,"usage":null` that `include_usage`
/// adds to every chunk.
fn strip_null_usage(out: &mut BytesMut, event: &[u8]) {
    const NULL: &[u8] = b",\"usage\":null";
    let mut rest = event;
    while let Some(p) = memmem::find(rest, NULL) {
        out.extend_from_slice(&rest[..p]);
        rest = &rest[p + NULL.len()..];
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    const CHUNK_NULL: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(w: &mut UsageWatch, stream: &str, split: usize) -> String {
        let b = stream.as_bytes();
        let mut out = Vec::new();
        for piece in [&b[..split], &b[split..]] {
            out.extend_from_slice(&w.feed(Bytes::copy_from_slice(piece)));
        }
        out.extend_from_slice(&w.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_client_that_asked_gets_every_byte_and_we_read_usage() {
        let stream = format!("{CHUNK_NULL}{USAGE}{DONE}");
        for split in 0..stream.len() {
            let mut w = UsageWatch::new(Api::ChatCompletions, true, false, 1 << 20);
            assert_eq!(run(&mut w, &stream, split), stream);
            assert_eq!(w.usage.prompt, 12);
            assert_eq!(w.usage.completion, 3);
            assert_eq!(w.usage.cached, 4);
        }
    }

    #[test]
    fn the_injected_usage_chunk_is_cut_out_at_any_chunk_boundary() {
        let upstream = format!("{CHUNK_NULL}{CHUNK_NULL}{USAGE}{DONE}");
        let client_would_get = format!("{CHUNK}{CHUNK}{DONE}");
        for split in 0..upstream.len() {
            let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
            assert_eq!(
                run(&mut w, &upstream, split),
                client_would_get,
                "split at {split}"
            );
            assert_eq!(w.usage.total(), 15);
        }
    }

    #[test]
    fn usage_on_an_empty_choice_is_dropped_too() {
        // LiteLLM's shape: the usage rides on a chunk with an empty delta.
        let litellm = "data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":10}}\n\n";
        let upstream = format!("{CHUNK}{litellm}{DONE}");
        let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
        assert_eq!(run(&mut w, &upstream, 7), format!("{CHUNK}{DONE}"));
        assert_eq!(w.usage.total(), 13);
        // Usage on a chunk that carries content: the content stays.
        let mixed = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n";
        let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
        let out = run(&mut w, mixed, 3);
        assert!(
            out.contains("\"content\":\"x\"") && !out.contains("usage"),
            "{out}"
        );
    }

    #[test]
    fn json_bodies_anthropic_and_responses_streams() {
        let mut w = UsageWatch::new(Api::ChatCompletions, false, false, 1 << 20);
        let body = r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}"#;
        assert_eq!(run(&mut w, body, 5), body);
        assert_eq!(w.usage.total(), 9);

        let mut a = UsageWatch::new(Api::Messages, true, false, 1 << 20);
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n\
                 event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n";
        run(&mut a, s, 40);
        assert_eq!((a.usage.prompt, a.usage.completion), (20, 9));

        let mut r = UsageWatch::new(Api::Responses, true, false, 1 << 20);
        let s = "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":6}}}\n\n";
        run(&mut r, s, 10);
        assert_eq!(r.usage.total(), 11);
    }
}
