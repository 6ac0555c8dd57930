//! Token usage read from model responses as they stream: JSON bodies at
//! their end, SSE streams event by event (OpenAI chat and completions
//! chunks, Responses API events, Anthropic message events), never holding
//! the stream back. When the gateway added `include_usage` itself, the extra
//! usage chunk (and the `"usage":null` it makes every chunk carry) is cut
//! out, so the client receives the upstream's bytes for what it asked.

use std::sync::LazyLock;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;
use serde_json::Value;
use sluice_config::UsageCounts;

use super::request::Api;
use crate::mcp::skim;

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
    /// An event outgrew the inspection limit: the rest passes unwatched.
    overflow: bool,
    /// The answer's text, when audit asks for it (bounded).
    pub text: Option<String>,
}

/// What a stream's held buffer starts with: a burst of chunks fits.
pub const HELD_CAPACITY: usize = 32 * 1024;

/// Most answer text kept for audit.
const MAX_TEXT: usize = 64 * 1024;

impl UsageWatch {
    pub fn new(api: Api, sse: bool, strip: bool, max_json: usize) -> Self {
        Self {
            api,
            sse,
            strip: strip && sse,
            // A stream's bursts are held here while they are read; sized
            // once so they do not grow it chunk by chunk.
            buf: if sse {
                BytesMut::with_capacity(HELD_CAPACITY)
            } else {
                BytesMut::new()
            },
            max_json,
            usage: UsageCounts::default(),
            saw_usage: false,
            first_token_at: None,
            overflow: false,
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

    /// Take one chunk of the answer. What the client gets at once is
    /// appended to `out`; in strip mode events wait for `flush`, except the
    /// usual chunk arriving alone, which is cut at once.
    pub fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) {
        if !self.sse {
            if self.buf.len() + chunk.len() <= self.max_json {
                self.buf.extend_from_slice(chunk);
            }
            out.extend_from_slice(chunk);
            return;
        }
        if self.strip && self.buf.is_empty() && self.text.is_none() {
            if let Some(cut) = self.lone_null_usage_cut(chunk) {
                // The usual chunk, alone in its HTTP chunk with nothing
                // held before it: cut straight from it, never held.
                if self.first_token_at.is_none() && DELTA.find(chunk).is_some() {
                    self.first_token_at = Some(Instant::now());
                }
                put_cut(out, chunk, cut);
                return;
            }
        }
        if !self.strip {
            out.extend_from_slice(chunk);
        }
        if !self.overflow {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// `null_usage_cut` for a piece that is exactly one event.
    fn lone_null_usage_cut(&self, piece: &[u8]) -> Option<usize> {
        let (len, line) = next_event(piece)?;
        if len != piece.len() {
            return None;
        }
        self.null_usage_cut(piece, line)
    }

    /// Bytes taken and not yet read.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Read the complete events taken so far (a burst of chunks at once),
    /// appending in strip mode what the client gets of them to `out`.
    pub fn flush(&mut self, out: &mut BytesMut) {
        if !self.sse || self.overflow {
            return;
        }
        if let Some(end) = last_event_end(&self.buf) {
            let mut held = std::mem::take(&mut self.buf);
            if self.text.is_some() {
                // Every event's text is wanted: read them one by one.
                self.events(&held[..end], out);
            } else {
                self.scan(&held[..end], out);
            }
            held.advance(end);
            self.buf = held;
        }
        if self.buf.len() > self.max_json {
            // One event larger than anything worth reading: stop watching
            // this stream and let the rest through as it comes.
            tracing::warn!(
                held = self.buf.len(),
                "model stream event over the inspection limit; usage not read"
            );
            if self.strip {
                out.extend_from_slice(&self.buf);
            }
            self.buf = BytesMut::new();
            self.overflow = true;
            self.strip = false;
        }
    }

    /// Read complete events in one pass. The usual chunk — one `data:`
    /// line whose JSON ends with `,"usage":null}` — has nothing to read and
    /// at most that cut; events without a `"usage"` key go to the client in
    /// bulk; an event with one anywhere else is read on its own.
    fn scan(&mut self, data: &[u8], out: &mut BytesMut) {
        if self.first_token_at.is_none() && DELTA.find(data).is_some() {
            self.first_token_at = Some(Instant::now());
        }
        // data[..copied] has been dealt with.
        let mut copied = 0;
        let mut at = 0;
        while let Some((len, line)) = next_event(&data[at..]) {
            let end = at + len;
            let event = &data[at..end];
            if let Some(cut) = self.null_usage_cut(event, line) {
                if self.strip {
                    out.extend_from_slice(&data[copied..at + cut]);
                    copied = at + cut + NULL_USAGE.len();
                }
            } else if event.len() > USAGE.len() && USAGE_KEY.find(event).is_some() {
                if self.strip {
                    out.extend_from_slice(&data[copied..at]);
                }
                self.read_event(event, out);
                copied = end;
            }
            at = end;
        }
        if self.strip {
            out.extend_from_slice(&data[copied..]);
        }
    }

    /// Where the `,"usage":null` of the usual OpenAI chunk starts in
    /// `event` (`line`: where its first line ends): a single `data:` line
    /// whose JSON ends with that member. JSON's last member wins, so such a
    /// chunk carries no usage whatever came before.
    fn null_usage_cut(&self, event: &[u8], line: usize) -> Option<usize> {
        if !matches!(self.api, Api::ChatCompletions | Api::Completions) {
            return None;
        }
        // One line: the blank line that ends the event follows it at once.
        let one_line = match event.len() - line {
            2 => true,
            3 => event[line + 1] == b'\r',
            _ => false,
        };
        let text = match event[..line] {
            [ref t @ .., b'\r'] => t,
            ref t => t,
        };
        // Fixed-size compares: no call per event.
        let tail = text.len().checked_sub(NULL_CHUNK_END.len())?;
        (one_line && text.starts_with(b"data:") && text[tail..] == NULL_CHUNK_END[..])
            .then_some(tail)
    }

    /// Read complete events one by one, appending what the client gets of
    /// them (strip mode).
    fn events(&mut self, data: &[u8], out: &mut BytesMut) {
        let mut at = 0;
        while let Some((len, _)) = next_event(&data[at..]) {
            self.read_event(&data[at..at + len], out);
            at += len;
        }
    }

    /// Read one complete event, appending what the client gets of it
    /// (strip mode).
    fn read_event(&mut self, event: &[u8], out: &mut BytesMut) {
        match self.event(event) {
            Verdict::Keep if self.strip => strip_null_usage(out, event),
            Verdict::Cut(at) if self.strip => put_cut(out, event, at),
            Verdict::Keep | Verdict::Cut(_) | Verdict::Drop => {}
            Verdict::Replace(b) => out.extend_from_slice(&b),
        }
    }

    /// The stream ended: what is still held goes to `out`; a JSON body's
    /// usage is read.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.flush(out);
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
        } else if self.strip {
            out.extend_from_slice(&self.buf);
        }
        self.buf.clear();
    }

    /// Account one complete SSE event and say what the client gets of it:
    /// when the gateway asked for usage, the usage the client did not ask
    /// for is taken out (the whole chunk if it carries nothing else).
    fn event(&mut self, event: &[u8]) -> Verdict {
        let Some(data) = data_of(event) else {
            return Verdict::Keep;
        };
        if self.first_token_at.is_none() && DELTA.find(data).is_some() {
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
        if let Some(cut) = next_event(event).and_then(|(_, line)| self.null_usage_cut(event, line))
        {
            return Verdict::Cut(cut);
        }
        if !has_usage_object(data) {
            return Verdict::Keep;
        }
        if let Some(verdict) = self.openai_usage_chunk(data) {
            return verdict;
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

    /// The OpenAI usage chunk read without parsing all of it: only its
    /// `usage` (and `choices` unless empty) go through serde. `None` when
    /// it is not that plain shape; the caller then parses the whole chunk.
    fn openai_usage_chunk(&mut self, data: &[u8]) -> Option<Verdict> {
        if !matches!(self.api, Api::ChatCompletions | Api::Completions) || self.text.is_some() {
            return None;
        }
        let [Some(usage), choices] = skim::pick(data, [b"usage", b"choices"])? else {
            return None;
        };
        // Typed, so no tree is built; anything unusual in it (a number that
        // is not a count, a repeated key) goes to the slow path.
        let usage: OpenAiUsage = serde_json::from_slice(usage).ok()?;
        let usage_only = match choices {
            None => true,
            Some(c) if c == b"[]" => true,
            Some(c) => serde_json::from_slice::<Value>(c)
                .ok()?
                .as_array()?
                .iter()
                .all(empty_choice),
        };
        if self.strip && !usage_only {
            // Usage riding on content: the slow path rewrites the chunk.
            return None;
        }
        self.usage = UsageCounts {
            prompt: usage.prompt_tokens.unwrap_or(0),
            completion: usage.completion_tokens.unwrap_or(0),
            cached: usage
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            reasoning: usage
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        };
        self.saw_usage = true;
        Some(if self.strip {
            Verdict::Drop
        } else {
            Verdict::Keep
        })
    }

    fn read_usage(&mut self, v: &Value) {
        match self.api {
            Api::Messages => {
                // message_start carries the input, message_delta the output.
                let u = v
                    .get("message")
                    .and_then(|m| m.get("usage"))
                    .or_else(|| v.get("usage"))
                    .unwrap_or(&Value::Null);
                if let Some(i) = num(u, &["input_tokens"]) {
                    self.usage.prompt = i + num(u, &["cache_read_input_tokens"]).unwrap_or(0);
                    self.usage.cached = num(u, &["cache_read_input_tokens"]).unwrap_or(0);
                    self.saw_usage = true;
                }
                if let Some(o) = num(u, &["output_tokens"]) {
                    self.usage.completion = o;
                    self.saw_usage = true;
                }
            }
            Api::Responses => {
                let Some(u) = v
                    .get("response")
                    .and_then(|r| r.get("usage"))
                    .or_else(|| v.get("usage"))
                else {
                    return;
                };
                self.usage.prompt = num(u, &["input_tokens"]).unwrap_or(0);
                self.usage.completion = num(u, &["output_tokens"]).unwrap_or(0);
                self.usage.cached = num(u, &["input_tokens_details", "cached_tokens"]).unwrap_or(0);
                self.usage.reasoning =
                    num(u, &["output_tokens_details", "reasoning_tokens"]).unwrap_or(0);
                self.saw_usage = true;
            }
            _ => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    self.read_openai_usage(u);
                }
            }
        }
    }

    /// An OpenAI `usage` object (chat and completions).
    fn read_openai_usage(&mut self, u: &Value) {
        self.usage.prompt = num(u, &["prompt_tokens"]).unwrap_or(0);
        self.usage.completion = num(u, &["completion_tokens"]).unwrap_or(0);
        self.usage.cached = num(u, &["prompt_tokens_details", "cached_tokens"]).unwrap_or(0);
        self.usage.reasoning =
            num(u, &["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0);
        self.saw_usage = true;
    }
}

/// An OpenAI `usage` object as the usual usage chunk carries it.
#[derive(serde::Deserialize)]
struct OpenAiUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<UsageDetails>,
    completion_tokens_details: Option<UsageDetails>,
}

#[derive(serde::Deserialize)]
struct UsageDetails {
    cached_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
}

/// The number at `path` (member lookups, not a JSON pointer: a pointer
/// allocates per step).
fn num(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
}

enum Verdict {
    /// The event stays; in strip mode without its `,"usage":null`.
    Keep,
    /// The usual chunk: it stays, in strip mode without the
    /// `,"usage":null` at this offset.
    Cut(usize),
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

static DELTA: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("delta"));
const USAGE: &[u8] = b"\"usage\"";
static USAGE_KEY: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(USAGE));
/// How the usual chunk's line ends once `include_usage` is on.
const NULL_CHUNK_END: &[u8; 14] = b",\"usage\":null}";
/// The member `include_usage` adds to every chunk.
const NULL_USAGE: &[u8] = match NULL_CHUNK_END {
    [member @ .., _closing_brace] => member,
};
static NULL_USAGE_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(NULL_USAGE));

/// Does a blank line end at `buf[q]` (a `\n`)?
fn blank_line_ends_at(buf: &[u8], q: usize) -> bool {
    q >= 1 && (buf[q - 1] == b'\n' || (q >= 2 && buf[q - 1] == b'\r' && buf[q - 2] == b'\n'))
}

/// Length of the complete events at the start of `buf`: through its last
/// blank line.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'\n', buf)
        .find(|&q| blank_line_ends_at(buf, q))
        .map(|q| q + 1)
}

/// The first complete event in `buf`: its length through the blank line
/// that ends it (`\n\n`, `\r\n\r\n`, or a mix), and where its first
/// line's `\n` is.
fn next_event(buf: &[u8]) -> Option<(usize, usize)> {
    let first = memchr::memchr(b'\n', buf)?;
    let mut p = first;
    loop {
        match buf.get(p + 1) {
            Some(b'\n') => return Some((p + 2, first)),
            Some(b'\r') if buf.get(p + 2) == Some(&b'\n') => return Some((p + 3, first)),
            _ => p += 1 + memchr::memchr(b'\n', &buf[p + 1..])?,
        }
    }
}

/// The payload of the event's (first) `data:` line.
fn data_of(event: &[u8]) -> Option<&[u8]> {
    let mut rest = event;
    loop {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &[][..]),
        };
        if let Some(d) = line.strip_prefix(b"data:") {
            let d = d.strip_suffix(b"\r").unwrap_or(d);
            return Some(d.strip_prefix(b" ").unwrap_or(d));
        }
        if next.is_empty() {
            return None;
        }
        rest = next;
    }
}

/// Does the JSON text have `"usage"` followed by an object (not null)?
fn has_usage_object(data: &[u8]) -> bool {
    USAGE_KEY.find_iter(data).any(|p| {
        data[p + USAGE.len()..]
            .iter()
            .find(|b| !b.is_ascii_whitespace() && **b != b':')
            == Some(&b'{')
    })
}

/// Copy the usual chunk into `out` without its `,"usage":null` at `cut`.
#[inline]
fn put_cut(out: &mut BytesMut, event: &[u8], cut: usize) {
    match &event[cut + NULL_USAGE.len()..] {
        // `}\n\n`: one copy through three bytes of the cut member, whose
        // place the ending then takes.
        &[a, b, c] => {
            out.extend_from_slice(&event[..cut + 3]);
            let end = out.len();
            out[end - 3..].copy_from_slice(&[a, b, c]);
        }
        rest => {
            out.extend_from_slice(&event[..cut]);
            out.extend_from_slice(rest);
        }
    }
}

/// Copy `event` into `out` without the `,"usage":null` that `include_usage`
/// adds to every chunk.
fn strip_null_usage(out: &mut BytesMut, event: &[u8]) {
    let mut rest = event;
    while rest.len() >= NULL_USAGE.len() {
        let Some(p) = NULL_USAGE_FINDER.find(rest) else {
            break;
        };
        out.extend_from_slice(&rest[..p]);
        rest = &rest[p + NULL_USAGE.len()..];
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
        let mut out = BytesMut::new();
        for piece in [&b[..split], &b[split..]] {
            w.feed(piece, &mut out);
            w.flush(&mut out);
        }
        w.finish(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
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
    fn usage_the_typed_reader_refuses_is_read_as_a_parser_would() {
        // A repeated key (the last one counts) and a count that is not a
        // whole number (not counted): the slow path reads them.
        for (usage, prompt, completion) in [
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens":12}"#,
                12,
                2,
            ),
            (r#"{"prompt_tokens":12.5,"completion_tokens":3}"#, 0, 3),
        ] {
            let chunk = format!("data: {{\"choices\":[],\"usage\":{usage}}}\n\n");
            let upstream = format!("{CHUNK_NULL}{chunk}{DONE}");
            let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
            assert_eq!(
                run(&mut w, &upstream, 5),
                format!("{CHUNK}{DONE}"),
                "{usage}"
            );
            assert_eq!(
                (w.usage.prompt, w.usage.completion),
                (prompt, completion),
                "{usage}"
            );
            assert!(w.saw_usage);
        }
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

    #[test]
    fn crlf_and_mixed_line_endings_comments_and_whole_streams_in_one_chunk() {
        let crlf = |e: &str| e.replace("\n", "\r\n");
        let upstream = format!(
            ": keep-alive\n\n{}{CHUNK_NULL}event: x\r\ndata: {{\"id\":\"c\",\"choices\":[],\"usage\":null}}\n\r\n{}{DONE}",
            crlf(CHUNK_NULL),
            crlf(USAGE),
        );
        let client_would_get = format!(
            ": keep-alive\n\n{}{CHUNK}event: x\r\ndata: {{\"id\":\"c\",\"choices\":[]}}\n\r\n{DONE}",
            crlf(CHUNK),
        );
        for split in 0..=upstream.len() {
            let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
            assert_eq!(
                run(&mut w, &upstream, split),
                client_would_get,
                "split at {split}"
            );
            assert_eq!(w.usage.total(), 15, "split at {split}");
        }
    }

    #[test]
    fn an_event_held_over_the_limit_passes_whole_and_the_rest_unwatched() {
        let big = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":null}}\n\n",
            "x".repeat(300)
        );
        let upstream = format!("{CHUNK_NULL}{big}{CHUNK_NULL}{USAGE}{DONE}");
        for piece in [16, 64, 100] {
            let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 256);
            let mut out = BytesMut::new();
            for p in upstream.as_bytes().chunks(piece) {
                w.feed(p, &mut out);
                w.flush(&mut out);
            }
            w.finish(&mut out);
            let got = String::from_utf8(out.to_vec()).unwrap();
            // What was read before the big event is stripped; from the big
            // event on, every byte arrives as the upstream sent it.
            assert_eq!(
                got,
                format!("{CHUNK}{big}{CHUNK_NULL}{USAGE}{DONE}"),
                "pieces of {piece}"
            );
            assert!(!w.saw_usage, "pieces of {piece}");
        }
        // Whole in one chunk, the same event is no problem: nothing is held.
        let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 256);
        let got = run(&mut w, &upstream, 0);
        assert!(!got.contains("usage"), "{got}");
        assert_eq!(w.usage.total(), 15);
    }

    #[test]
    fn a_chunk_ending_in_usage_null_carries_no_usage_and_loses_only_that() {
        // JSON's last member wins: usage is null here, whatever came first.
        let dup = "data: {\"usage\":{\"prompt_tokens\":50},\"choices\":[{\"delta\":{\"content\":\"e\"}}],\"usage\":null}\n\n";
        // Two data lines: not the usual chunk, read the careful way.
        let two =
            "data: {\"choices\":[{\"delta\":{\"content\":\"f\"}}],\ndata: \"usage\":null}\n\n";
        let upstream = format!("{dup}{two}{DONE}");
        for text in [false, true] {
            for split in 0..=upstream.len() {
                let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
                if text {
                    w = w.capture_text();
                }
                let got = run(&mut w, &upstream, split);
                assert_eq!(
                    got,
                    format!(
                        "data: {{\"usage\":{{\"prompt_tokens\":50}},\"choices\":[{{\"delta\":{{\"content\":\"e\"}}}}]}}\n\n\
                         data: {{\"choices\":[{{\"delta\":{{\"content\":\"f\"}}}}],\ndata: \"usage\":null}}\n\n{DONE}"
                    ),
                    "text {text}, split at {split}"
                );
                assert!(!w.saw_usage, "text {text}, split at {split}");
            }
        }
    }

    #[test]
    fn the_bulk_scan_and_the_event_by_event_reading_agree() {
        // Text capture reads event by event; without it a burst is scanned
        // for `"usage"` keys at once. Both must give the client the same.
        let odd = [
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null,\"x\":{\"usage\":null}}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":\"n/a\"}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}],\"usage\":null,\"usage\":null}\n\n",
            "event: note\ndata: {\"usage\" : { \"prompt_tokens\": 2 }, \"choices\":[{\"delta\":{\"content\":\"d\"}}]}\n\n",
            ": comment with \"usage\":null\n\n",
        ];
        let upstream = format!("{CHUNK_NULL}{}{USAGE}{DONE}", odd.concat());
        for strip in [true, false] {
            for split in 0..=upstream.len() {
                let mut bulk = UsageWatch::new(Api::ChatCompletions, true, strip, 1 << 20);
                let mut one =
                    UsageWatch::new(Api::ChatCompletions, true, strip, 1 << 20).capture_text();
                let a = run(&mut bulk, &upstream, split);
                let b = run(&mut one, &upstream, split);
                assert_eq!(a, b, "strip {strip}, split at {split}");
                assert_eq!(bulk.usage.total(), 15, "strip {strip}, split at {split}");
                assert_eq!(one.usage.total(), 15);
                if !strip {
                    assert_eq!(a, upstream);
                }
            }
        }
        let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20).capture_text();
        run(&mut w, &upstream, 9);
        assert_eq!(w.text.as_deref(), Some("hiabcd"));
        // As upstreams send them, one event per chunk (the usual one then
        // skips the held buffer), read before or after the next arrives.
        let events: Vec<String> = upstream.split_inclusive("\n\n").map(String::from).collect();
        let crlf: Vec<String> = events.iter().map(|e| e.replace('\n', "\r\n")).collect();
        for events in [events, crlf] {
            let whole = events.concat();
            let mut bulk = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
            let expected = run(&mut bulk, &whole, 0);
            for flush_each in [true, false] {
                let mut w = UsageWatch::new(Api::ChatCompletions, true, true, 1 << 20);
                let mut out = BytesMut::new();
                for e in &events {
                    w.feed(e.as_bytes(), &mut out);
                    if flush_each {
                        w.flush(&mut out);
                    }
                }
                w.finish(&mut out);
                assert_eq!(out, expected.as_bytes(), "flush after each: {flush_each}");
                assert_eq!(w.usage.total(), 15);
                assert!(w.first_token_at.is_some());
            }
        }
    }
}
