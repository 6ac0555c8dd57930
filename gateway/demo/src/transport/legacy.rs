//! The 2024-11-05 HTTP+SSE transport: `GET /sse` opens the session's only stream, `POST /message` feeds it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::reply::Refusal;
use super::{exec, parse_body};
use crate::dispatch::RequestCtx;
use crate::jsonrpc::{Incoming, INTERNAL_ERROR, INVALID_REQUEST};
use crate::peer::{Peer, Route};
use crate::protocol;
use crate::session::Transport;
use crate::sink;
use crate::sse::{self, StreamParts};
use crate::state::AppState;

/// Ends the session when its stream's body is dropped (the client left):
/// in this transport the stream *is* the session.
struct EndSessionOnClose {
    state: AppState,
    id: String,
}

impl Drop for EndSessionOnClose {
    fn drop(&mut self) {
        if self.state.sessions.remove(&self.id).is_some() {
            tracing::info!(session = %self.id, "legacy stream closed, session ended");
        }
    }
}

pub async fn open(State(state): State<AppState>) -> Result<Response, Refusal> {
    // The revision is settled later, by `initialize` on /message.
    let session = state
        .sessions
        .create(Transport::Legacy, protocol::SESSION_VERSIONS[0])
        .map_err(|error| {
            tracing::error!(%error, "cannot create a session id");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Value::Null,
                INTERNAL_ERROR,
                "cannot create a session",
            )
        })?;
    let (sink, rx) = sink::channel(None);
    session.set_standalone(sink);
    tracing::info!(session = %session.id, "legacy stream opened");
    let endpoint = format!("/message?sessionId={}", session.id);
    let body = sse::body(StreamParts {
        preamble: vec![sse::endpoint_event(&endpoint)],
        rx,
        keep_alive: Some(sse::KEEP_ALIVE_PERIOD),
        on_close: Some(Box::new(EndSessionOnClose {
            state: state.clone(),
            id: session.id.clone(),
        })),
        closing: state.closing.subscribe(),
    });
    Ok(sse::response(body, None))
}

pub async fn message(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let Some(session_id) = query.get("sessionId") else {
        return Err(Refusal::bad_request(
            &Value::Null,
            "sessionId query parameter is required",
        ));
    };
    let found = state
        .sessions
        .get(session_id)
        .filter(|session| session.transport == Transport::Legacy);
    let Some((session, sink)) =
        found.and_then(|session| Some((session.clone(), session.standalone()?)))
    else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            &Value::Null,
            INVALID_REQUEST,
            "Session not found",
        ));
    };
    let parsed = parse_body(&body).map_err(|error| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            error.code,
            error.message,
        )
    })?;
    for message in parsed.messages {
        match message {
            Incoming::Request { id, method, params } => {
                if method == "initialize" {
                    let version =
                        protocol::negotiate(params.get("protocolVersion").and_then(Value::as_str));
                    let capabilities = params
                        .get("capabilities")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    session.initialized(version, capabilities);
                }
                let route = Route::Stream(sink.clone());
                let peer = Peer::new(
                    route,
                    Some(session.clone()),
                    state.request_ids.clone(),
                    &params,
                );
                let ctx = RequestCtx {
                    state: state.clone(),
                    session: Some(session.clone()),
                    peer,
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    if let Some(response) = exec::run_request(ctx, id, method, params).await {
                        sink.send(&response).await;
                    }
                });
            }
            Incoming::Notification { method, params } => {
                exec::handle_notification(Some(&session), &method, &params)
            }
            Incoming::Response { id, message } => {
                exec::handle_response(Some(&session), &id, message)
            }
            Incoming::Invalid { id, reason } => {
                let sink = sink.clone();
                let error = exec::invalid(&id, reason);
                tokio::spawn(async move { sink.send(&error).await });
            }
        }
    }
    let mut response = Response::new(axum::body::Body::from(Bytes::from_static(b"Accepted")));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}
