//! A virtual server's `tasks/*`: a task is known by the source that
//! created it, and only there. Each source the caller may use is asked for
//! the handle (`tasks/get`), and the request goes to the one that knows it;
//! `tasks/list` merges a page of every source's, its cursor carrying each
//! source's position (`federation::cursor`). Nothing is kept: any replica
//! finds the task the same way.

use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Value};
use sluice_config::Server;

use super::super::Deps;
use super::call::{exchange, sent_id, Via};
use super::session::request;
use super::{answer, complete_if_stateless, refuse, tenant_may_use};
use crate::ctx::Ctx;
use crate::federation::call::CallParams;
use crate::federation::cursor::{self, Position};
use crate::federation::seal::SessionState;
use crate::mcp::RequestId;
use crate::refusal::Refusal;

/// The task methods.
pub(super) const METHODS: [&str; 4] = ["tasks/get", "tasks/result", "tasks/cancel", "tasks/list"];

pub(super) async fn run(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    (method, id): (&str, &RequestId),
) -> Result<()> {
    let body = ctx.request.body.clone().unwrap_or_default();
    let params = match CallParams::read(&body) {
        Ok(p) => p,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    let usable: Vec<usize> = server
        .sources
        .iter()
        .filter(|s| !s.is_http())
        .map(|s| s.upstream)
        .filter(|&u| tenant_may_use(ctx, u))
        .collect();
    if method == "tasks/list" {
        return list(deps, session, ctx, (server, sealed), (&params, id), &usable).await;
    }
    let Some(handle) = params
        .get("taskId")
        .and_then(|raw| serde_json::from_str::<String>(raw).ok())
    else {
        let why = Refusal::InvalidParams("taskId is not a string");
        return refuse(deps, session, ctx, why).await;
    };
    let mut found = None;
    for &upstream in &usable {
        let probe = json!({"jsonrpc": "2.0", "id": 0, "method": "tasks/get",
                                       "params": {"taskId": handle}});
        // A source that does not know the task (or has no tasks) refuses.
        if let Ok(status) = request(deps, ctx, (sealed, upstream), probe).await {
            found = Some((upstream, status));
            break;
        }
    }
    let Some((upstream, status)) = found else {
        let why = Refusal::InvalidParams("no task by that id");
        return refuse(deps, session, ctx, why).await;
    };
    if method == "tasks/get" {
        let result = complete_if_stateless(ctx, status);
        return answer(session, id, result).await;
    }
    let sent = sent_id(sealed, id);
    let forwarded = params.forward_as_sent(&sent, method);
    let to = (Via::session(sealed, &sent), upstream, handle.as_str());
    exchange(deps, session, ctx, to, forwarded, id).await
}

/// One page of every source's tasks, and the cursor to the next (each
/// source's own next cursor inside it); a source that cannot be asked is
/// left out of this page and of the next.
async fn list(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    (params, id): (&CallParams<'_>, &RequestId),
    usable: &[usize],
) -> Result<()> {
    let rt = ctx.rt.clone();
    let given = params
        .get("cursor")
        .map(|raw| serde_json::from_str::<String>(raw).map_err(|_| "cursor is not a string"));
    let positions = match given {
        None => vec![Position::Start; server.sources.len()],
        Some(Ok(c)) => match cursor::decode(&rt.snapshot, server, &c) {
            Ok(p) => p,
            Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
        },
        Some(Err(why)) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    let mut tasks = Vec::new();
    let mut next = Vec::with_capacity(positions.len());
    for (source, at) in server.sources.iter().zip(positions) {
        let upstream = source.upstream;
        let params = match &at {
            Position::Done => {
                next.push(Position::Done);
                continue;
            }
            _ if !usable.contains(&upstream) => {
                next.push(Position::Done);
                continue;
            }
            Position::Start => json!({}),
            Position::At(c) => json!({ "cursor": c }),
        };
        let ask = json!({"jsonrpc": "2.0", "id": 0, "method": "tasks/list", "params": params});
        match request(deps, ctx, (sealed, upstream), ask).await {
            Ok(mut result) => {
                if let Some(Value::Array(mine)) = result.get_mut("tasks").map(Value::take) {
                    tasks.extend(mine);
                }
                next.push(match result.get("nextCursor").and_then(Value::as_str) {
                    Some(c) => Position::At(c.to_owned()),
                    None => Position::Done,
                });
            }
            Err(_) => next.push(Position::Done),
        }
    }
    let mut result = json!({ "tasks": tasks });
    if let Some(c) = cursor::encode(&rt.snapshot, server, &next) {
        result["nextCursor"] = Value::String(c);
    }
    answer(session, id, complete_if_stateless(ctx, result)).await
}
