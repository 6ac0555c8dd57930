//! Access decisions on MCP messages: who the caller is for policy purposes
//! (`Caller`), tenant resolution, the per-message RBAC decision against the
//! snapshot's compiled policy, and filtering of list results. Pure functions
//! of (snapshot, caller, request facts); the proxy turns their refusals into
//! wire errors through `refusal`.

mod conditions;
pub mod decide;
pub mod egress;
pub mod hosts;
pub mod list;
pub(crate) mod strict;

use sluice_config::{Kind, Route, Snapshot};

use decide::{Decide, Verdict};

use crate::mcp::ListedTool;

use crate::mcp::jsonrpc::RefKind;
use crate::mcp::{Kind as MsgKind, Message, Method, RequestFacts, RequestId};

/// Who is calling, as policy sees it (defined with identity).
pub use crate::identity::Caller;

/// Why a message may not go upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Deny {
    /// Not granted: answered exactly like an unknown tool, resource or prompt.
    #[error("{}", hidden_message(*kind, name))]
    Hidden {
        id: Option<RequestId>,
        kind: Kind,
        name: Box<str>,
    },
    /// Granted in general, refused for these arguments.
    #[error("denied by policy: {reason}")]
    Conditions {
        id: Option<RequestId>,
        reason: &'static str,
    },
    /// A resource URI not in normal form (dot segments, hidden separators,
    /// needless escapes): an upstream could read another resource than the
    /// one the scopes were matched against.
    #[error("resource URI not in normal form: {why}")]
    UriNotNormal {
        id: Option<RequestId>,
        why: sluice_config::uri::NotNormal,
    },
    /// `completion/complete` on a prompt or resource template the caller
    /// may not see: answered with no completions, as for one that does not
    /// exist, so hidden and absent cannot be told apart.
    #[error("no completions")]
    HiddenCompletion {
        id: Option<RequestId>,
        /// The request speaks the stateless revision, whose results say
        /// `resultType`.
        stateless: bool,
    },
    /// A request whose method the gateway does not classify, on a route
    /// that does not forward them: answered as an unknown method.
    #[error("Method not found: {method}")]
    Unclassified {
        id: Option<RequestId>,
        method: Box<str>,
    },
    #[error("JSON-RPC batches are not part of protocol revision {0}")]
    Batch(&'static str),
    /// List results are filtered per response; inside a batch they could not
    /// be, so a batch carrying a list request is refused when policy applies.
    #[error("list requests cannot be batched when access policy applies")]
    BatchedList,
}

fn hidden_message(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Tools => format!("Unknown tool: {name}"),
        Kind::Resources => format!("Resource not found: {name}"),
        Kind::Prompts => format!("Unknown prompt: {name}"),
        Kind::Models => format!("Unknown model: {name}"),
    }
}

impl Deny {
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            Deny::Hidden { id, .. }
            | Deny::Conditions { id, .. }
            | Deny::UriNotNormal { id, .. }
            | Deny::HiddenCompletion { id, .. }
            | Deny::Unclassified { id, .. } => id.as_ref(),
            Deny::Batch(_) | Deny::BatchedList => None,
        }
    }
}

/// What a message acts on, for policy: `(kind, name)`.
pub fn action(msg: &Message) -> Option<(Kind, &str)> {
    let kind = match msg.method {
        Method::ToolsCall => Kind::Tools,
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            Kind::Resources
        }
        Method::PromptsGet => Kind::Prompts,
        _ => return None,
    };
    Some((kind, msg.target.as_deref()?))
}

/// The first request of a method the gateway does not classify, when the
/// route does not forward them.
pub fn unclassified(route: &Route, facts: &RequestFacts) -> Result<(), Deny> {
    if route.forward_unclassified {
        return Ok(());
    }
    match facts
        .messages
        .iter()
        .find(|m| m.kind == MsgKind::Request && matches!(m.method, Method::Other(_)))
    {
        Some(m) => Err(Deny::Unclassified {
            id: m.id.clone(),
            method: m.method.name().into(),
        }),
        None => Ok(()),
    }
}

/// Decide every message of a request body. `body` holds the arguments the
/// facts point into; they are parsed only when a rule has conditions.
pub fn authorize(
    snap: &Snapshot,
    route: &Route,
    caller: &Caller,
    facts: &RequestFacts,
    body: &[u8],
) -> Result<(), Deny> {
    let upstream = snap.upstream(route).name.as_str();
    if facts.batch && facts.messages.iter().any(|m| list::is_list(&m.method)) {
        return Err(Deny::BatchedList);
    }
    // Notifications too: a `tools/call` without an id must not run unchecked.
    for msg in facts
        .messages
        .iter()
        .filter(|m| m.kind != MsgKind::Response)
    {
        if let (Method::CompletionComplete, Some(r), Some(name)) =
            (&msg.method, msg.reference, msg.target.as_deref())
        {
            let kind = match r {
                RefKind::Prompt => Kind::Prompts,
                RefKind::Resource => Kind::Resources,
            };
            if !snap.policy.visible(caller.roles(), kind, upstream, name) {
                return Err(Deny::HiddenCompletion {
                    id: msg.id.clone(),
                    stateless: msg.revision.is_some_and(|r| r.is_stateless()),
                });
            }
            continue;
        }
        if msg.method == Method::SubscriptionsListen {
            listen_uris(snap, (caller, upstream), msg, body)?;
            continue;
        }
        let Some((kind, name)) = action(msg) else {
            continue;
        };
        if kind == Kind::Resources {
            sluice_config::uri::check_uri(name).map_err(|why| Deny::UriNotNormal {
                id: msg.id.clone(),
                why,
            })?;
        }
        let mut args = || {
            msg.arguments
                .clone()
                .and_then(|r| body.get(r))
                .and_then(strict::parse)
        };
        match snap
            .policy
            .decide(caller.roles(), kind, upstream, name, &mut args)
        {
            Verdict::Allow => {}
            Verdict::Hidden => {
                return Err(Deny::Hidden {
                    id: msg.id.clone(),
                    kind,
                    name: name.into(),
                })
            }
            Verdict::Denied(reason) => {
                return Err(Deny::Conditions {
                    id: msg.id.clone(),
                    reason,
                })
            }
        }
    }
    Ok(())
}

/// May this caller's tenant use `up` at all? (Without a caller, only an
/// upstream open to every tenant.)
pub fn tenant_may_use(up: &sluice_config::Upstream, caller: Option<&Caller>) -> bool {
    let allowed = &up.tenants;
    allowed.is_empty()
        || caller
            .and_then(|c| c.tenant.as_deref())
            .is_some_and(|t| allowed.iter().any(|a| a == t))
}

/// Why no tenant could be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("this request names no tenant and the caller has several: send X-Tenant-ID")]
    Ambiguous,
    #[error("the caller belongs to no tenant")]
    None,
    #[error("X-Tenant-ID names a tenant the caller does not belong to")]
    NotMember,
}

/// The tenant of a request: the `X-Tenant-ID` header if it names one of the
/// caller's tenants, else the caller's only tenant. Never a guess.
pub fn resolve_tenant<'a>(
    snap: &Snapshot,
    caller_tenants: &'a [String],
    header: Option<&'a str>,
) -> Result<Option<&'a str>, TenantError> {
    if snap.tenants.is_empty() && caller_tenants.is_empty() && header.is_none() {
        return Ok(None);
    }
    match header {
        Some(h) => caller_tenants
            .iter()
            .find(|t| *t == h)
            .map(|t| Some(t.as_str()))
            .ok_or(TenantError::NotMember),
        None => match caller_tenants {
            [] => Err(TenantError::None),
            [one] => Ok(Some(one.as_str())),
            _ => Err(TenantError::Ambiguous),
        },
    }
}

/// Rules that name a tool this upstream does not list, or a condition on an
/// argument the tool's input schema lacks: each can never match.
pub fn catalog_problems(snap: &Snapshot, upstream: &str, tools: &[ListedTool]) -> Vec<String> {
    let mut out = Vec::new();
    for role in snap.policy.roles() {
        for (what, rules) in [("allow", &role.allow), ("deny", &role.deny)] {
            for rule in rules.iter() {
                let s = &rule.scope;
                if s.kind != Kind::Tools || s.upstream_literal() != Some(upstream) {
                    continue;
                }
                let Some(name) = s.name_literal() else {
                    continue;
                };
                match tools.iter().find(|t| *t.name == *name) {
                    None => out.push(format!(
                        "roles.{}.{what}: `{}` names a tool the upstream does not list",
                        role.name, s.text
                    )),
                    Some(tool) => {
                        let Some(args) = &tool.arguments else {
                            continue;
                        };
                        for c in &rule.when {
                            let first = c
                                .pointer
                                .trim_start_matches('/')
                                .split('/')
                                .next()
                                .unwrap_or("");
                            if !first.is_empty() && !args.iter().any(|a| **a == *first) {
                                out.push(format!(
                                    "roles.{}.{what}: `{}` tests `{}`, which the tool's input schema lacks",
                                    role.name, s.text, c.pointer
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// A listen request's resource subscriptions (2026-07-28): every URI one
/// the caller may read, in normal form. A filter that cannot be read one
/// way is refused: what the upstream would subscribe to is not known.
fn listen_uris(
    snap: &Snapshot,
    (caller, upstream): (&Caller, &str),
    msg: &Message,
    body: &[u8],
) -> Result<(), Deny> {
    let params =
        strict::parse(body).and_then(|mut v| v.get_mut("params").map(serde_json::Value::take));
    let filter = params
        .as_ref()
        .ok_or("no params")
        .and_then(crate::mcp::subscription::Filter::read)
        .map_err(|reason| Deny::Conditions {
            id: msg.id.clone(),
            reason,
        })?;
    for uri in &filter.uris {
        sluice_config::uri::check_uri(uri).map_err(|why| Deny::UriNotNormal {
            id: msg.id.clone(),
            why,
        })?;
        let verdict =
            snap.policy
                .decide(caller.roles(), Kind::Resources, upstream, uri, &mut || None);
        if verdict != Verdict::Allow {
            return Err(Deny::Hidden {
                id: msg.id.clone(),
                kind: Kind::Resources,
                name: uri.as_str().into(),
            });
        }
    }
    Ok(())
}
