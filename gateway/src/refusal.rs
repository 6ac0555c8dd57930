//! The one place a refusal or a failure becomes wire bytes: HTTP status, a
//! JSON-RPC error carrying the request's id (or the OpenAI error shape on
//! model routes), a metric and a log line. Decisions return their own
//! errors, which convert into `Refusal`; upstream failures are a typed
//! `Failure`. Nothing else writes error responses.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};
use sluice_config::RouteTransport;

use crate::access::Denied;
use crate::ctx::Ctx;
use crate::failure::Failure;
use crate::limits::Limited;
use crate::mcp::{ClassifyError, RequestId};
use crate::policy::{Deny, TenantError};
use crate::state::Shared;

/// JSON-RPC codes used by the gateway (MCP spec values; no invented codes).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// 2026-07-28: mirrored header does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2025-11-25: URL-mode elicitation required.
    pub const URL_ELICITATION_REQUIRED: i64 = -32042;
}

#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no route for this path")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("host not allowed")]
    BadHost,
    #[error("origin not allowed")]
    BadOrigin,
    #[error("{0}")]
    Framing(&'static str),
    /// A request path with a dot segment or a hidden separator, which an
    /// upstream could resolve to another path than the route matched.
    #[error("request path not in normal form: {0}")]
    PathNotNormal(sluice_config::uri::NotNormal),
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        limit: u64,
        /// The declared body is small enough to read and discard first, so
        /// the client (still sending) sees the 413 rather than a reset.
        drain: bool,
    },
    #[error("could not read the request body")]
    BodyRead,
    /// A request head past `limits` (the request line: 414; else 431).
    #[error("{0} larger than the gateway accepts")]
    HeadTooLarge(&'static str),
    #[error(transparent)]
    BodiesFull(#[from] crate::bodies::BodiesFull),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error("upstream unavailable: {0}")]
    Upstream(Failure),
    #[error("authentication required: {reason}")]
    Unauthenticated {
        reason: &'static str,
        /// The `WWW-Authenticate` value pointing at the resource metadata.
        challenge: String,
    },
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A session id presented by someone other than its creator: answered
    /// like an unknown session.
    #[error("session not found")]
    ForeignSession,
    #[error(transparent)]
    Policy(#[from] Deny),
    /// The upstream acts on behalf of each user and has no credential for
    /// this one (the user has not connected an account).
    #[error("no credential for this user on upstream `{0}`")]
    NoUserCredential(String),
    #[error("{}", limited_message(.0))]
    Limited(Limited),
    /// The upstream's circuit is open: answered without touching it.
    #[error(transparent)]
    Llm(#[from] crate::llm::LlmDeny),
    #[error(transparent)]
    Approval(#[from] crate::approval::ApprovalDeny),
    #[error("upstream `{upstream}` is failing; not sending for {}s", retry_after.as_secs().max(1))]
    CircuitOpen {
        upstream: String,
        retry_after: std::time::Duration,
    },
}

fn limited_message(l: &Limited) -> String {
    match l {
        Limited::Rate { limit, retry_after } => format!(
            "rate limit `{limit}` exceeded; retry in {} ms",
            retry_after.as_millis().max(1)
        ),
        Limited::Concurrency { limit } => {
            format!("too many calls in flight (limit `{limit}`); retry shortly")
        }
        Limited::StoreDown { limit } => {
            format!("rate limit `{limit}` cannot be checked right now; retry shortly")
        }
    }
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NoRoute => 404,
            Refusal::MethodNotAllowed => 405,
            Refusal::BadHost | Refusal::BadOrigin => 403,
            Refusal::Framing(_)
            | Refusal::PathNotNormal(_)
            | Refusal::BodyRead
            | Refusal::Classify(_) => 400,
            Refusal::BodyTooLarge { .. } => 413,
            Refusal::HeadTooLarge("request line") => 414,
            Refusal::HeadTooLarge(_) => 431,
            Refusal::BodiesFull(_) => 503,
            Refusal::Upstream(_) => 502,
            Refusal::Unauthenticated { .. } => 401,
            Refusal::Tenant(TenantError::Ambiguous) => 400,
            Refusal::Tenant(_) => 403,
            Refusal::ForeignSession => 404,
            Refusal::NoUserCredential(_) => 403,
            Refusal::Limited(Limited::StoreDown { .. }) | Refusal::CircuitOpen { .. } => 503,
            Refusal::Limited(_) => 429,
            Refusal::Llm(d) => d.status(),
            Refusal::Approval(a) => a.status(),
            // A policy denial is an answer to a well-formed call: HTTP 200
            // with a JSON-RPC error, exactly as for an unknown tool.
            Refusal::Policy(Deny::Batch(_) | Deny::BatchedList) => 400,
            Refusal::Policy(_) => 200,
        }
    }

    pub fn rpc_code(&self) -> i64 {
        match self {
            Refusal::Classify(ClassifyError::Parse { .. }) => code::PARSE_ERROR,
            Refusal::Classify(ClassifyError::HeaderMismatch { .. }) => code::HEADER_MISMATCH,
            Refusal::Upstream(_)
            | Refusal::Limited(_)
            | Refusal::CircuitOpen { .. }
            | Refusal::BodiesFull(_)
            | Refusal::Approval(crate::approval::ApprovalDeny::Unavailable(_)) => {
                code::INTERNAL_ERROR
            }
            Refusal::Policy(d) => d.rpc_code(),
            Refusal::Approval(a) if a.elicits() => code::URL_ELICITATION_REQUIRED,
            Refusal::Approval(crate::approval::ApprovalDeny::Unreadable) => code::INVALID_PARAMS,
            _ => code::INVALID_REQUEST,
        }
    }

    /// A bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoRoute => "no_route",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::BadHost => "bad_host",
            Refusal::BadOrigin => "bad_origin",
            Refusal::Framing(_) => "framing",
            Refusal::PathNotNormal(_) => "path_not_normal",
            Refusal::BodyTooLarge { .. } => "body_too_large",
            Refusal::BodyRead => "body_read",
            Refusal::HeadTooLarge(_) => "head_too_large",
            Refusal::BodiesFull(_) => "bodies_full",
            Refusal::Classify(ClassifyError::Parse { .. }) => "parse_error",
            Refusal::Classify(ClassifyError::TooDeep { .. }) => "too_deep",
            Refusal::Classify(ClassifyError::TooLong { .. }) => "too_long",
            Refusal::Classify(ClassifyError::Invalid { .. }) => "invalid_request",
            Refusal::Classify(ClassifyError::HeaderMismatch { .. }) => "header_mismatch",
            Refusal::Upstream(_) => "upstream",
            Refusal::Unauthenticated { reason, .. } => reason,
            Refusal::Tenant(TenantError::Ambiguous) => "tenant_ambiguous",
            Refusal::Tenant(TenantError::None) => "tenant_none",
            Refusal::Tenant(TenantError::NotMember) => "tenant_not_member",
            Refusal::ForeignSession => "foreign_session",
            Refusal::NoUserCredential(_) => "no_user_credential",
            Refusal::Policy(Deny::Hidden { .. }) => "policy_hidden",
            Refusal::Policy(Deny::Conditions { .. }) => "policy_conditions",
            Refusal::Policy(Deny::Batch(_)) => "batch_not_allowed",
            Refusal::Policy(Deny::BatchedList) => "batched_list",
            Refusal::Policy(Deny::UriNotNormal { .. }) => "uri_not_normal",
            Refusal::Policy(Deny::HiddenCompletion { .. }) => "policy_hidden",
            Refusal::Policy(Deny::Unclassified { .. }) => "unclassified_method",
            Refusal::Limited(Limited::Rate { .. }) => "rate_limited",
            Refusal::Limited(Limited::Concurrency { .. }) => "concurrency_limited",
            Refusal::Limited(Limited::StoreDown { .. }) => "limit_store_down",
            Refusal::CircuitOpen { .. } => "circuit_open",
            Refusal::Llm(d) => d.reason(),
            Refusal::Approval(a) => a.reason(),
        }
    }

    /// Is this a decision about access (who may do what), rather than a
    /// malformed or failed request? Audit records the former as `deny`.
    pub fn is_access_decision(&self) -> bool {
        matches!(
            self,
            Refusal::NoRoute
                | Refusal::BadHost
                | Refusal::BadOrigin
                | Refusal::Unauthenticated { .. }
                | Refusal::Tenant(_)
                | Refusal::ForeignSession
                | Refusal::NoUserCredential(_)
                | Refusal::Policy(
                    Deny::Hidden { .. } | Deny::Conditions { .. } | Deny::HiddenCompletion { .. }
                )
                | Refusal::Limited(Limited::Rate { .. } | Limited::Concurrency { .. })
        ) || matches!(self, Refusal::Llm(d) if d.is_access_decision())
            || matches!(self, Refusal::Approval(a) if a.is_access_decision())
    }

    /// When the client may try again, for refusals that are about timing.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Refusal::Limited(l) => Some(l.retry_after()),
            Refusal::CircuitOpen { retry_after, .. } => Some(*retry_after),
            Refusal::BodiesFull(_) => Some(std::time::Duration::from_secs(1)),
            Refusal::Llm(d) => d.retry_after(),
            _ => None,
        }
    }

    /// The id to answer with: the one the classifier found, else the caller's.
    pub fn id<'a>(&'a self, fallback: Option<&'a RequestId>) -> Option<&'a RequestId> {
        match self {
            Refusal::Classify(e) => e.id().or(fallback),
            Refusal::Policy(d) => d.id().or(fallback),
            _ => fallback,
        }
    }
}

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
        (Refusal::Approval(a), _) => a
            .data()
            .map_or(String::new(), |d| format!(r#","data":{d}"#)),
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
        Refusal::Llm(d) => d.error_type(),
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

impl From<Limited> for Refusal {
    fn from(l: Limited) -> Self {
        Refusal::Limited(l)
    }
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated { reason, challenge } => {
                Refusal::Unauthenticated { reason, challenge }
            }
            Denied::Tenant(t) => Refusal::Tenant(t),
        }
    }
}

/// Most bytes read and discarded past the body cap to answer 413 cleanly.
pub const MAX_DRAIN: u64 = 16 << 20;

/// Answer a refusal: wire bytes, a metric and a log line.
pub async fn answer(shared: &Shared, session: &mut Session, ctx: &mut Ctx, refusal: &Refusal) {
    ctx.outcome.refused = Some(refusal.reason());
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
