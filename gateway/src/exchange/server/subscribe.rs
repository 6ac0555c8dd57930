//! `subscriptions/listen` on a virtual server (2026-07-28): one stream to
//! the client that merges every source's change notifications. Each
//! resource URI goes to the one source that serves it, decided on by that
//! source's resource scopes and limits like `resources/subscribe`; a
//! source that speaks the revision is asked to listen for its part, one
//! that speaks 2025 gets a session of its own, `resources/subscribe` for
//! its URIs and its `GET` stream (ended with the client's stream). What
//! reaches the client is what the filter names, stamped with the client's
//! subscription id (`federation::subscription`): the acknowledgement
//! first, the listen request's result when every source's part has ended.

use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Value};
use sluice_config::Server;

use super::super::rpc::{self, Mirror, UpstreamSession};
use super::super::Deps;
use super::call::{limits, listing_source};
use super::listen::{merge, Reframe, Source};
use super::{hidden, refuse, source_failed, stateless, tenant_may_use, RESOURCES};
use crate::ctx::Ctx;
use crate::mcp::subscription::{self, Filter, Frame};
use crate::mcp::RequestId;
use crate::policy::decide::{Decide, Verdict};
use crate::policy::Deny;
use crate::refusal::Refusal;

pub(super) async fn listen(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    server: &Server,
    id: &RequestId,
) -> Result<()> {
    if !stateless(ctx) {
        // A 2025 session listens on its GET stream.
        let unknown = Deny::Unclassified {
            id: Some(id.clone()),
            method: "subscriptions/listen".into(),
        };
        return refuse(deps, session, ctx, Refusal::Policy(unknown)).await;
    }
    let params = super::params(ctx);
    let filter = match Filter::read(&Value::Object(params.clone())) {
        Ok(f) => f,
        Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
    };
    let parts = match assign(deps, session, ctx, server, (&filter, id)).await {
        Ok(p) => p,
        Err(r) => return refuse(deps, session, ctx, r).await,
    };
    let subscription: Value = serde_json::from_str(id.raw()).unwrap_or(Value::Null);
    let mut sources = Vec::new();
    // The 2025 sources' sessions, ended with the stream.
    let mut opened = Vec::new();
    for (i, uris) in parts {
        let upstream = server.sources[i].upstream;
        let part = filter.part(uris);
        let frame = reframing(part.clone(), subscription.clone());
        let answer = if rpc::speaks_stateless(deps, ctx, upstream).await {
            listen_stateless(deps, ctx, upstream, (&params, &part, id)).await
        } else {
            match listen_in_session(deps, ctx, upstream, &part).await {
                Ok((s, answer)) => {
                    opened.push(s);
                    Ok(answer)
                }
                Err(e) => Err(e),
            }
        };
        match answer {
            Ok(Some(answer)) => sources.push(Source::new(ctx, upstream, answer, frame)),
            Ok(None) => {}
            Err(e) => source_failed(deps, ctx, upstream, &e),
        }
    }
    let ack = subscription::acknowledged(&filter, &subscription);
    let end = subscription::ended(&subscription);
    let streamed = merge(deps, session, ctx, sources, (Some(ack), Some(end))).await;
    for s in opened {
        if let Err(e) = rpc::close(deps, ctx, &s).await {
            tracing::debug!(error = %e, "a source session opened to listen was not ended");
        }
    }
    streamed
}

/// The sources the caller may use, each with the URIs it serves: every URI
/// served by exactly one source, readable there by the caller, within the
/// limits (`resources/subscribe` on that source); and the listen itself
/// within each source's limits.
async fn assign(
    deps: Deps<'_>,
    session: &Session,
    ctx: &mut Ctx,
    server: &Server,
    (filter, id): (&Filter, &RequestId),
) -> std::result::Result<Vec<(usize, Vec<String>)>, Refusal> {
    let rt = ctx.rt.clone();
    let snap = &rt.snapshot;
    let mut parts: Vec<(usize, Vec<String>)> = (0..server.sources.len())
        .filter(|&i| !server.sources[i].is_http())
        .filter(|&i| tenant_may_use(ctx, server.sources[i].upstream))
        .map(|i| (i, Vec::new()))
        .collect();
    for uri in &filter.uris {
        if let Err(why) = sluice_config::uri::check_uri(uri) {
            return Err(Refusal::Policy(Deny::UriNotNormal {
                id: Some(id.clone()),
                why,
            }));
        }
        let Some(i) = listing_source(deps, ctx, (server, None), uri).await else {
            return Err(hidden(RESOURCES, id, uri));
        };
        let up_name = snap.upstreams[server.sources[i].upstream].name.as_str();
        if let Some(c) = &ctx.caller {
            let verdict = snap
                .policy
                .decide(c.roles(), RESOURCES.scope, up_name, uri, &mut || None);
            if verdict != Verdict::Allow {
                return Err(hidden(RESOURCES, id, uri));
            }
        }
        limits(deps, session, ctx, (up_name, "resources/subscribe"), uri).await?;
        if let Some((_, uris)) = parts.iter_mut().find(|(s, _)| *s == i) {
            uris.push(uri.clone());
        }
    }
    // A source asked for nothing it can send is not asked.
    let flags = filter.tools || filter.prompts || filter.resources;
    parts.retain(|(_, uris)| flags || !uris.is_empty());
    for (i, _) in &parts {
        let up_name = snap.upstreams[server.sources[*i].upstream].name.as_str();
        limits(deps, session, ctx, (up_name, "subscriptions/listen"), "").await?;
    }
    Ok(parts)
}

/// A source's messages for the client: what `part` names, stamped with
/// the client's subscription id.
fn reframing(part: Filter, subscription: Value) -> Reframe {
    Box::new(
        move |data, out| match subscription::reframe(data, &part, &subscription) {
            Frame::Forward(msg) => {
                crate::mcp::sse::write_event(out, &msg);
                true
            }
            Frame::Skip => true,
            Frame::Ended => false,
        },
    )
}

/// Ask a source that speaks the revision to listen for `part`: the
/// client's request with the source's part of the filter (its `_meta` as
/// sent).
async fn listen_stateless(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    (params, part, id): (&serde_json::Map<String, Value>, &Filter, &RequestId),
) -> Result<Option<crate::conn::h1::Response>> {
    let mut params = params.clone();
    params.insert("notifications".into(), part.to_json());
    let id: Value = serde_json::from_str(id.raw()).unwrap_or(Value::Null);
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
                      "params": params});
    let mirror = Mirror {
        method: "subscriptions/listen",
        name: None,
    };
    let s = UpstreamSession::stateless(upstream, mirror);
    rpc::stream(deps, ctx, &s, body.to_string().into_bytes())
        .await
        .map(Some)
}

/// A 2025 source: a session of its own, subscribed to `part`'s URIs, and
/// its event stream (`None` when it has none).
async fn listen_in_session(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    upstream: usize,
    part: &Filter,
) -> Result<(UpstreamSession, Option<crate::conn::h1::Response>)> {
    let s = rpc::open(deps, ctx, upstream, None).await?;
    let subscribed = subscribe(deps, ctx, &s, &part.uris).await;
    let answer = match subscribed {
        Ok(()) => rpc::listen(deps, ctx, &s).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => Ok((s, answer)),
        Err(e) => {
            let _ = rpc::close(deps, ctx, &s).await;
            Err(e)
        }
    }
}

/// `resources/subscribe` for each of `uris` in the session; a refusal
/// fails the source's part.
async fn subscribe(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    s: &UpstreamSession,
    uris: &[String],
) -> Result<()> {
    for (n, uri) in uris.iter().enumerate() {
        let id = Value::from(n + 1);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "resources/subscribe",
                          "params": {"uri": uri}});
        let (head, answer) = rpc::send(deps, ctx, s, body.to_string().into_bytes()).await?;
        rpc::result(deps, ctx, s, (&head, answer), &id).await?;
    }
    Ok(())
}
