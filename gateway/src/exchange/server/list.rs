//! A virtual server's lists: each page takes the next page of every source
//! not done (its position in the client's cursor), keeps what the caller
//! may see, merges (`federation::tools::merge`: names, overrides,
//! collisions withheld), and hands back a cursor with every source's
//! position. A source that cannot be listed is left out of this listing.

use serde_json::{json, Value};
use sluice_config::{Server, Source};

use super::super::Deps;
use super::definitions;
use super::session::request;
use super::{
    complete_if_stateless, serves, source_answered, source_failed, stateless, tenant_may_use, Items,
};
use crate::ctx::Ctx;
use crate::federation::cursor::{self, Position};
use crate::federation::seal::SessionState;
use crate::federation::tools::merge;
use crate::federation::{Catalog, ItemKind};
use crate::policy::decide::Decide;
use crate::refusal::Refusal;

/// Most pages read from one source when a whole list is needed.
const MAX_PAGES: usize = 20;

/// One page of the merged list of `items`.
pub(super) async fn page(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    items: Items,
    cursor: Option<&str>,
) -> Result<Value, Refusal> {
    let rt = ctx.rt.clone();
    let mut at = match cursor {
        None => vec![Position::Start; server.sources.len()],
        Some(c) => cursor::decode(&rt.snapshot, server, c).map_err(Refusal::InvalidParams)?,
    };
    let mut lists: Vec<(usize, Vec<Value>)> = Vec::new();
    for (i, src) in server.sources.iter().enumerate() {
        let params = match &at[i] {
            Position::Done => continue,
            _ if !tenant_may_use(ctx, src.upstream) => {
                at[i] = Position::Done;
                continue;
            }
            Position::Start => json!({}),
            Position::At(c) => json!({ "cursor": c }),
        };
        if src.is_http() {
            // Declared, not listed: tools only, all in one page.
            at[i] = Position::Done;
            if items.kind == ItemKind::Tool {
                let mut listed = super::http_tool::listed(src);
                keep(deps, ctx, src, items, &mut listed);
                lists.push((i, listed));
            }
            continue;
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": items.list, "params": params});
        match request(deps, ctx, (sealed, src.upstream), body).await {
            Ok(result) => {
                at[i] = match result.get("nextCursor").and_then(Value::as_str) {
                    Some(next) => Position::At(next.to_owned()),
                    None => Position::Done,
                };
                let mut result = result;
                let mut listed = match result.get_mut(items.key).map(Value::take) {
                    Some(Value::Array(listed)) => listed,
                    _ => Vec::new(),
                };
                keep(deps, ctx, src, items, &mut listed);
                lists.push((i, listed));
                source_answered(deps, ctx, src.upstream);
            }
            Err(e) => {
                source_failed(deps, ctx, src.upstream, &e);
                at[i] = Position::Done;
            }
        }
    }
    let merged = merge(Catalog::new(server), items.kind, lists);
    for c in &merged.collisions {
        tracing::warn!(server = %server.name, name = %c.name, claimants = ?c.claimants, "items share a name on a virtual server; both withheld");
        deps.shared
            .metrics
            .server_name_collisions
            .with_label_values(&[server.name.as_str()])
            .inc();
    }
    let mut result = Value::Object(serde_json::Map::from_iter([(
        items.key.to_owned(),
        Value::Array(merged.tools),
    )]));
    if let Some(next) = cursor::encode(&rt.snapshot, server, &at) {
        result["nextCursor"] = Value::String(next);
    }
    if stateless(ctx) {
        // Nothing here may be cached for long (an upstream's list can
        // change), and a list the policy filtered for this caller is
        // theirs alone.
        result["ttlMs"] = json!(0);
        let scope = if ctx.caller.is_some() {
            "private"
        } else {
            "public"
        };
        result["cacheScope"] = json!(scope);
    }
    Ok(complete_if_stateless(ctx, result))
}

/// The whole list of `items` of one upstream, page by page (to settle
/// which source serves a name).
pub(super) async fn whole(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (sealed, upstream): (Option<&SessionState>, usize),
    items: Items,
) -> pingora::Result<Vec<Value>> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let body = json!({"jsonrpc": "2.0", "id": page, "method": items.list, "params": params});
        let result = request(deps, ctx, (sealed, upstream), body).await?;
        if let Some(list) = result.get(items.key).and_then(Value::as_array) {
            all.extend(list.iter().cloned());
        }
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(all)
}

/// What of a source's page is served: for tools, definitions that may be
/// (`definitions::vet`) in a state this route serves; then what the caller
/// may see.
fn keep(deps: Deps<'_>, ctx: &Ctx, src: &Source, items: Items, listed: &mut Vec<Value>) {
    if items.kind == ItemKind::Tool {
        definitions::vet(deps, ctx, src, listed);
        listed.retain(|t| {
            let name = t["name"].as_str();
            name.is_none_or(|n| serves(ctx, src.state_of(n)))
        });
    }
    listed.retain(|t| visible(ctx, items, src.upstream, t));
}

/// May the caller see this listed item (some use of it could be allowed)?
fn visible(ctx: &Ctx, items: Items, upstream: usize, item: &Value) -> bool {
    let Some(c) = &ctx.caller else {
        return true;
    };
    let up = &ctx.rt.snapshot.upstreams[upstream].name;
    item[items.field].as_str().is_some_and(|n| {
        ctx.rt
            .snapshot
            .policy
            .visible(c.roles(), items.scope, up, n)
    })
}
