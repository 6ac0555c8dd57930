//! One model request: which API it is, what it asks for (model, streaming,
//! usage in the stream, output cap), an estimate of its size in tokens, and
//! the body rewritten for one target (upstream model name, `user`, usage in
//! the stream when the gateway needs it).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::mcp::skim;

/// The model API a request speaks, from the path after the route prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's `/v1/messages`.
    Messages,
    Models,
}

impl Api {
    pub fn from_path(rest: &str) -> Option<Api> {
        Some(match rest.trim_end_matches('/') {
            "/chat/completions" => Api::ChatCompletions,
            "/completions" => Api::Completions,
            "/embeddings" => Api::Embeddings,
            "/responses" => Api::Responses,
            "/messages" => Api::Messages,
            "/models" => Api::Models,
            _ => return None,
        })
    }

    /// The one path this endpoint is forwarded as, whatever variant the
    /// client wrote (a trailing slash).
    pub fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/chat/completions",
            Api::Completions => "/completions",
            Api::Embeddings => "/embeddings",
            Api::Responses => "/responses",
            Api::Messages => "/messages",
            Api::Models => "/models",
        }
    }

    /// OpenTelemetry `gen_ai.operation.name`.
    pub fn operation(self) -> &'static str {
        match self {
            Api::ChatCompletions | Api::Messages | Api::Responses => "chat",
            Api::Completions => "text_completion",
            Api::Embeddings => "embeddings",
            Api::Models => "models",
        }
    }

    /// Streams of this API carry usage only when asked (`include_usage`).
    fn usage_on_request(self) -> bool {
        matches!(self, Api::ChatCompletions | Api::Completions)
    }
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// What the gateway needs to know about a model request.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub api: Api,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub client_wants_usage: bool,
    pub max_output: Option<u64>,
    /// Prompt size estimate: a token is about four bytes of JSON text.
    pub prompt_estimate: u64,
    body: Bytes,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("the body is not a JSON object: {0}")]
    Json(String),
    #[error("`model` is required")]
    NoModel,
}

impl LlmRequest {
    pub fn parse(api: Api, body: Bytes) -> Result<LlmRequest, RequestError> {
        let v: View<'_> =
            serde_json::from_slice(&body).map_err(|e| RequestError::Json(e.to_string()))?;
        let model = v
            .model
            .filter(|m| !m.is_empty())
            .ok_or(RequestError::NoModel)?
            .into_owned();
        Ok(LlmRequest {
            api,
            model,
            stream: v.stream == Some(true),
            client_wants_usage: v.stream_options.and_then(|o| o.include_usage) == Some(true),
            max_output: v
                .max_tokens
                .or(v.max_completion_tokens)
                .or(v.max_output_tokens),
            prompt_estimate: (body.len() as u64).div_ceil(4),
            body,
        })
    }

    /// The prompt part of the body (messages, prompt or input) with the
    /// `redact` pointers (relative to the body) replaced, for audit.
    pub fn prompt_for_audit(&self, redact: &[String]) -> Option<Value> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        let body = crate::audit::redact(&body, redact);
        let key = match self.api {
            Api::ChatCompletions | Api::Messages => "messages",
            Api::Completions => "prompt",
            Api::Responses | Api::Embeddings => "input",
            Api::Models => return None,
        };
        body.get(key).cloned()
    }

    /// Will the gateway add `include_usage` for its own accounting?
    pub fn injects_usage(&self) -> bool {
        self.stream && self.api.usage_on_request() && !self.client_wants_usage
    }

    /// The tokens to reserve before the call: prompt plus the output cap.
    pub fn estimate(&self, default_output: u64) -> u64 {
        self.prompt_estimate + self.max_output.unwrap_or(default_output)
    }

    /// The body for one target: its model name, the caller as `user`, and
    /// usage in the stream when the gateway needs it. Untouched when there
    /// is nothing to change; edited in place when the changes are plain
    /// member values; rebuilt from a parse otherwise.
    pub fn body_for(
        &self,
        target_model: &str,
        user: Option<&str>,
        metadata: Option<Value>,
    ) -> Bytes {
        // Anthropic's Messages API has no `user`: the end user goes in
        // `metadata.user_id`, the gateway's value over the client's.
        let (user, metadata) = match (self.api, user) {
            (Api::Messages, Some(u)) => {
                let mut m = match metadata {
                    Some(Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                m.insert("user_id".into(), Value::String(u.to_owned()));
                (None, Some(Value::Object(m)))
            }
            (_, user) => (user, metadata),
        };
        let model = (target_model != self.model).then_some(target_model);
        if model.is_none() && user.is_none() && !self.injects_usage() && metadata.is_none() {
            return self.body.clone();
        }
        if metadata.is_none() {
            if let Some(b) = self.spliced(model, user) {
                return b;
            }
        }
        self.rebuilt(target_model, user, metadata)
    }

    /// The body with `model` and `user` set and usage asked for in the
    /// stream, written around the client's own bytes: the members that
    /// change get new values, missing ones are added before the closing
    /// brace. `None` when the object is not plain enough to edit this way
    /// (an escaped key, `user` twice, `stream_options` to merge into): the
    /// caller rebuilds the body instead.
    fn spliced(&self, model: Option<&str>, user: Option<&str>) -> Option<Bytes> {
        const KEYS: [&[u8]; 3] = [b"model", b"user", b"stream_options"];
        let body = &self.body[..];
        let mut spans: [Option<(usize, usize)>; 3] = [None; 3];
        let mut twice = false;
        skim::members(body, |key, value| {
            if let Some(i) = KEYS.iter().position(|k| *k == key) {
                let start = value.as_ptr() as usize - body.as_ptr() as usize;
                twice |= spans[i].replace((start, start + value.len())).is_some();
            }
        })?;
        let usage = self.injects_usage();
        // `model` is always there (parse asks for it): members are added
        // after it with a comma.
        if twice || spans[0].is_none() || (usage && spans[2].is_some()) {
            return None;
        }
        // The object's closing brace: the last byte that is not space.
        let close = body.iter().rposition(|b| !b.is_ascii_whitespace())?;
        // Values replaced in place, in the order they appear.
        let mut replace: [Option<(usize, usize, &str)>; 2] = [
            spans[0].zip(model).map(|((a, b), v)| (a, b, v)),
            spans[1].zip(user).map(|((a, b), v)| (a, b, v)),
        ];
        replace.sort_unstable_by_key(|r| r.map_or(usize::MAX, |(a, ..)| a));
        let mut out = Vec::with_capacity(body.len() + 64);
        let mut copied = 0;
        for (start, end, value) in replace.into_iter().flatten() {
            out.extend_from_slice(&body[copied..start]);
            serde_json::to_writer(&mut out, value).ok()?;
            copied = end;
        }
        out.extend_from_slice(&body[copied..close]);
        let add = |out: &mut Vec<u8>, key: &[u8]| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
        };
        if let (None, Some(u)) = (spans[1], user) {
            add(&mut out, b"user");
            serde_json::to_writer(&mut out, u).ok()?;
        }
        if usage {
            add(&mut out, b"stream_options");
            out.extend_from_slice(br#"{"include_usage":true}"#);
        }
        out.extend_from_slice(&body[close..]);
        Some(Bytes::from(out))
    }

    /// The body parsed, changed and written again: for the changes
    /// `spliced` leaves to it (the gateway's metadata merged into the
    /// client's, `stream_options` merged into).
    fn rebuilt(&self, target_model: &str, user: Option<&str>, metadata: Option<Value>) -> Bytes {
        let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(&self.body) else {
            return self.body.clone();
        };
        o.insert("model".into(), Value::String(target_model.to_owned()));
        if let Some(u) = user {
            // The end user, for the upstream's own spend tracking
            // (LiteLLM attributes by it); never what the client claimed.
            o.insert("user".into(), Value::String(u.to_owned()));
        }
        if let Some(Value::Object(ours)) = metadata {
            // The client's own metadata stays; the gateway's keys win.
            let m = o
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(m) = m {
                m.extend(ours);
            }
        }
        if self.injects_usage() {
            let opts = o
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if !opts.is_object() {
                // `"stream_options": null` must not keep a call unmetered.
                *opts = Value::Object(Default::default());
            }
            if let Value::Object(opts) = opts {
                opts.insert("include_usage".into(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&Value::Object(o)).map_or_else(|_| self.body.clone(), Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(api: Api, body: &str) -> LlmRequest {
        LlmRequest::parse(api, Bytes::from(body.to_owned())).expect("valid request")
    }

    #[test]
    fn reads_what_accounting_needs() {
        let r = req(
            Api::ChatCompletions,
            r#"{"model":"gpt","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(r.model, "gpt");
        assert!(r.stream && r.injects_usage());
        assert_eq!(r.estimate(1000), r.prompt_estimate + 50);
        let asked = req(
            Api::ChatCompletions,
            r#"{"model":"gpt","stream":true,"stream_options":{"include_usage":true}}"#,
        );
        assert!(!asked.injects_usage(), "the client asked: its own chunk");
        let messages = req(Api::Messages, r#"{"model":"claude","stream":true}"#);
        assert!(
            !messages.injects_usage(),
            "Anthropic streams always carry usage"
        );
    }

    #[test]
    fn an_anthropic_call_names_the_caller_in_metadata() {
        let r = req(
            Api::Messages,
            r#"{"model":"claude","messages":[],"metadata":{"user_id":"mallory","x":1}}"#,
        );
        let out: Value =
            serde_json::from_slice(&r.body_for("claude", Some("alice"), None)).expect("json");
        assert_eq!(
            out["metadata"]["user_id"], "alice",
            "never what the client claimed"
        );
        assert_eq!(out["metadata"]["x"], 1);
        assert!(out.get("user").is_none(), "not an Anthropic field");
    }

    #[test]
    fn rewrites_only_what_changes() {
        let body = r#"{"model":"alias","messages":[],"user":"mallory"}"#;
        let r = req(Api::ChatCompletions, body);
        assert_eq!(
            r.body_for("alias", None, None),
            Bytes::from(body),
            "untouched"
        );
        let out: Value =
            serde_json::from_slice(&r.body_for("upstream-model", Some("alice"), None)).unwrap();
        assert_eq!(out["model"], "upstream-model");
        assert_eq!(out["user"], "alice", "the client cannot claim another user");
        let s = req(
            Api::ChatCompletions,
            r#"{"model":"m","stream":true,"stream_options":{}}"#,
        );
        let out: Value = serde_json::from_slice(&s.body_for("m", None, None)).unwrap();
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn edits_in_place_what_a_rebuild_would_write() {
        let bodies = [
            r#"{"model":"alias","stream":true,"messages":[{"role":"user","content":"hi \"there\""}]}"#,
            "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"{}\"} ] ,\n \"model\" : \"alias\" , \"stream\": true }\n",
            r#"{"model":"alias","user":"mallory","stream":true,"temperature":0.5}"#,
            r#"{"user":{"id":"mallory"},"model":"alias","stream":false}"#,
            r#"{"model":"alias","stream":true,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
        ];
        for body in bodies {
            for api in [Api::ChatCompletions, Api::Messages] {
                let r = req(api, body);
                for (model, user) in [
                    ("alias", None),
                    ("up\"stream/model", None),
                    ("alias", Some("alice")),
                    ("other", Some("bob \u{e9}\\")),
                ] {
                    let user = user.filter(|_| api != Api::Messages);
                    let spliced = r.body_for(model, user, None);
                    let rebuilt = r.rebuilt(model, user, None);
                    let spliced: Value = serde_json::from_slice(&spliced).expect("valid JSON");
                    let rebuilt: Value = serde_json::from_slice(&rebuilt).expect("valid JSON");
                    assert_eq!(spliced, rebuilt, "{body} as {api:?} for {model} / {user:?}");
                }
            }
        }
        // The client's own bytes stay where nothing changes.
        let r = req(Api::ChatCompletions, bodies[1]);
        let out = r.body_for("alias", None, None);
        assert!(out.starts_with(b"{ \"messages\" : [ {"), "{out:?}");
        assert!(
            out.ends_with(b"true ,\"stream_options\":{\"include_usage\":true}}\n"),
            "{out:?}"
        );
    }

    #[test]
    fn rebuilds_what_it_cannot_edit_plainly() {
        for body in [
            // An escaped key could be `user` in disguise.
            r#"{"model":"alias","stream":true,"us\u0065r":"mallory"}"#,
            // Which copy an upstream believes is its own business.
            r#"{"model":"alias","stream":true,"user":"a","user":"b"}"#,
            // Options of the client's own, merged into.
            r#"{"model":"alias","stream":true,"stream_options":{"include_usage":false}}"#,
            // No options: usage is still asked for.
            r#"{"model":"alias","stream":true,"stream_options":null}"#,
        ] {
            let r = req(Api::ChatCompletions, body);
            assert_eq!(r.spliced(None, Some("alice")), None, "{body}");
            let out: Value =
                serde_json::from_slice(&r.body_for("alias", Some("alice"), None)).unwrap();
            assert_eq!(out["user"], "alice", "{body}");
            assert_eq!(out["stream_options"]["include_usage"], true, "{body}");
            assert_eq!(out.as_object().unwrap().len(), 4, "{body}: {out}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_account() {
        assert_eq!(
            LlmRequest::parse(Api::ChatCompletions, Bytes::from_static(b"{}")).unwrap_err(),
            RequestError::NoModel
        );
        assert!(LlmRequest::parse(Api::ChatCompletions, Bytes::from_static(b"[1]")).is_err());
        assert!(
            LlmRequest::parse(
                Api::ChatCompletions,
                Bytes::from_static(br#"{"model":"a","model":"b"}"#)
            )
            .is_err(),
            "duplicate keys fail closed"
        );
    }
}
