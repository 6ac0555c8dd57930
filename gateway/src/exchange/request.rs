//! The upstream request, for every exchange: the upstream's path and
//! `Host`, the client's hop-by-hop and forwarding headers gone, the client
//! address, and — the client's credentials never pass — the upstream's own
//! credential and, where configured, an assertion of who is calling.

use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::{Error, ErrorType, Result};

use crate::ctx::Ctx;
use crate::identity::{AssertionClaims, Caller, DEFAULT_ASSERTION_TTL};
use crate::state::Shared;
use crate::{inject, upstream};

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// Where the request goes: an upstream of the snapshot and the path on it.
pub struct Target<'a> {
    pub upstream: usize,
    pub path: &'a str,
}

/// Rewrite `req` (the client's head) for `target`. `client`: the address
/// to send as `X-Forwarded-For`, if the upstream is to know it.
pub fn prepare(
    shared: &Shared,
    client: Option<std::net::IpAddr>,
    req: &mut RequestHeader,
    target: Target<'_>,
    ctx: &Ctx,
) -> Result<()> {
    let snap = &ctx.rt.snapshot;
    let up = &snap.upstreams[target.upstream];
    upstream::rewrite_request(req, up, target.path)?;
    if ctx.request.client_hop_headers {
        upstream::strip_client_hop_headers(req);
    }
    // The client's own `X-Forwarded-For` never passes: the gateway says
    // who connected, or nothing.
    match client {
        Some(ip) => req.insert_header(X_FORWARDED_FOR, upstream::forwarded_for(ip))?,
        None => {
            if req.headers.contains_key(&X_FORWARDED_FOR) {
                req.remove_header(&X_FORWARDED_FOR);
            }
        }
    }
    let tenant = ctx.caller.as_ref().and_then(|c| c.tenant.as_deref());
    // Acting as the caller: the exchanged token is the one credential.
    let exchanged;
    let credential = match ctx
        .rt
        .exchangers
        .get(target.upstream)
        .and_then(Option::as_ref)
    {
        Some(ex) => {
            let value = ctx
                .exchange
                .exchanged
                .iter()
                .find(|(u, _)| *u == target.upstream)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    Error::explain(
                        ErrorType::InternalError,
                        "no exchanged token for the upstream",
                    )
                })?;
            exchanged = inject::UpstreamCredential {
                header: ex.header.clone(),
                value,
            };
            Some(&exchanged)
        }
        None => ctx.rt.credential_for(target.upstream, tenant),
    };
    // With identity on, the gateway is the resource server: the client's
    // credentials stop here and the upstream sees its own. A model
    // upstream's key is sent whether or not identity is on.
    let model_call = ctx
        .route()
        .is_some_and(|r| r.transport == sluice_config::RouteTransport::Llm);
    if !snap.identity.enabled && (credential.is_none() || !model_call) {
        return trace_context(req, ctx);
    }
    let assertion = match (&up.assertion_header, &ctx.caller) {
        (Some(_), Some(c)) => Some(assertion(shared, ctx, c, &up.name, up.assertion_reuse)?),
        _ => None,
    };
    let user = match (
        ctx.rt
            .user_credentials
            .get(target.upstream)
            .and_then(Option::as_ref),
        &ctx.caller,
    ) {
        (Some(set), Some(c)) => set.get(&c.subject).map(|v| (&set.header, v)),
        _ => None,
    };
    inject::apply(
        req,
        up.assertion_header.as_deref(),
        credential,
        user,
        assertion.as_deref(),
    )?;
    trace_context(req, ctx)
}

/// The trace context toward the upstream, set last: the client's
/// credentials are gone by then, so the header map seldom has to grow.
fn trace_context(req: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    match ctx.trace.as_deref() {
        Some(trace) => crate::trace::propagate(trace, req),
        None => Ok(()),
    }
}

/// Where `upstream` acts as the caller (`token_exchange`), have the
/// caller's token exchanged for its own before the request is prepared:
/// kept in `ctx` for every request this exchange sends there.
pub async fn act_as_caller(
    shared: &Shared,
    ctx: &mut Ctx,
    upstream: usize,
) -> std::result::Result<(), crate::token_exchange::ExchangeError> {
    let Some(ex) = ctx.rt.exchangers.get(upstream).and_then(Option::as_ref) else {
        return Ok(());
    };
    if ctx.exchange.exchanged.iter().any(|(u, _)| *u == upstream) {
        return Ok(());
    }
    let ex = ex.clone();
    let who = crate::token_exchange::Subject {
        tenant: ctx.caller.as_ref().and_then(|c| c.tenant.as_deref()),
        subject: ctx.caller.as_ref().map_or("", |c| &*c.subject),
        token: ctx
            .request
            .subject_token
            .as_deref()
            .filter(|_| ctx.caller.as_ref().is_some_and(|c| !c.anonymous)),
    };
    let value = shared.tokens.get(&ex, who, &shared.metrics).await?;
    ctx.exchange.exchanged.push((upstream, value));
    Ok(())
}

/// A short-lived JWT saying who is calling, for this upstream only.
fn assertion(
    shared: &Shared,
    ctx: &Ctx,
    c: &Caller,
    upstream: &str,
    reuse: Duration,
) -> Result<String> {
    let session = ctx.request.session.as_deref();
    let sign = |request_id: Option<String>| {
        let claims = AssertionClaims::for_caller(
            "sluice",
            c,
            upstream,
            request_id,
            session,
            DEFAULT_ASSERTION_TTL,
        );
        shared
            .signer
            .sign(&claims)
            .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()))
    };
    if reuse.is_zero() {
        return sign(ctx.request.request_id.clone());
    }
    // Everything the assertion says is in the key.
    let mut key = String::with_capacity(128);
    for part in [
        upstream,
        &c.subject,
        c.tenant.as_deref().unwrap_or(""),
        session.unwrap_or(""),
    ] {
        key.push_str(part);
        key.push('\0');
    }
    for r in &c.roles {
        key.push_str(r);
        key.push(',');
    }
    shared.assertions.get_or_sign(&key, reuse, || sign(None))
}
