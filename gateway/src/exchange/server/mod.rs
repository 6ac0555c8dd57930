//! A virtual server's exchange: the gateway answers as the MCP server and
//! calls each source as an MCP client (`super::rpc`). `initialize`,
//! `server/discover` and `ping` are answered here (`session`); a list of
//! tools, prompts or resources merges every reachable source's items the
//! caller may see (`list`); a `tools/call` or `prompts/get` goes to the one
//! source that serves the name, with the upstream's own name and the
//! arguments as forwarded, and a `resources/read` to the one source that
//! lists the URI (or whose template matches it), and so do `subscribe` and
//! `unsubscribe` — the policy and the limits decide on those (`call`).
//! `logging/setLevel` goes to every source; a request a source sends the
//! client on a call's stream gets an id naming the source, and the client's
//! answer goes back to it (`federation::relay`); a `GET` stream merges
//! every source session's own (`listen`); `tasks/*` go to the source that
//! knows the task (`task`); a stateless client's `subscriptions/listen`
//! merges every source's change notifications (`subscribe`); `DELETE` ends
//! the source sessions; a legacy HTTP+SSE client's messages run as
//! Streamable HTTP requests, answered on its stream (`legacy`). A source that fails is left out of a list (a log line,
//! `sluice_upstream_errors_total`, `sluice_upstream_up` 0); the others
//! keep serving.

mod call;
mod catalog;
mod definitions;
mod ended;
mod http_tool;
mod idempotent;
mod legacy;
mod list;
mod listen;
mod session;
mod subscribe;
mod task;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use sluice_config::{Kind, ToolState};

use super::Deps;
use crate::ctx::Ctx;
use crate::failure::Failure;
use crate::federation::seal::SessionState;
use crate::federation::ItemKind;
use crate::mcp::{Method, RequestId};
use crate::policy::Deny;
use crate::refusal::{self, Refusal};

/// What a kind of named item is called on the wire and in policy.
#[derive(Clone, Copy)]
pub(super) struct Items {
    pub kind: ItemKind,
    /// Its policy scopes' kind.
    pub scope: Kind,
    pub list: &'static str,
    /// The list result's array.
    pub key: &'static str,
    /// The method that uses one by name.
    pub call: &'static str,
    /// What names one: `name`, or a resource's `uri`.
    pub field: &'static str,
}

pub(super) const TOOLS: Items = Items {
    kind: ItemKind::Tool,
    scope: Kind::Tools,
    list: "tools/list",
    key: "tools",
    call: "tools/call",
    field: "name",
};

pub(super) const PROMPTS: Items = Items {
    kind: ItemKind::Prompt,
    scope: Kind::Prompts,
    list: "prompts/list",
    key: "prompts",
    call: "prompts/get",
    field: "name",
};

pub(super) const RESOURCES: Items = Items {
    kind: ItemKind::Resource,
    scope: Kind::Resources,
    list: "resources/list",
    key: "resources",
    call: "resources/read",
    field: "uri",
};

pub(super) const TEMPLATES: Items = Items {
    kind: ItemKind::Template,
    scope: Kind::Resources,
    list: "resources/templates/list",
    key: "resourceTemplates",
    call: "resources/read",
    field: "uriTemplate",
};

pub async fn run(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
    let rt = ctx.rt.clone();
    let server = ctx
        .route()
        .and_then(|r| r.server)
        .map(|i| &rt.snapshot.servers[i])
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no server"))?;
    let req = session.req_header();
    if req.method == http::Method::GET
        && req.headers.get(MCP_SESSION_ID).is_none()
        && req.headers.get("mcp-protocol-version").is_none()
    {
        // Neither era of Streamable HTTP: a legacy client's stream.
        return legacy::open(deps, session, ctx).await;
    }
    if req.method == http::Method::POST && legacy::is_message(req, ctx) {
        return legacy::post(deps, session, ctx).await;
    }
    if session.req_header().method == http::Method::GET {
        let listened = match session::client_session(deps, session, ctx, server).await {
            Ok(sealed) => listen::listen(deps, session, ctx, (server, sealed.as_ref())).await,
            Err(r) => Err(r),
        };
        return match listened {
            Ok(streamed) => streamed,
            Err(r) => refuse(deps, session, ctx, r).await,
        };
    }
    if ctx.request.method_is_delete {
        let ended = match session::client_session(deps, session, ctx, server).await {
            Ok(sealed) => session::close(deps, session, ctx, sealed.as_ref()).await,
            Err(r) => Err(r),
        };
        return match ended {
            Ok(()) => Ok(()),
            Err(r) => refuse(deps, session, ctx, r).await,
        };
    }
    let (method, id) = {
        let first = ctx
            .request
            .facts
            .as_ref()
            .map(|f| f.first())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no message"))?;
        (first.method.clone(), first.id.clone())
    };
    let sealed = match session::client_session(deps, session, ctx, server).await {
        Ok(s) => s,
        Err(r) => return refuse(deps, session, ctx, r).await,
    };
    let Some(id) = id else {
        if method == Method::Cancelled {
            session::cancel(deps, ctx, sealed.as_ref()).await;
        }
        // Notifications: nothing to answer.
        return write(session, 202, None, None).await;
    };
    let sealed = sealed.as_ref();
    match method {
        Method::Initialize => session::initialize(deps, session, ctx, server, &id).await,
        Method::ServerDiscover => {
            let result = session::discover(deps, ctx, server).await;
            answer(session, &id, result).await
        }
        Method::Ping => {
            let result = complete_if_stateless(ctx, json!({}));
            answer(session, &id, result).await
        }
        Method::None => {
            match session::relay_answer(deps, session, ctx, (server, sealed), &id).await {
                Ok(()) => Ok(()),
                Err(r) => refuse(deps, session, ctx, r).await,
            }
        }
        Method::LoggingSetLevel => {
            let result = session::set_level(deps, ctx, (server, sealed)).await;
            answer(session, &id, result).await
        }
        Method::ToolsList if server.catalog => answer(session, &id, catalog::list(ctx)).await,
        Method::ToolsCall if server.catalog => {
            catalog::call(deps, session, ctx, (server, sealed), &id).await
        }
        Method::ToolsList
        | Method::PromptsList
        | Method::ResourcesList
        | Method::ResourcesTemplatesList => {
            let items = match method {
                Method::ToolsList => TOOLS,
                Method::PromptsList => PROMPTS,
                Method::ResourcesList => RESOURCES,
                _ => TEMPLATES,
            };
            let cursor = params(ctx)
                .get("cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match list::page(deps, ctx, (server, sealed), items, cursor.as_deref()).await {
                Ok(result) => answer(session, &id, result).await,
                Err(r) => refuse(deps, session, ctx, r).await,
            }
        }
        Method::ToolsCall => call::run(deps, session, ctx, (server, sealed), TOOLS, &id).await,
        Method::PromptsGet => call::run(deps, session, ctx, (server, sealed), PROMPTS, &id).await,
        Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
            call::read(deps, session, ctx, (server, sealed), (method.name(), &id)).await
        }
        Method::CompletionComplete => {
            call::complete(deps, session, ctx, (server, sealed), &id).await
        }
        Method::SubscriptionsListen => subscribe::listen(deps, session, ctx, server, &id).await,
        Method::Other(ref name) if task::METHODS.contains(&name.as_ref()) => {
            let name = name.clone();
            task::run(deps, session, ctx, (server, sealed), (&name, &id)).await
        }
        _ => {
            let unknown = Deny::Unclassified {
                id: Some(id.clone()),
                method: method.name().into(),
            };
            refuse(deps, session, ctx, Refusal::Policy(unknown)).await
        }
    }
}

/// A request of the stateless revision (2026-07-28): no session, and its
/// results say `resultType`.
fn stateless(ctx: &Ctx) -> bool {
    ctx.request.revision.is_some_and(|r| r.is_stateless())
}

/// A result as the stateless revision gives it.
fn mark_complete(mut result: Value) -> Value {
    if let Some(r) = result.as_object_mut() {
        r.insert("resultType".into(), json!("complete"));
    }
    result
}

fn complete_if_stateless(ctx: &Ctx, result: Value) -> Value {
    if stateless(ctx) {
        mark_complete(result)
    } else {
        result
    }
}

/// `params` of the request, as sent (empty if absent or not an object).
fn params(ctx: &Ctx) -> serde_json::Map<String, Value> {
    let body = ctx.request.body.as_deref().unwrap_or_default();
    crate::policy::strict::parse(body)
        .and_then(|v| v.get("params").cloned())
        .and_then(|p| match p {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

fn tenant_may_use(ctx: &Ctx, upstream: usize) -> bool {
    let up = &ctx.rt.snapshot.upstreams[upstream];
    crate::policy::tenant_may_use(up, ctx.caller.as_ref())
}

/// What the mark of a relayed request's id binds, besides the source and
/// its id (`federation::relay`): the client's session, or for a stateless
/// client its caller.
fn relay_binding(ctx: &Ctx, sealed: Option<&SessionState>) -> String {
    match sealed {
        Some(state) => format!("session:{}", state.tag),
        None => {
            let (subject, tenant) = ctx.caller_names();
            format!("caller:{subject}\0{}", tenant.unwrap_or(""))
        }
    }
}

/// Does this route serve tools in `state` (a `disabled` tool: never)?
fn serves(ctx: &Ctx, state: ToolState) -> bool {
    ctx.route().is_some_and(|r| r.serves.contains(&state))
}

/// Hidden and unknown look the same.
fn hidden(items: Items, id: &RequestId, name: &str) -> Refusal {
    Refusal::Policy(Deny::Hidden {
        id: Some(id.clone()),
        kind: items.scope,
        name: name.into(),
    })
}

fn source_failed(deps: Deps<'_>, ctx: &Ctx, upstream: usize, e: &Error) {
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    let kind = Failure::of(e);
    tracing::warn!(route = ctx.route_label(), upstream = %up, error = %e, "a virtual server's source failed; its items are left out");
    let m = &deps.shared.metrics;
    m.upstream_errors
        .with_label_values(&[ctx.route_label(), kind.label()])
        .inc();
    m.upstream_up.with_label_values(&[up.as_str()]).set(0);
}

/// A source answered a list or opened a session: up again.
fn source_answered(deps: Deps<'_>, ctx: &Ctx, upstream: usize) {
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    deps.shared
        .metrics
        .upstream_up
        .with_label_values(&[up.as_str()])
        .set(1);
}

async fn refuse(deps: Deps<'_>, session: &mut Session, ctx: &mut Ctx, r: Refusal) -> Result<()> {
    refusal::answer(deps.shared, session, ctx, &r).await;
    Ok(())
}

async fn answer(session: &mut Session, id: &RequestId, result: Value) -> Result<()> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    body.extend_from_slice(id.raw().as_bytes());
    body.extend_from_slice(br#","result":"#);
    serde_json::to_writer(&mut body, &result)
        .map_err(|e| Error::because(ErrorType::InternalError, "an answer not written", e))?;
    body.push(b'}');
    write(session, 200, Some(Bytes::from(body)), None).await
}

const MCP_SESSION_ID: &str = "mcp-session-id";

async fn write(
    session: &mut Session,
    status: u16,
    body: Option<Bytes>,
    session_id: Option<&str>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    if let Some(sid) = session_id {
        resp.insert_header(MCP_SESSION_ID, sid)?;
    }
    let len = body.as_ref().map_or(0, Bytes::len);
    if body.is_some() {
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, len.to_string())?;
    session
        .write_response_header(Box::new(resp), body.is_none())
        .await?;
    if let Some(b) = body {
        session.write_response_body(Some(b), true).await?;
    }
    Ok(())
}
