//! Approval holds. A `tools/call` that an approval rule matches is filed
//! with control (who, which tool and tool definition, the exact arguments
//! and their canonical hash, the policy version) and held for the rule's
//! hold time. Approved within it: the call goes on, using the approval
//! once. Still pending: the client is told the approval id and the inbox
//! link; repeating the identical call after approval goes through once,
//! without a second request. Denied or expired: refused with the reason.
//! Control unreachable: refused (fail closed), the rest of traffic unaffected.

use std::time::Duration;

use sluice_config::{canonical_hash, Route, Snapshot};

use crate::control::{ApprovalState, ControlError, Filing};
use crate::mcp::{Kind, Method, RequestFacts};
use crate::policy::decide::ApprovalRequired;
use crate::policy::Caller;
use crate::state::Shared;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApprovalDeny {
    #[error("approval required: request {id} is waiting for a decision at {url}; repeat this call once it is approved")]
    Pending {
        id: String,
        url: String,
        /// The client takes URL-mode elicitation: answer -32042.
        elicit: bool,
    },
    #[error("approval {id} denied by {by}: {reason}")]
    Denied {
        id: String,
        by: String,
        reason: String,
    },
    #[error("approval {id} expired without a decision")]
    Expired { id: String },
    #[error("approval {id} was already used or does not match this call; repeat the call to request a new one")]
    Used { id: String },
    #[error("calls that need approval cannot be sent in a batch")]
    Batched,
    /// The arguments cannot be read one way (malformed, a key twice), so
    /// no approver could be shown what would run.
    #[error("arguments cannot be read one way (a duplicate key or malformed JSON)")]
    Unreadable,
    #[error("approvals are unavailable: {0}")]
    Unavailable(String),
}

impl ApprovalDeny {
    pub fn reason(&self) -> &'static str {
        match self {
            ApprovalDeny::Pending { .. } => "approval_pending",
            ApprovalDeny::Denied { .. } => "approval_denied",
            ApprovalDeny::Expired { .. } => "approval_expired",
            ApprovalDeny::Used { .. } => "approval_used",
            ApprovalDeny::Batched => "approval_batched",
            ApprovalDeny::Unreadable => "arguments_unreadable",
            ApprovalDeny::Unavailable(_) => "approval_unavailable",
        }
    }

    pub fn is_access_decision(&self) -> bool {
        !matches!(self, ApprovalDeny::Unavailable(_) | ApprovalDeny::Batched)
    }
}

/// One call that a rule holds.
struct Held<'a> {
    rule: &'a sluice_config::ApprovalRule,
    tool: &'a str,
    arguments: serde_json::Value,
}

/// Who is asking, for filing.
pub struct Requester<'a> {
    pub caller: Option<&'a Caller>,
    pub session: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

/// Does this request body declare URL-mode elicitation, in `initialize`'s
/// `capabilities` or a stateless request's `_meta` client capabilities?
pub fn declares_url_elicitation(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        capabilities: Option<Caps>,
        #[serde(default, rename = "_meta")]
        meta: Option<Meta>,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default, rename = "io.modelcontextprotocol/clientCapabilities")]
        caps: Option<Caps>,
    }
    #[derive(serde::Deserialize)]
    struct Caps {
        #[serde(default)]
        elicitation: Option<Elicitation>,
    }
    #[derive(serde::Deserialize)]
    struct Elicitation {
        #[serde(default)]
        url: Option<serde::de::IgnoredAny>,
    }
    let Ok(b) = serde_json::from_slice::<Body>(body) else {
        return false;
    };
    let Some(p) = b.params else { return false };
    [p.capabilities, p.meta.and_then(|m| m.caps)]
        .into_iter()
        .flatten()
        .any(|c| c.elicitation.is_some_and(|e| e.url.is_some()))
}

/// Hold the request's calls that need approval. `Ok(Some(id))`: the
/// approval that let the call through.
pub async fn hold(
    shared: &Shared,
    snap: &Snapshot,
    route: &Route,
    who: Requester<'_>,
    facts: &RequestFacts,
    body: &[u8],
) -> Result<Option<String>, ApprovalDeny> {
    let upstream = snap.upstream(route).name.as_str();
    let mut held: Option<Held> = None;
    for msg in facts.messages.iter().filter(|m| m.kind != Kind::Response) {
        if msg.method != Method::ToolsCall {
            continue;
        }
        let Some(tool) = msg.target.as_deref() else {
            continue;
        };
        // Parsed only when a rule with conditions asks, and for a held call.
        let args = || {
            msg.arguments
                .clone()
                .and_then(|r| body.get(r))
                .and_then(crate::policy::strict::parse)
        };
        let mut lazy = args;
        let rule = snap
            .approvals
            .required(upstream, tool, &mut lazy)
            .map_err(|_| ApprovalDeny::Unreadable)?;
        if let Some(rule) = rule {
            if facts.batch {
                return Err(ApprovalDeny::Batched);
            }
            // Absent arguments are an empty object; present ones were read
            // above or no condition needed them, and what an approver is
            // shown must be the one reading of them.
            let arguments = match msg.arguments.clone() {
                None => serde_json::Value::Object(Default::default()),
                Some(_) => args().ok_or(ApprovalDeny::Unreadable)?,
            };
            held = Some(Held {
                rule,
                tool,
                arguments,
            });
        }
    }
    let Some(h) = held else {
        return Ok(None);
    };
    settle(shared, snap, upstream, who, &h, body).await
}

/// A virtual server's `tools/call` of `upstream`'s `tool` (its own name),
/// with `arguments` as forwarded (JSON text; `None`: none): held as a call
/// on a plain route would be. `body` is the client's request.
pub async fn hold_call(
    shared: &Shared,
    snap: &Snapshot,
    (upstream, tool): (&str, &str),
    arguments: Option<&str>,
    who: Requester<'_>,
    body: &[u8],
) -> Result<Option<String>, ApprovalDeny> {
    let args = || arguments.and_then(|a| crate::policy::strict::parse(a.as_bytes()));
    let mut lazy = args;
    let rule = snap
        .approvals
        .required(upstream, tool, &mut lazy)
        .map_err(|_| ApprovalDeny::Unreadable)?;
    let Some(rule) = rule else {
        return Ok(None);
    };
    let arguments = match arguments {
        None => serde_json::Value::Object(Default::default()),
        Some(_) => args().ok_or(ApprovalDeny::Unreadable)?,
    };
    let h = Held {
        rule,
        tool,
        arguments,
    };
    settle(shared, snap, upstream, who, &h, body).await
}

/// The held call decided at control, and counted.
async fn settle(
    shared: &Shared,
    snap: &Snapshot,
    upstream: &str,
    who: Requester<'_>,
    h: &Held<'_>,
    body: &[u8],
) -> Result<Option<String>, ApprovalDeny> {
    let m = &shared.metrics.approvals;
    let outcome = decide(shared, snap, upstream, &who, h, body).await;
    let label = match &outcome {
        Ok(_) => "approved",
        Err(e) => e.reason().trim_start_matches("approval_"),
    };
    m.with_label_values(&[label]).inc();
    outcome.map(Some)
}

async fn decide(
    shared: &Shared,
    snap: &Snapshot,
    upstream: &str,
    who: &Requester<'_>,
    h: &Held<'_>,
    body: &[u8],
) -> Result<String, ApprovalDeny> {
    let Some(control) = &shared.control else {
        return Err(ApprovalDeny::Unavailable(
            "this gateway runs without a control process (--control)".into(),
        ));
    };
    let unavailable = |e: ControlError| {
        tracing::warn!(error = %e, tool = h.tool, "approval filing failed");
        ApprovalDeny::Unavailable("the control process cannot be reached".into())
    };
    // The hash binds the exact arguments; what control stores and shows
    // approvers has `audit.redact` applied, so secrets stay out of it.
    let args_hash = canonical_hash(&h.arguments);
    let redacted = !snap.audit.redact.is_empty();
    let shown = if redacted {
        crate::audit::redact(&h.arguments, &snap.audit.redact)
    } else {
        h.arguments.clone()
    };
    let tool_hash = shared.tool_hash(upstream, h.tool);
    let filing = Filing {
        tenant: who
            .caller
            .and_then(|c| c.tenant.as_deref())
            .map(str::to_owned),
        subject: who.caller.map_or("anonymous", |c| &*c.subject).to_owned(),
        session: who.session.map(str::to_owned),
        upstream: upstream.to_owned(),
        tool: h.tool.to_owned(),
        tool_hash: tool_hash.as_deref().map(str::to_owned),
        arguments: shown,
        args_hash: args_hash.clone(),
        redacted,
        policy_version: snap.version.to_string(),
        rule: h.rule.name.to_string(),
        approvers: h.rule.approvers.clone(),
        allow_self_approval: h.rule.allow_self_approval,
        expires_s: h.rule.expires.as_secs(),
        gateway: Some(control.gateway_id.clone()),
        request_id: who.request_id.map(str::to_owned),
    };
    let mut a = control.file(&filing).await.map_err(unavailable)?;
    if a.state == ApprovalState::Pending && h.rule.hold > Duration::ZERO {
        a = control
            .wait(&a.id, h.rule.hold)
            .await
            .map_err(unavailable)?;
    }
    match a.state {
        ApprovalState::Approved if !a.used => {
            if control
                .consume(&a.id, &args_hash)
                .await
                .map_err(unavailable)?
            {
                tracing::info!(approval = %a.id, tool = h.tool, "approved call proceeds");
                Ok(a.id)
            } else {
                Err(ApprovalDeny::Used { id: a.id })
            }
        }
        ApprovalState::Approved => Err(ApprovalDeny::Used { id: a.id }),
        ApprovalState::Pending => Err(ApprovalDeny::Pending {
            id: a.id,
            url: a.inbox_url,
            // URL-mode elicitation: declared at initialize (2025 sessions)
            // or in this request's own `_meta` (2026-07-28, stateless).
            elicit: who
                .session
                .is_some_and(|s| shared.sessions.url_elicitation(s))
                || declares_url_elicitation(body),
        }),
        ApprovalState::Expired => Err(ApprovalDeny::Expired { id: a.id }),
        ApprovalState::Denied | ApprovalState::Unknown => Err(ApprovalDeny::Denied {
            id: a.id,
            by: a.decided_by.unwrap_or_default(),
            reason: a.reason.unwrap_or_else(|| "no reason given".into()),
        }),
    }
}
