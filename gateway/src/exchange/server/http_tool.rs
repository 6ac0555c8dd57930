//! HTTP tools (`http_tools` on a source): tools declared in config whose
//! call is one HTTP request to the source's upstream. Listed as declared;
//! called after every decision a tool call gets (policy, conditions,
//! limits, approvals, idempotency, pins — `call::run`), with the arguments
//! checked against the tool's `inputSchema` first (a violation is -32602
//! naming where). The request goes with the upstream's credentials,
//! egress, timeouts and circuit breaker; the answer becomes a tool result:
//! JSON as `structuredContent` (an object) and text, an error status as
//! `isError` with the status and the start of the body.

use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::{json, Map, Value};
use sluice_config::{HttpTool, Source};

use super::super::{rpc, Deps};
use super::{complete_if_stateless, refuse, write};
use crate::ctx::Ctx;
use crate::mcp::RequestId;
use crate::refusal::Refusal;

/// Most of an error answer's body shown in the result.
const ERROR_BODY: usize = 2048;

/// A source's HTTP tools as an MCP server would list them.
pub(super) fn listed(src: &Source) -> Vec<Value> {
    src.http_tools
        .iter()
        .map(|t| t.definition.clone())
        .collect()
}

/// Run `tool` with `args` (the forwarded arguments, as JSON text) and
/// answer the client with its result.
pub(super) async fn call(
    deps: Deps<'_>,
    session: &mut Session,
    ctx: &mut Ctx,
    (upstream, tool): (usize, &HttpTool),
    args: Option<&str>,
    id: &RequestId,
) -> Result<()> {
    let args: Value = match args.map(|a| crate::policy::strict::parse(a.as_bytes())) {
        None => json!({}),
        Some(Some(v)) => v,
        Some(None) => {
            let why = "arguments cannot be read one way";
            return refuse(deps, session, ctx, Refusal::InvalidParams(why)).await;
        }
    };
    let rt = ctx.rt.clone();
    let up_name = &rt.snapshot.upstreams[upstream].name;
    let generation = rt.snapshot.version.generation;
    let key = crate::federation::validators::key(generation, up_name, &tool.name);
    let schema = &tool.definition["inputSchema"];
    let validator = match deps.shared.http_validators.get(key, schema) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(upstream = %up_name, tool = %tool.name, error = %e, "an HTTP tool's input schema does not compile");
            let why = "the tool's input schema is not valid".to_owned();
            return refuse(deps, session, ctx, Refusal::BadArguments(why)).await;
        }
    };
    if let Some(e) = validator.iter_errors(&args).next() {
        let at = e.instance_path.to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        let why = format!("arguments at {at}: {e}");
        return refuse(deps, session, ctx, Refusal::BadArguments(why)).await;
    }
    let path = fill_path(&tool.path, &args);
    let query: Vec<(String, String)> = tool
        .query
        .iter()
        .flat_map(|(k, v)| query_pairs(k, v, &args))
        .collect();
    let path = if query.is_empty() {
        path
    } else {
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        format!("{path}?{}", q.join("&"))
    };
    let headers: Vec<(String, String)> = tool
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), fill_text(v, &args)?)))
        .filter(|(_, v)| !v.contains(['\r', '\n']))
        .collect();
    let body = tool
        .body
        .as_ref()
        .map(|b| serde_json::to_vec(&fill_body(b, &args)).unwrap_or_default());
    super::super::sending(&http::Method::POST, &rt.snapshot.upstreams[upstream], ctx);
    let sent = rpc::send_plain(deps, ctx, upstream, (&tool.method, &path, &headers), body).await;
    let (head, mut answer) = sent?;
    super::super::answered(deps.shared, false, &head, ctx);
    let max = tool.max_response_bytes;
    let result = match rpc::read_capped(&mut answer, max).await? {
        Some(buf) => {
            rpc::pool(deps, ctx, upstream, answer);
            result(head.status.as_u16(), &buf)
        }
        None => error_result(&format!("the answer is larger than {max} bytes")),
    };
    let result = complete_if_stateless(ctx, result);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.raw().as_bytes());
    out.extend_from_slice(br#","result":"#);
    serde_json::to_writer(&mut out, &result).map_err(|e| {
        pingora::Error::because(
            pingora::ErrorType::InternalError,
            "an answer not written",
            e,
        )
    })?;
    out.push(b'}');
    if let Some(p) = ctx.exchange.idempotent.as_mut() {
        p.feed(&out);
    }
    write(session, 200, Some(Bytes::from(out)), None).await
}

/// The tool result of an answer with `status` and `body`.
fn result(status: u16, body: &[u8]) -> Value {
    if !(200..300).contains(&status) {
        let shown = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY)]).into_owned();
        return error_result(&format!("HTTP {status}: {shown}"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            // The text is the answer as sent (it parsed, so it is UTF-8).
            let text = String::from_utf8_lossy(body).into_owned();
            let mut r = json!({"content": [{"type": "text", "text": text}], "isError": false});
            if v.is_object() {
                r["structuredContent"] = v;
            }
            r
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body).into_owned();
            json!({"content": [{"type": "text", "text": text}], "isError": false})
        }
    }
}

fn error_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

/// An argument as text: a string as it is, anything else as JSON; `None`
/// when absent or null.
fn text_of(args: &Value, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// A query parameter's pairs: an array argument that is the whole value
/// is one pair per item (OpenAPI's default form style); an absent one none.
fn query_pairs(key: &str, template: &str, args: &Value) -> Vec<(String, String)> {
    let whole = template
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .filter(|n| !n.contains(['{', '}']));
    if let Some(Value::Array(items)) = whole.and_then(|n| args.get(n)) {
        return items
            .iter()
            .map(|v| match v {
                Value::String(s) => (key.to_owned(), s.clone()),
                v => (key.to_owned(), v.to_string()),
            })
            .collect();
    }
    fill_text(template, args)
        .map(|v| vec![(key.to_owned(), v)])
        .unwrap_or_default()
}

/// `{name}`s in a path, each argument percent-encoded as one segment (an
/// absent one empty).
fn fill_path(template: &str, args: &Value) -> String {
    fill(template, |name| {
        let v = text_of(args, name).unwrap_or_default();
        Some(percent_encode(&v))
    })
    .unwrap_or_default()
}

/// `{name}`s in a query value or header; `None` when one is absent (the
/// parameter is then left out).
fn fill_text(template: &str, args: &Value) -> Option<String> {
    fill(template, |name| text_of(args, name))
}

fn fill(template: &str, mut value: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&value(&rest[open + 1..open + close])?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A body template with its arguments: a string that is one `{name}` is
/// the argument's JSON value (left out when absent); other strings are
/// filled as text.
fn fill_body(template: &Value, args: &Value) -> Value {
    match template {
        Value::String(s) => {
            let whole = s
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .filter(|n| !n.contains(['{', '}']));
            match whole {
                Some(name) => args.get(name).cloned().unwrap_or(Value::Null),
                None => Value::String(fill_text(s, args).unwrap_or_default()),
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_body(v, args)).collect()),
        Value::Object(m) => {
            let filled: Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), fill_body(v, args)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            Value::Object(filled)
        }
        v => v.clone(),
    }
}

/// Everything but unreserved characters percent-encoded: an argument can
/// never add a segment, a query or a fragment to the path.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_the_arguments_safely() {
        let args = json!({"id": "a/../b?x=1#f", "n": 3, "tag": null, "items": [1, 2]});
        assert_eq!(
            fill_path("/inv/{id}/lines/{n}", &args),
            "/inv/a%2F..%2Fb%3Fx%3D1%23f/lines/3"
        );
        assert_eq!(fill_text("v{n}", &args).as_deref(), Some("v3"));
        assert_eq!(fill_text("{tag}", &args), None, "null is absent");
        assert_eq!(fill_text("{missing}", &args), None);
        assert_eq!(
            query_pairs("s", "{items}", &args),
            [
                ("s".to_owned(), "1".to_owned()),
                ("s".to_owned(), "2".to_owned())
            ]
        );
        assert!(query_pairs("t", "{tag}", &args).is_empty());
        let body = json!({"id": "{id}", "count": "{n}", "items": "{items}", "note": "n={n}", "tag": "{tag}"});
        assert_eq!(
            fill_body(&body, &args),
            json!({"id": "a/../b?x=1#f", "count": 3, "items": [1, 2], "note": "n=3"})
        );
    }

    #[test]
    fn answers_become_tool_results() {
        let ok = result(200, br#"{"total": 7}"#);
        assert_eq!(ok["structuredContent"]["total"], 7);
        assert_eq!(ok["isError"], false);
        let list = result(200, b"[1,2]");
        assert!(
            list.get("structuredContent").is_none(),
            "only an object is structured"
        );
        let text = result(200, b"plain");
        assert_eq!(text["content"][0]["text"], "plain");
        let err = result(404, &vec![b'x'; 5000]);
        assert_eq!(err["isError"], true);
        let shown = err["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            shown.starts_with("HTTP 404: ") && shown.len() == 10 + ERROR_BODY,
            "{}",
            shown.len()
        );
    }
}
