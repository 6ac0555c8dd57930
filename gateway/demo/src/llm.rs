//! A small OpenAI-compatible provider for tests, LiteLLM and load runs:
//! `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`,
//! `/v1/responses`, Anthropic's `/v1/messages`, and `GET /v1/models`, each
//! as JSON or SSE with usage, deterministic: prompt tokens are the words of
//! the request's text, the answer is `chunks` words (`max_tokens` caps it).
//! It records what it was sent and can be told to fail, for fallback tests.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the mock does; shared with the test that holds it.
#[derive(Clone)]
pub struct LlmOptions {
    /// Words in each answer (one SSE chunk per word). Default 10.
    pub chunks: usize,
    /// Model ids listed by `GET /v1/models`.
    pub models: Vec<String>,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            chunks: 10,
            models: vec!["mock-gpt".into(), "mock-mini".into()],
        }
    }
}

/// Requests seen and the fault to inject, readable by tests.
#[derive(Default)]
pub struct LlmState {
    pub requests: AtomicU64,
    /// When non-zero, every request is answered with this status.
    pub fail_status: AtomicU16,
    /// Headers and body of every request, in order.
    pub seen: Mutex<Vec<(HeaderMap, Value)>>,
}

#[derive(Clone)]
struct Ctx {
    opts: LlmOptions,
    state: Arc<LlmState>,
}

pub struct LlmServer {
    pub addr: std::net::SocketAddr,
    pub state: Arc<LlmState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LlmServer {
    /// Base URL of the OpenAI-style API (ends in `/v1`).
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn fail_with(&self, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn last_body(&self) -> Option<Value> {
        self.state
            .seen
            .lock()
            .ok()
            .and_then(|s| s.last().map(|(_, b)| b.clone()))
    }

    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.state
            .seen
            .lock()
            .ok()
            .and_then(|s| s.last().map(|(h, _)| h.clone()))
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn llm_router(opts: LlmOptions, state: Arc<LlmState>) -> Router {
    let ctx = Ctx { opts, state };
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .with_state(ctx)
}

pub async fn spawn_llm(addr: std::net::SocketAddr, opts: LlmOptions) -> std::io::Result<LlmServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(LlmState::default());
    let app = llm_router(opts, state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // As a real server does: no Nagle stalls on streamed answers.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(LlmServer {
        addr,
        state,
        stop: Some(tx),
    })
}

/// Count the request, record it, and answer the injected fault if any.
fn intake(ctx: &Ctx, headers: &HeaderMap, body: &Value) -> Option<Response> {
    ctx.state.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut seen) = ctx.state.seen.lock() {
        if seen.len() < 10_000 {
            seen.push((headers.clone(), body.clone()));
        }
    }
    let fail = ctx.state.fail_status.load(Ordering::SeqCst);
    (fail != 0).then(|| {
        let status = StatusCode::from_u16(fail).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": {"message": "injected failure", "type": "mock_error", "code": fail}})),
        )
            .into_response()
    })
}

/// Words of every string in `v` (the prompt's size in "tokens").
fn words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(a) => a.iter().map(words).sum(),
        Value::Object(o) => o.values().map(words).sum(),
        _ => 0,
    }
}

fn answer_len(ctx: &Ctx, body: &Value) -> usize {
    let cap = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .or_else(|| body.get("max_output_tokens"))
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |n| n as usize);
    ctx.opts.chunks.min(cap).max(1)
}

fn model(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-gpt")
        .to_owned()
}

fn sse(events: Vec<String>) -> Response {
    let stream = futures::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(e))),
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn chat_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": prompt / 4},
        "completion_tokens_details": {"reasoning_tokens": 0}
    })
}

async fn chat(State(ctx): State<Ctx>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = intake(&ctx, &headers, &body) {
        return r;
    }
    let model = model(&body);
    let prompt = words(body.get("messages").unwrap_or(&Value::Null));
    let n = answer_len(&ctx, &body);
    let usage = chat_usage(prompt, n as u64);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let text = vec!["word"; n].join(" ");
        return Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1_700_000_000u64,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage
        }))
        .into_response();
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for i in 0..n {
        let w = if i + 1 == n { "word" } else { "word " };
        events.push(chunk(json!({"content": w}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let c = json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model, "choices": [], "usage": usage
        });
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".into());
    sse(events)
}

async fn completions(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = intake(&ctx, &headers, &body) {
        return r;
    }
    let prompt = words(body.get("prompt").unwrap_or(&Value::Null));
    let n = answer_len(&ctx, &body);
    Json(json!({
        "id": "cmpl-mock", "object": "text_completion", "created": 1_700_000_000u64,
        "model": model(&body),
        "choices": [{"index": 0, "text": vec!["word"; n].join(" "), "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n as u64}
    }))
    .into_response()
}

async fn embeddings(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = intake(&ctx, &headers, &body) {
        return r;
    }
    let prompt = words(body.get("input").unwrap_or(&Value::Null));
    Json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
        "model": model(&body),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
    }))
    .into_response()
}

async fn responses(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = intake(&ctx, &headers, &body) {
        return r;
    }
    let prompt = words(body.get("input").unwrap_or(&Value::Null));
    let n = answer_len(&ctx, &body);
    let text = vec!["word"; n].join(" ");
    let usage =
        json!({"input_tokens": prompt, "output_tokens": n, "total_tokens": prompt + n as u64});
    let response = json!({
        "id": "resp_mock", "object": "response", "model": model(&body), "status": "completed",
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}],
        "usage": usage
    });
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(response).into_response();
    }
    let mut events = vec![format!(
        "event: response.created\ndata: {}\n\n",
        json!({"type": "response.created", "response": {"id": "resp_mock", "status": "in_progress"}})
    )];
    for _ in 0..n {
        events.push(format!(
            "event: response.output_text.delta\ndata: {}\n\n",
            json!({"type": "response.output_text.delta", "delta": "word "})
        ));
    }
    events.push(format!(
        "event: response.completed\ndata: {}\n\n",
        json!({"type": "response.completed", "response": response})
    ));
    sse(events)
}

async fn messages(State(ctx): State<Ctx>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = intake(&ctx, &headers, &body) {
        return r;
    }
    let prompt = words(body.get("messages").unwrap_or(&Value::Null));
    let n = answer_len(&ctx, &body);
    let model = model(&body);
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": vec!["word"; n].join(" ")}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt, "output_tokens": n}
        }))
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [], "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
    )];
    events.push(ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    for _ in 0..n {
        events.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}})));
    }
    events.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}})));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(events)
}

async fn models(State(ctx): State<Ctx>) -> Response {
    let data: Vec<Value> = ctx
        .opts
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "mock"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}
