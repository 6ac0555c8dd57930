//! The one place a refusal or a failure becomes wire bytes: HTTP status, a
//! JSON-RPC error carrying the request's id (or the OpenAI error shape on
//! model routes), a metric and a log line. Decisions return their own
//! errors, which convert into `Refusal`; upstream failures are a typed
//! `Failure`. Nothing else writes error responses.

mod wire;

use crate::access::Denied;
use crate::approval::ApprovalDeny;
use crate::failure::Failure;
use crate::federation::idempotency::IdemDeny;
use crate::limits::Limited;
use crate::llm::LlmDeny;
use crate::mcp::{ClassifyError, RequestId};
use crate::policy::{Deny, TenantError};
use sluice_config::Kind;

pub use wire::{answer, body, failed, openai_body, openai_error, respond, sse_errors, MAX_DRAIN};

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
    /// Well-formed JSON-RPC whose params the gateway cannot act on (a
    /// cursor it did not issue, arguments that are not an object).
    #[error("Invalid params: {0}")]
    InvalidParams(&'static str),
    /// Arguments that break the tool's input schema, said with where.
    #[error("Invalid params: {0}")]
    BadArguments(String),
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
    /// A request that needs the client's session (ending it) without one.
    #[error("this request needs the session's Mcp-Session-Id")]
    NoSession,
    /// A client's answer (a JSON-RPC response) to no request the gateway
    /// passed it.
    #[error("an answer to no request of this server's sources")]
    StrayAnswer,
    #[error(transparent)]
    Policy(#[from] Deny),
    /// The upstream acts on behalf of each user and has no credential for
    /// this one (the user has not connected an account).
    #[error("no credential for this user on upstream `{0}`")]
    NoUserCredential(String),
    /// Acting as the caller toward the upstream failed: no token to
    /// exchange, or the identity provider refused or could not be reached.
    #[error(transparent)]
    Exchange(#[from] crate::token_exchange::ExchangeError),
    #[error("{}", limited_message(.0))]
    Limited(Limited),
    /// The upstream's circuit is open: answered without touching it.
    #[error(transparent)]
    Llm(#[from] LlmDeny),
    #[error(transparent)]
    Approval(#[from] ApprovalDeny),
    #[error(transparent)]
    Idempotency(#[from] crate::federation::idempotency::IdemDeny),
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
            Refusal::InvalidParams(_) | Refusal::BadArguments(_) => 200,
            Refusal::HeadTooLarge("request line") => 414,
            Refusal::HeadTooLarge(_) => 431,
            Refusal::BodiesFull(_) => 503,
            Refusal::Upstream(_) => 502,
            Refusal::Unauthenticated { .. } => 401,
            Refusal::Tenant(TenantError::Ambiguous) => 400,
            Refusal::Tenant(_) => 403,
            Refusal::ForeignSession => 404,
            Refusal::NoSession | Refusal::StrayAnswer => 400,
            Refusal::NoUserCredential(_) => 403,
            Refusal::Exchange(e) if e.is_access_decision() => 403,
            Refusal::Exchange(_) => 502,
            Refusal::Limited(Limited::StoreDown { .. }) | Refusal::CircuitOpen { .. } => 503,
            Refusal::Limited(_) => 429,
            Refusal::Llm(d) => llm_status(d),
            Refusal::Approval(a) => approval_status(a),
            Refusal::Idempotency(_) => 200,
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
            | Refusal::Approval(ApprovalDeny::Unavailable(_)) => code::INTERNAL_ERROR,
            Refusal::Exchange(e) if !e.is_access_decision() => code::INTERNAL_ERROR,
            Refusal::Policy(d) => policy_code(d),
            Refusal::InvalidParams(_) | Refusal::BadArguments(_) => code::INVALID_PARAMS,
            Refusal::Idempotency(IdemDeny::Mismatch) => code::INVALID_PARAMS,
            Refusal::Idempotency(IdemDeny::StoreDown) => code::INTERNAL_ERROR,
            Refusal::Approval(ApprovalDeny::Pending { elicit: true, .. }) => {
                code::URL_ELICITATION_REQUIRED
            }
            Refusal::Approval(ApprovalDeny::Unreadable) => code::INVALID_PARAMS,
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
            Refusal::InvalidParams(_) => "invalid_params",
            Refusal::BadArguments(_) => "invalid_arguments",
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
            Refusal::NoSession => "no_session",
            Refusal::StrayAnswer => "stray_answer",
            Refusal::NoUserCredential(_) => "no_user_credential",
            Refusal::Exchange(e) => e.reason(),
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
            Refusal::Idempotency(IdemDeny::Mismatch) => "idempotency_mismatch",
            Refusal::Idempotency(IdemDeny::Running) => "idempotency_running",
            Refusal::Idempotency(IdemDeny::StoreDown) => "idempotency_store_down",
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
            || matches!(self, Refusal::Exchange(e) if e.is_access_decision())
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

/// A model refusal's HTTP status.
fn llm_status(d: &LlmDeny) -> u16 {
    match d {
        LlmDeny::UnknownEndpoint | LlmDeny::ModelNotFound(_) => 404,
        LlmDeny::BadRequest(_) => 400,
        LlmDeny::ModelDenied(_) => 403,
        LlmDeny::NeverFits { .. } | LlmDeny::TokenRate { .. } | LlmDeny::Budget(_) => 429,
    }
}

/// The OpenAI error `type` SDKs look at.
fn llm_error_type(d: &LlmDeny) -> &'static str {
    match d {
        LlmDeny::ModelDenied(_) => "permission_error",
        LlmDeny::NeverFits { .. } | LlmDeny::TokenRate { .. } => "tokens",
        LlmDeny::Budget(_) => "insufficient_quota",
        _ => "invalid_request_error",
    }
}

/// An approval refusal's HTTP status: an answer to a well-formed call (200,
/// like a policy denial) unless the batch was malformed or control is away.
fn approval_status(a: &ApprovalDeny) -> u16 {
    match a {
        ApprovalDeny::Batched => 400,
        ApprovalDeny::Unavailable(_) => 503,
        _ => 200,
    }
}

/// A policy denial's JSON-RPC code: the spec's own codes for unknown
/// items, so a hidden item cannot be told from a missing one.
fn policy_code(d: &Deny) -> i64 {
    match d {
        Deny::Hidden {
            kind: Kind::Resources,
            ..
        } => -32002,
        Deny::Hidden { .. }
        | Deny::Conditions { .. }
        | Deny::UriNotNormal { .. }
        | Deny::HiddenCompletion { .. } => code::INVALID_PARAMS,
        Deny::Unclassified { .. } => -32601,
        Deny::Batch(_) | Deny::BatchedList => code::INVALID_REQUEST,
    }
}

/// What a client needs to follow an approval: the JSON-RPC error's `data`.
fn approval_data(a: &ApprovalDeny) -> Option<serde_json::Value> {
    use serde_json::json;
    let reason = a.reason();
    Some(match a {
        ApprovalDeny::Pending { id, url, elicit } => {
            let mut d = json!({ "reason": reason, "approval_id": id, "inbox_url": url });
            if *elicit {
                d["elicitations"] = json!([{
                    "mode": "url",
                    "elicitationId": id,
                    "url": url,
                    "message": "This tool call needs an approver's decision. Open the link to follow it, then retry the call.",
                }]);
            }
            d
        }
        ApprovalDeny::Denied {
            id,
            by,
            reason: why,
        } => json!({
            "reason": reason, "approval_id": id, "decided_by": by, "decision_reason": why
        }),
        ApprovalDeny::Expired { id } | ApprovalDeny::Used { id } => {
            json!({ "reason": reason, "approval_id": id })
        }
        _ => return None,
    })
}
