//! Catalog mode (`catalog: true` on a server): instead of every tool, the
//! server lists three meta-tools, so an agent facing thousands of tools
//! does not load them all into its context. `search_tools` ranks the
//! tools the caller may see (`federation::search`, an index built from the
//! caller's own merged list and kept a short while); `get_tool_details`
//! gives one whole definition; `execute_tool` becomes a `tools/call` of
//! the named tool before anything decides on it, so policy, argument
//! conditions, approvals, limits, pins and audit apply exactly as to a
//! direct call, under the tool's own name. A tool the caller may not see
//! and a tool that does not exist are answered alike.

use std::sync::Arc;

use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Map, Value};
use sluice_config::Server;

use super::super::Deps;
use super::{answer, call, complete_if_stateless, list, params, refuse, stateless, TOOLS};
use crate::ctx::Ctx;
use crate::federation::seal::SessionState;
use crate::federation::search::{
    meta_tools, summary, Filters, Index, DETAILS, EXECUTE, MAX_LIMIT, SEARCH,
};
use crate::federation::Catalog;
use crate::federation::ItemKind;
use crate::mcp::RequestId;
use crate::refusal::Refusal;

/// Most pages read to build an index.
const MAX_PAGES: usize = 100;

/// `tools/list` of a catalog server: the meta-tools.
pub(super) fn list(ctx: &Ctx) -> Value {
    let mut result = json!({ "tools": meta_tools().clone() });
    if stateless(ctx) {
        // The same three tools for every caller, for as long as the
        // config lasts: cacheable by anyone, for a while.
        result["ttlMs"] = json!(300_000);
        result["cacheScope"] = json!("public");
    }
    complete_if_stateless(ctx, result)
}

/// A `tools/call` on a catalog server.
pub(super) async fn call(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
    id: &RequestId,
) -> Result<()> {
    // A tool called by its own name goes as on any server, its body read
    // once there; only a meta-tool's params are read here.
    let first = ctx.request.facts.as_ref().map(|f| f.first());
    let meta = first
        .and_then(|m| m.target.as_deref())
        .filter(|t| [SEARCH, DETAILS, EXECUTE].contains(t))
        .map(str::to_owned);
    let Some(name) = meta else {
        return call::run(deps, session, ctx, (server, sealed), TOOLS, id).await;
    };
    let p = params(ctx);
    let args = match p.get("arguments") {
        None => Map::new(),
        Some(Value::Object(a)) => a.clone(),
        Some(_) => {
            let why = "`arguments` must be an object";
            return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await;
        }
    };
    let result = match name.as_str() {
        SEARCH => match search_args(&args) {
            Ok((query, limit, filters)) => {
                let index = index(deps, ctx, (server, sealed)).await;
                let found: Vec<Value> = index
                    .search(&query, limit, &filters)
                    .into_iter()
                    .map(summary)
                    .collect();
                tool_result(json!({ "tools": found }))
            }
            Err(why) => return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await,
        },
        DETAILS => match args.get("name").and_then(Value::as_str) {
            Some(tool) => {
                let index = index(deps, ctx, (server, sealed)).await;
                match index.get(tool) {
                    Some(t) => tool_result(t.clone()),
                    None => tool_error(&format!("no tool named `{tool}`")),
                }
            }
            None => {
                let why = "get_tool_details takes `name`, a string";
                return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await;
            }
        },
        EXECUTE => {
            if let Err(why) = as_direct_call(ctx, &p, &args) {
                return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await;
            }
            return call::run(deps, session, ctx, (server, sealed), TOOLS, id).await;
        }
        _ => return call::run(deps, session, ctx, (server, sealed), TOOLS, id).await,
    };
    answer(session, id, complete_if_stateless(ctx, result)).await
}

/// `query`, `limit` (1-50, default 5) and `filters` of a search.
fn search_args(args: &Map<String, Value>) -> Result<(String, usize, Filters), &'static str> {
    let query = match args.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
        _ => return Err("search_tools takes `query`, a non-empty string"),
    };
    let limit = match args.get("limit") {
        None => 5,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_LIMIT) => n as usize,
            _ => return Err("`limit` is an integer from 1 to 50"),
        },
    };
    let mut filters = Filters::default();
    match args.get("filters") {
        None => {}
        Some(Value::Object(f)) => {
            for (k, v) in f {
                match (k.as_str(), v) {
                    ("source", Value::String(s)) => filters.source = Some(s.clone()),
                    ("read_only", Value::Bool(b)) => filters.read_only = *b,
                    _ => {
                        return Err(
                            "`filters` takes `source` (a string) and `read_only` (a boolean)",
                        )
                    }
                }
            }
        }
        Some(_) => return Err("`filters` must be an object"),
    }
    Ok((query, limit, filters))
}

/// Make this request the `tools/call` that `execute_tool` asks for: the
/// body, and the facts everything after reads (policy, limits, approvals,
/// audit), name the tool itself; `_meta` is kept.
fn as_direct_call(
    ctx: &mut Ctx,
    params: &Map<String, Value>,
    args: &Map<String, Value>,
) -> Result<(), &'static str> {
    let Some(Value::String(tool)) = args.get("name") else {
        return Err("execute_tool takes `name`, a string");
    };
    if [SEARCH, DETAILS, EXECUTE].contains(&tool.as_str()) {
        return Err("a meta-tool is not run through execute_tool");
    }
    let mut inner = Map::new();
    inner.insert("name".into(), Value::String(tool.clone()));
    match args.get("arguments") {
        None => {}
        Some(a @ Value::Object(_)) => {
            inner.insert("arguments".into(), a.clone());
        }
        Some(_) => return Err("execute_tool's `arguments` must be an object"),
    }
    if let Some(meta) = params.get("_meta") {
        inner.insert("_meta".into(), meta.clone());
    }
    let first = ctx.request.facts.as_ref().map(|f| f.first());
    let id = first
        .and_then(|m| m.id.as_ref())
        .map(|id| id.raw().to_owned())
        .unwrap_or_else(|| "null".into());
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{}}}"#,
        Value::Object(inner)
    );
    let snap = &ctx.rt.snapshot;
    let caps = crate::mcp::JsonCaps {
        depth: snap.max_json_depth,
        array_len: snap.max_json_array_len,
        string_len: snap.max_json_string_len,
    };
    let facts = crate::mcp::classify_capped(body.as_bytes(), caps)
        .map_err(|_| "execute_tool's arguments are beyond the gateway's JSON limits")?;
    ctx.request.facts = Some(facts);
    ctx.request.body = Some(bytes::Bytes::from(body));
    Ok(())
}

/// The caller's index: their merged list (what they may see, pinned
/// definitions only), read again after `search::INDEX_TTL`.
async fn index(
    deps: Deps<'_>,
    ctx: &mut Ctx,
    (server, sealed): (&Server, Option<&SessionState>),
) -> Arc<Index> {
    let key = {
        let (subject, tenant, roles) = match &ctx.caller {
            Some(c) => {
                let mut roles: Vec<&str> = c.roles().collect();
                roles.sort_unstable();
                (&*c.subject, c.tenant.as_deref(), roles.join(","))
            }
            None => ("", None, String::new()),
        };
        let generation = ctx.rt.snapshot.version.generation;
        format!(
            "{generation}\0{}\0{subject}\0{}\0{roles}",
            server.name,
            tenant.unwrap_or("")
        )
    };
    if let Some(hit) = deps.shared.tool_indexes.get(&key) {
        return hit;
    }
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let Ok(page) = list::page(deps, ctx, (server, sealed), TOOLS, cursor.as_deref()).await
        else {
            break;
        };
        if let Some(Value::Array(listed)) = page.get("tools") {
            tools.extend(listed.iter().cloned());
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let snap = &ctx.rt.snapshot;
    let catalog = Catalog::new(server);
    let source_of = |t: &Value| {
        let name = t["name"].as_str()?;
        let (i, _) = catalog.resolve(ItemKind::Tool, name).into_iter().next()?;
        Some(snap.upstreams[server.sources[i].upstream].name.clone())
    };
    let index = Arc::new(Index::build(tools, source_of));
    deps.shared.tool_indexes.put(key, index.clone());
    index
}

fn tool_result(structured: Value) -> Value {
    json!({
        "content": [{"type": "text", "text": structured.to_string()}],
        "structuredContent": structured,
        "isError": false
    })
}

fn tool_error(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}
