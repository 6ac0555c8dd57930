//! Requests a source sends the client (sampling, elicitation, roots) and
//! the client's answers to them. The id the client sees names the source
//! and carries a mark: `sluice:<upstream>:<mark>:<the source's id as
//! JSON>`, the mark binding the source, its id and the client's session
//! (or caller) under the session keys. So an answer that comes back — to
//! any replica — goes to the source that asked, with the id that source
//! gave; ids of two sources never meet; and a client can answer only what
//! the gateway passed it. Nothing is kept between the request and its
//! answer.

use serde_json::Value;

use super::call::{push_string, RawMap};

const TAG: &str = "sluice:";

/// `msg` with its id tagged for `upstream` and marked by `mark` (of the
/// upstream and the id), when it is a request (a `method` and an `id`);
/// `None` otherwise (a notification or a response passes as sent). The
/// other members are written back as sent.
pub fn tag_request(
    msg: &[u8],
    upstream: &str,
    mark: impl Fn(&str, &str) -> String,
) -> Option<Vec<u8>> {
    // Most messages on a call's stream are not requests: only one that
    // names a method is read.
    memchr::memmem::find(msg, b"\"method\"")?;
    let members: RawMap<'_> = serde_json::from_slice(msg).ok()?;
    members.get("method")?;
    let id = members.get("id")?;
    let m = mark(upstream, id);
    let tagged = Value::String(format!("{TAG}{upstream}:{m}:{id}"));
    Some(rewrite_id(&members, &tagged.to_string(), msg.len() + 48))
}

/// What a tagged id says: the upstream among `upstreams` it names, its
/// mark, and the source's own id (JSON). The caller checks the mark.
pub fn untag<'a, 'u>(
    id: &'a Value,
    upstreams: impl IntoIterator<Item = &'u str>,
) -> Option<(&'u str, &'a str, &'a str)> {
    let rest = id.as_str()?.strip_prefix(TAG)?;
    upstreams.into_iter().find_map(|up| {
        let (mark, original) = rest.strip_prefix(up)?.strip_prefix(':')?.split_once(':')?;
        // The source's ids are numbers or strings.
        let ok = matches!(
            serde_json::from_str::<Value>(original),
            Ok(Value::Number(_) | Value::String(_))
        );
        ok.then_some((up, mark, original))
    })
}

/// The client's answer `msg` with the source's own `id` (JSON); `None` when
/// it is not one answer (`result` or `error`) in one reading.
pub fn answer_for_source(msg: &[u8], id: &str) -> Option<Vec<u8>> {
    let members: RawMap<'_> = serde_json::from_slice(msg).ok()?;
    let keys: Vec<&str> = members.0.iter().map(|(k, _)| k.as_ref()).collect();
    let unique = keys.iter().enumerate().all(|(n, k)| !keys[..n].contains(k));
    let answer = members.get("result").is_some() != members.get("error").is_some();
    if !unique || !answer || members.get("method").is_some() {
        return None;
    }
    Some(rewrite_id(&members, id, msg.len()))
}

/// What a client declared in `initialize` that a source may use of it —
/// `sampling`, `elicitation`, `roots`, `tasks` — as JSON to declare to each source;
/// `None` when it declared none of them. Declarations larger than 1 KiB
/// are declared bare (`{}` each).
pub fn relayed_capabilities(declared: &Value) -> Option<String> {
    const RELAYED: [&str; 4] = ["sampling", "elicitation", "roots", "tasks"];
    const MAX: usize = 1024;
    let mut kept = serde_json::Map::new();
    for key in RELAYED {
        if let Some(v) = declared.get(key).filter(|v| v.is_object()) {
            kept.insert(key.into(), v.clone());
        }
    }
    if kept.is_empty() {
        return None;
    }
    let text = Value::Object(kept.clone()).to_string();
    if text.len() <= MAX {
        return Some(text);
    }
    let bare: serde_json::Map<String, Value> = kept
        .keys()
        .map(|k| (k.clone(), Value::Object(Default::default())))
        .collect();
    Some(Value::Object(bare).to_string())
}

fn rewrite_id(members: &RawMap<'_>, id: &str, room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(room);
    out.push(b'{');
    for (n, (k, v)) in members.0.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        push_string(&mut out, k);
        out.push(b':');
        if k == "id" {
            out.extend_from_slice(id.as_bytes());
        } else {
            out.extend_from_slice(v.as_bytes());
        }
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(up: &str, id: &str) -> String {
        format!("m{}{}", up.len(), id.len())
    }

    #[test]
    fn a_sources_request_gets_an_id_naming_it_and_the_answer_gets_it_back() {
        let req = br#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"x":1}}"#;
        let tagged = tag_request(req, "demo", mark).expect("a request");
        let v: Value = serde_json::from_slice(&tagged).expect("json");
        assert_eq!(v["id"], "sluice:demo:m41:7");
        assert_eq!(v["params"]["x"], 1);
        let (up, m, original) = untag(&v["id"], ["other", "demo"]).expect("tagged");
        assert_eq!((up, m, original), ("demo", "m41", "7"));
        let answer = br#"{"jsonrpc":"2.0","id":"sluice:demo:7","result":{"ok":true}}"#;
        let back = answer_for_source(answer, original).expect("an answer");
        assert_eq!(
            back,
            br#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#.to_vec()
        );
        let roots = br#"{"jsonrpc":"2.0","id":"a:b","method":"roots/list"}"#;
        let s = tag_request(roots, "up", mark).expect("request");
        let v: Value = serde_json::from_slice(&s).expect("json");
        assert_eq!(untag(&v["id"], ["up"]), Some(("up", "m25", r#""a:b""#)));
    }

    #[test]
    fn what_a_client_can_do_for_a_server_is_declared_to_sources() {
        let declared = serde_json::json!({
            "sampling": {}, "elicitation": {"form": {}}, "experimental": {"x": {}}, "roots": true
        });
        assert_eq!(
            relayed_capabilities(&declared).as_deref(),
            Some(r#"{"elicitation":{"form":{}},"sampling":{}}"#)
        );
        assert_eq!(relayed_capabilities(&serde_json::json!({})), None);
        let big = serde_json::json!({"sampling": {"pad": "x".repeat(2000)}});
        assert_eq!(
            relayed_capabilities(&big).as_deref(),
            Some(r#"{"sampling":{}}"#)
        );
    }

    #[test]
    fn notifications_responses_and_strangers_pass_or_are_refused() {
        let note = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#;
        assert_eq!(tag_request(note, "demo", mark), None);
        let resp = br#"{"jsonrpc":"2.0","id":1,"result":{"text":"method"}}"#;
        assert_eq!(tag_request(resp, "demo", mark), None);
        let v = |s: &str| Value::String(s.into());
        assert_eq!(untag(&v("sluice:nobody:m:1"), ["demo"]), None);
        assert_eq!(untag(&v("sluice:demo:m:{}"), ["demo"]), None, "not an id");
        assert_eq!(untag(&v("sluice:demo:1"), ["demo"]), None, "no mark");
        assert_eq!(untag(&v("7"), ["demo"]), None);
        assert_eq!(untag(&Value::from(7), ["demo"]), None);
        let twice = br#"{"jsonrpc":"2.0","id":"x","result":{},"result":{}}"#;
        assert_eq!(answer_for_source(twice, "1"), None, "two readings");
        let both = br#"{"jsonrpc":"2.0","id":"x","result":{},"error":{}}"#;
        assert_eq!(answer_for_source(both, "1"), None);
    }
}
