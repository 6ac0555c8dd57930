//! `/mcp`: Streamable HTTP (POST messages, GET standalone stream, DELETE session) and stateless 2026-07-28 requests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::reply::{self, Refusal};
use super::{exec, header_str, mirror, parse_body, Accepts};
use crate::dispatch::{self, RequestCtx};
use crate::jsonrpc::{self, Incoming, RpcError, HEADER_MISMATCH, INTERNAL_ERROR, INVALID_REQUEST};
use crate::peer::{Peer, Route};
use crate::protocol::{self, SESSION_HEADER, STATELESS_VERSION, VERSION_HEADER};
use crate::session::{Session, Transport};
use crate::sink::{self, EventSink};
use crate::sse::{self, StreamParts};
use crate::state::AppState;

/// Where a reconnecting client says what it saw last.
const LAST_EVENT_ID: &str = "last-event-id";

/// Whom a POST speaks for.
enum Scope {
    Session(Arc<Session>),
    Stateless,
}

impl Scope {
    fn session(&self) -> Option<Arc<Session>> {
        match self {
            Scope::Session(session) => Some(session.clone()),
            Scope::Stateless => None,
        }
    }

    /// A new stream for this POST's replies: resumable within a session.
    fn stream(&self, state: &AppState) -> (EventSink, mpsc::Receiver<Bytes>) {
        match self {
            Scope::Session(session) => sink::resumable(state.event_ids.clone(), &session.events),
            Scope::Stateless => sink::channel(Some(state.event_ids.clone())),
        }
    }

    /// The revision the client negotiated, which is what it can parse
    /// (its per-request header may name an older one).
    fn version(&self) -> String {
        match self {
            Scope::Session(session) => session.version(),
            Scope::Stateless => STATELESS_VERSION.to_owned(),
        }
    }
}

type Call = (Value, String, Value);

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let accepts = Accepts::from_headers(&headers);
    if !accepts.json && !accepts.sse {
        return Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            INVALID_REQUEST,
            "Not Acceptable: Accept must include application/json or text/event-stream",
        ));
    }
    let parsed = parse_body(&body).map_err(|error| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            error.code,
            error.message,
        )
    })?;
    let scope = resolve_scope(&state, &headers, &parsed.messages)?;
    let session = scope.session();
    let session_id = session.as_ref().map(|session| session.id.as_str());

    let mut calls: Vec<Call> = Vec::new();
    let mut errors = Vec::new();
    for message in parsed.messages {
        match message {
            Incoming::Request { id, method, params } => calls.push((id, method, params)),
            Incoming::Notification { method, params } => {
                exec::handle_notification(session.as_deref(), &method, &params)
            }
            Incoming::Response { id, message } => {
                exec::handle_response(session.as_deref(), &id, message)
            }
            Incoming::Invalid { id, reason } => errors.push(exec::invalid(&id, reason)),
        }
    }
    if calls.is_empty() {
        return Ok(match errors.len() {
            0 => reply::accepted(),
            // Nothing could run: the POST as a whole was a bad request.
            _ => reply::json(
                StatusCode::BAD_REQUEST,
                &collect(errors, parsed.batch),
                session_id,
            ),
        });
    }
    // 2026-07-28 answers an unknown method with 404, which must be decided
    // before a streaming 200 is committed to.
    if let (Scope::Stateless, [(id, method, _)]) = (&scope, calls.as_slice()) {
        if !parsed.batch && !dispatch::is_known(method, true) {
            let error = jsonrpc::failure(id, &RpcError::method_not_found(method));
            return Ok(reply::json(StatusCode::NOT_FOUND, &error, None));
        }
    }
    Ok(
        if accepts.sse && (!state.opts.json_response || !accepts.json) {
            respond_sse(&state, &scope, calls, errors)
        } else {
            respond_json(&state, &scope, calls, errors, parsed.batch).await
        },
    )
}

pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Refusal> {
    if header_str(&headers, VERSION_HEADER) == Some(STATELESS_VERSION) {
        return Ok(reply::method_not_allowed(
            "2026-07-28 has no standalone stream",
        ));
    }
    if !Accepts::from_headers(&headers).sse {
        return Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            &Value::Null,
            INVALID_REQUEST,
            "Not Acceptable: Accept must include text/event-stream",
        ));
    }
    let session = find_session(&state, &headers, &Value::Null)?;
    let last_event_id = header_str(&headers, LAST_EVENT_ID).and_then(|id| id.parse().ok());
    if let Some((missed, rx)) = last_event_id.and_then(|id| sink::resume(&session.events, id)) {
        tracing::info!(session = %session.id, replayed = missed.len(), "stream resumed");
        let body = sse::body(StreamParts {
            preamble: missed,
            rx,
            keep_alive: Some(sse::KEEP_ALIVE_PERIOD),
            on_close: None,
            closing: state.closing.subscribe(),
        });
        return Ok(sse::response(body, Some(&session.id)));
    }
    let (sink, rx) = sink::resumable(state.event_ids.clone(), &session.events);
    let preamble = priming(&sink, &session.version());
    // A newer GET replaces the old stream, whose body then ends.
    session.set_standalone(sink);
    tracing::info!(session = %session.id, "standalone stream opened");
    let body = sse::body(StreamParts {
        preamble,
        rx,
        keep_alive: Some(sse::KEEP_ALIVE_PERIOD),
        on_close: None,
        closing: state.closing.subscribe(),
    });
    Ok(sse::response(body, Some(&session.id)))
}

pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    if header_str(&headers, VERSION_HEADER) == Some(STATELESS_VERSION) {
        return Ok(reply::method_not_allowed(
            "2026-07-28 has no session to end",
        ));
    }
    let session = find_session(&state, &headers, &Value::Null)?;
    state.sessions.remove(&session.id);
    tracing::info!(session = %session.id, "session ended by the client");
    Ok(reply::json(StatusCode::OK, &json!({}), None))
}

fn resolve_scope(
    state: &AppState,
    headers: &HeaderMap,
    messages: &[Incoming],
) -> Result<Scope, Refusal> {
    let id = first_request_id(messages);
    let header_version = header_str(headers, VERSION_HEADER);
    let initialize = messages.iter().find_map(|message| match message {
        Incoming::Request { method, params, .. } if method == "initialize" => Some(params),
        _ => None,
    });
    if let Some(params) = initialize {
        if messages.len() > 1 {
            return Err(Refusal::bad_request(
                &id,
                "initialize must be the only message of its POST",
            ));
        }
        return start_session(state, params, &id);
    }
    let stateless = header_version == Some(STATELESS_VERSION)
        || messages.iter().any(|message| match message {
            Incoming::Request { params, .. } | Incoming::Notification { params, .. } => {
                protocol::meta_version(params) == Some(STATELESS_VERSION)
            }
            _ => false,
        });
    if stateless {
        mirror::check(headers, messages)
            .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, &id, HEADER_MISMATCH, why))?;
        return Ok(Scope::Stateless);
    }
    if let Some(version) = header_version.filter(|v| !protocol::is_supported(v)) {
        return Err(Refusal::bad_request(
            &id,
            format!("Unsupported protocol version: {version}"),
        ));
    }
    // Discovery is how a client finds out what we speak: it needs no session.
    if header_str(headers, SESSION_HEADER).is_none() && only_discovery(messages) {
        return Ok(Scope::Stateless);
    }
    Ok(Scope::Session(find_session(state, headers, &id)?))
}

fn start_session(state: &AppState, params: &Value, id: &Value) -> Result<Scope, Refusal> {
    let version = protocol::negotiate(params.get("protocolVersion").and_then(Value::as_str));
    let session = state
        .sessions
        .create(Transport::Streamable, version)
        .map_err(|error| {
            tracing::error!(%error, "cannot create a session id");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                id,
                INTERNAL_ERROR,
                "cannot create a session",
            )
        })?;
    let capabilities = params
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    session.initialized(version, capabilities);
    tracing::info!(session = %session.id, version, "session created");
    Ok(Scope::Session(session))
}

fn find_session(
    state: &AppState,
    headers: &HeaderMap,
    id: &Value,
) -> Result<Arc<Session>, Refusal> {
    let Some(session_id) = header_str(headers, SESSION_HEADER) else {
        return Err(Refusal::bad_request(
            id,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    state
        .sessions
        .get(session_id)
        .filter(|session| session.transport == Transport::Streamable)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                id,
                INVALID_REQUEST,
                "Session not found",
            )
        })
}

fn first_request_id(messages: &[Incoming]) -> Value {
    messages
        .iter()
        .find_map(|message| match message {
            Incoming::Request { id, .. } => Some(id.clone()),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

fn only_discovery(messages: &[Incoming]) -> bool {
    messages
        .iter()
        .all(|message| matches!(message, Incoming::Request { method, .. } if method == "server/discover"))
}

fn context(state: &AppState, scope: &Scope, route: Route, params: &Value) -> RequestCtx {
    let session = scope.session();
    let peer = Peer::new(route, session.clone(), state.request_ids.clone(), params);
    RequestCtx {
        state: state.clone(),
        session,
        peer,
    }
}

fn priming(sink: &EventSink, version: &str) -> Vec<Bytes> {
    if protocol::sends_priming_event(version) {
        sink.priming().into_iter().collect()
    } else {
        Vec::new()
    }
}

/// Answers with a stream that carries each request's notifications,
/// server→client requests and finally its response, and ends when the
/// last request of the POST is done.
fn respond_sse(state: &AppState, scope: &Scope, calls: Vec<Call>, errors: Vec<Value>) -> Response {
    let (sink, rx) = scope.stream(state);
    let preamble = priming(&sink, &scope.version());
    if !errors.is_empty() {
        let sink = sink.clone();
        tokio::spawn(async move {
            for error in errors {
                sink.send(&error).await;
            }
        });
    }
    for (id, method, params) in calls {
        let ctx = context(state, scope, Route::Stream(sink.clone()), &params);
        let sink = sink.clone();
        // Detached on purpose: a client disconnect is not a cancel.
        tokio::spawn(async move {
            if let Some(response) = exec::run_request(ctx, id, method, params).await {
                sink.send(&response).await;
            }
        });
    }
    drop(sink);
    let body = sse::body(StreamParts {
        preamble,
        rx,
        keep_alive: Some(sse::KEEP_ALIVE_PERIOD),
        on_close: None,
        closing: state.closing.subscribe(),
    });
    let session = scope.session();
    sse::response(body, session.as_ref().map(|session| session.id.as_str()))
}

async fn respond_json(
    state: &AppState,
    scope: &Scope,
    calls: Vec<Call>,
    errors: Vec<Value>,
    batch: bool,
) -> Response {
    let running: Vec<_> = calls
        .into_iter()
        .map(|(id, method, params)| {
            let ctx = context(state, scope, Route::JsonOnly, &params);
            let task = tokio::spawn(exec::run_request(ctx, id.clone(), method, params));
            (id, task)
        })
        .collect();
    let mut responses = errors;
    for (id, task) in running {
        let response = match task.await {
            Ok(Some(response)) => response,
            // A JSON response must say something; the client that cancelled ignores it.
            Ok(None) => jsonrpc::failure(&id, &RpcError::new(INTERNAL_ERROR, "Request cancelled")),
            Err(error) => {
                tracing::error!(%error, "request handler failed");
                jsonrpc::failure(&id, &RpcError::new(INTERNAL_ERROR, "Internal error"))
            }
        };
        responses.push(response);
    }
    let session = scope.session();
    reply::json(
        StatusCode::OK,
        &collect(responses, batch),
        session.as_ref().map(|session| session.id.as_str()),
    )
}

/// A batch is answered with an array, a single message with one object.
fn collect(responses: Vec<Value>, batch: bool) -> Value {
    match <[Value; 1]>::try_from(responses) {
        Ok([single]) if !batch => single,
        Ok(one) => Value::Array(one.into()),
        Err(many) => Value::Array(many),
    }
}
