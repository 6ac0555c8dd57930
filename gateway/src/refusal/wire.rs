//! Refusals and failures as wire bytes: the JSON-RPC error (or the OpenAI
//! error shape), the head with its status and `Retry-After`, the metric
//! and the log line.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use sluice_config::RouteTransport;

use super::{approval_data, code, llm_error_type, Refusal};
use crate::ctx::Ctx;
use crate::mcp::RequestId;
use crate::policy::Deny;
use crate::state::Shared;

/// The JSON-RPC error body for `refusal`. Refusals about timing carry
/// `data: {"reason", "retry_after_ms"}` so a client can back off exactly.
pub fn body(refusal: &Refusal, id: Option<&RequestId>) -> Bytes {
    if let Refusal::Policy(Deny::HiddenCompletion { stateless, .. }) = refusal {
        // The answer the reference servers give for a prompt they do not
        // have.
        return Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"completion":{{"values":[],"total":0,"hasMore":false}}{}}}}}"#,
            id.map_or("null", RequestId::raw),
            if *stateless {
                r#","resultType":"complete""#
            } else {
                ""
            }
        ));
    }
    let message = serde_json::to_string(&refusal.to_string()).unwrap_or_else(|_| "\"\"".into());
    let data = match (refusal, refusal.retry_after()) {
        (Refusal::Approval(a), _) => {
            approval_data(a).map_or(String::new(), |d| format!(r#","data":{d}"#))
        }
        (_, Some(d)) => format!(
            r#","data":{{"reason":"{}","retry_after_ms":{}}}"#,
            refusal.reason(),
            d.as_millis().max(1)
        ),
        (_, None) => String::new(),
    };
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{},"message":{}{}}}}}"#,
        id.map_or("null", RequestId::raw),
        refusal.rpc_code(),
        message,
        data
    ))
}

/// SSE `message` events, each a JSON-RPC error (-32603) for one id; `None`
/// when there is no id to answer.
pub fn sse_errors<'a>(ids: impl Iterator<Item = &'a RequestId>, message: &str) -> Option<Bytes> {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::new();
    for id in ids {
        out.push_str(&format!(
            "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":{},\"message\":{}}}}}\n\n",
            id.raw(),
            code::INTERNAL_ERROR,
            message
        ));
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

/// The OpenAI error shape model clients and SDKs understand.
pub fn openai_body(refusal: &Refusal) -> Bytes {
    let kind = match refusal {
        Refusal::Llm(d) => llm_error_type(d),
        Refusal::Limited(_) => "requests",
        Refusal::Unauthenticated { .. } => "authentication_error",
        Refusal::Upstream(_) | Refusal::CircuitOpen { .. } => "server_error",
        _ => "invalid_request_error",
    };
    openai_error(&refusal.to_string(), kind, refusal.reason())
}

/// Bytes of an OpenAI-shaped error, for answers the gateway gives itself.
pub fn openai_error(message: &str, kind: &str, code: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string(),
    )
}

/// Most bytes read and discarded past the body cap to answer 413 cleanly.
pub const MAX_DRAIN: u64 = 16 << 20;

/// Answer a refusal: wire bytes, a metric and a log line.
pub async fn answer(shared: &Shared, session: &mut Session, ctx: &mut Ctx, refusal: &Refusal) {
    ctx.outcome.refused = Some(refusal.reason());
    ctx.outcome.refused_code = Some(refusal.rpc_code());
    ctx.outcome.access_denied = refusal.is_access_decision();
    if let Refusal::Unauthenticated { reason, .. } = refusal {
        shared
            .metrics
            .auth_failures
            .with_label_values(&[ctx.route_label(), reason])
            .inc();
    }
    shared
        .metrics
        .refusals
        .with_label_values(&[ctx.route_label(), refusal.reason()])
        .inc();
    tracing::info!(
        route = ctx.route_label(),
        status = refusal.status(),
        reason = refusal.reason(),
        detail = %refusal,
        "request refused"
    );
    if let Refusal::BodyTooLarge { drain: true, .. } = refusal {
        session.set_read_timeout(Some(ctx.rt.snapshot.client_read_timeout));
        let mut drained = 0u64;
        // Bounded: a client that keeps sending past the cap is cut off.
        while let Ok(Some(chunk)) = session.read_request_body().await {
            drained += chunk.len() as u64;
            if drained > MAX_DRAIN {
                break;
            }
        }
    }
    if let Err(e) = respond(session, refusal, ctx.first_id(), is_model_route(ctx)).await {
        tracing::debug!(error = %e, "could not write refusal");
    }
}

fn is_model_route(ctx: &Ctx) -> bool {
    ctx.route()
        .is_some_and(|r| r.transport == RouteTransport::Llm)
}

/// An exchange failed (Pingora's `fail_to_proxy`): counted, charged to the
/// upstream's circuit, and answered — a JSON-RPC (or OpenAI) error with the
/// request's id if nothing was sent yet, the answer closed properly if it
/// had started. Returns the status for Pingora's log (0: none).
pub async fn failed(shared: &Shared, session: &mut Session, e: &Error, ctx: &mut Ctx) -> u16 {
    let code = match e.etype() {
        ErrorType::HTTPStatus(c) => *c,
        _ => match e.esource() {
            pingora::ErrorSource::Upstream => match e.etype() {
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout => 504,
                _ => 502,
            },
            pingora::ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            _ => 500,
        },
    };
    let kind = shared.failed(e, ctx);
    let upstream_fault = e.esource() == &pingora::ErrorSource::Upstream;
    if ctx.outcome.status.is_some() || session.response_written().is_some() {
        // The answer had started: close it properly.
        if upstream_fault {
            if let Some(events) = shared.cut_short(ctx) {
                let _ = session.write_response_body(Some(events), true).await;
            }
        }
    } else if code > 0 {
        // Answer in JSON-RPC with the request's id: nothing was sent yet.
        let refusal = Refusal::Upstream(kind);
        let body = if is_model_route(ctx) {
            openai_body(&refusal)
        } else {
            body(&refusal, ctx.first_id())
        };
        if let Ok(mut resp) = ResponseHeader::build(code, Some(3)) {
            let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
            let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string());
            // Pingora closes the connection after a failed proxy: say so
            // (`Connection: close`), so the client does not reuse it.
            session.set_keepalive(None);
            let _ = session.write_response_header(Box::new(resp), false).await;
            let _ = session.write_response_body(Some(body), true).await;
        }
    }
    code
}

/// Write `refusal` to the client, as JSON-RPC or (model routes) in the
/// OpenAI error shape. The caller records metrics and logs.
pub async fn respond(
    session: &mut Session,
    refusal: &Refusal,
    id: Option<&RequestId>,
    openai: bool,
) -> pingora::Result<()> {
    let body = if openai {
        openai_body(refusal)
    } else {
        body(refusal, refusal.id(id))
    };
    let mut resp = ResponseHeader::build(refusal.status(), Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    match refusal {
        Refusal::MethodNotAllowed => {
            resp.insert_header(http::header::ALLOW, "GET, POST, DELETE")?;
        }
        Refusal::Unauthenticated { challenge, .. } => {
            resp.insert_header(http::header::WWW_AUTHENTICATE, challenge.as_str())?;
        }
        _ => {}
    }
    if let Some(wait) = refusal.retry_after() {
        // Whole seconds, rounded up: never invite a retry that is too early.
        let secs = wait.as_millis().div_ceil(1000).max(1);
        resp.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}
