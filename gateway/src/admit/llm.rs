//! Admission of a model call: endpoint, body, grant, alias, limits, budgets
//! and token reservations, all before any upstream is touched.

use std::sync::Arc;
use std::time::Instant;

use pingora::proxy::Session;

use super::{limit_owner, Admit};
use crate::ctx::Ctx;
use crate::llm::{Api, LlmDeny, LlmRequest};
use crate::refusal::Refusal;
use crate::state::Shared;

pub(super) async fn admit(
    shared: &Shared,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<Admit, Refusal> {
    let rt = Arc::clone(&ctx.rt);
    let snap = &rt.snapshot;
    let route = ctx.route().ok_or(Refusal::NoRoute)?;
    let route_up = snap.upstream(route).name.clone();
    let route_name = route.name.clone();
    let req = session.req_header();
    let api = req
        .uri
        .path()
        .strip_prefix(route.path.as_str())
        .and_then(Api::from_path)
        .ok_or(Refusal::Llm(LlmDeny::UnknownEndpoint))?;
    let method = req.method.clone();
    if api == Api::Models {
        if method != http::Method::GET {
            return Err(Refusal::MethodNotAllowed);
        }
        let list = crate::llm::models_list(snap, &route_up, ctx.caller.as_ref());
        return Ok(Admit::Local("application/json", list));
    }
    if method != http::Method::POST {
        return Err(Refusal::MethodNotAllowed);
    }
    // The decision sees the body's model only, so nothing else the
    // client sends may choose one: LiteLLM (and others) prefer a
    // `?model=` in the query string over the body's. No query string is
    // forwarded, and the path goes upstream in its one canonical form.
    if req.uri.query().is_some() {
        return Err(Refusal::Llm(LlmDeny::BadRequest(
            "query strings are not accepted on model routes".into(),
        )));
    }
    let rest = api.path().to_owned();
    let body = super::body::read(session, ctx).await?;
    let t = Instant::now();
    let llm_req = LlmRequest::parse(api, body)
        .map_err(|e| Refusal::Llm(LlmDeny::BadRequest(e.to_string())))?;
    let model = llm_req.model.clone();
    let (subject, tenant, roles) = limit_owner(session, ctx.caller.as_ref());
    let input = crate::limits::LimitInput {
        tenant,
        subject: &subject,
        roles,
        route: &route_name,
        upstream: &route_up,
        method: api.operation(),
        target: None,
        model: Some(&model),
    };
    let m = &shared.metrics;
    let store = rt.limits.store();
    let crate::llm::Admitted {
        order,
        reservations,
        budgets,
        shared: ask,
    } = crate::llm::decide(
        snap,
        &rt.llm,
        &route_up,
        ctx.caller.as_ref(),
        &input,
        (&llm_req, store),
    )?;
    let reserved = crate::llm::LlmCall {
        req: llm_req,
        rest,
        order,
        reservations,
        budgets,
        shared: None,
        outcome: None,
    };
    // From here, refusals give the reservations back (settled on drop
    // of the call in `record`).
    ctx.decision.llm = Some(Box::new(reserved));
    if let Some(mut ask) = ask {
        // One round trip for every shared limit and budget together.
        match crate::llm::shared::admit(&rt.llm.scripts, &mut ask, m).await {
            Ok(()) => {
                if let Some(call) = ctx.decision.llm.as_mut() {
                    call.shared = Some(std::sync::Arc::new(ask));
                }
            }
            Err(Ok(deny)) => return Err(Refusal::Llm(deny)),
            Err(Err(_down)) => {
                if rt.limits.store_down("llm_shared", m)? {
                    // Decided here, as if nothing were shared.
                    let (held, budgets) = rt.llm.hold_local(&input, ask.need, |shared| shared)?;
                    if let Some(call) = ctx.decision.llm.as_mut() {
                        call.reservations.extend(held);
                        call.budgets.extend(budgets);
                    }
                }
            }
        }
    }
    if !rt.limits.is_empty() {
        rt.limits.check_rate(&input, m).await?;
        let mut permits = Vec::new();
        rt.limits.acquire(&input, &mut permits, m)?;
        ctx.decision.permits = permits;
    }
    ctx.phase("limits", Some(t));
    ctx.outcome.gateway_time += t.elapsed();
    Ok(Admit::Llm)
}
