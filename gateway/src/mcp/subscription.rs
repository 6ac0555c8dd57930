//! `subscriptions/listen` (2026-07-28): the filter a client asks for, and
//! — where the gateway merges several sources' streams — which of a
//! source's messages reach the client: only the change notifications the
//! filter names (a resource's only for a URI subscribed through that
//! source), each stamped with the client's subscription id.

use serde_json::{Map, Value};

/// Where a listen stream's messages carry their subscription's id.
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The most resource URIs one listen request subscribes to.
pub const MAX_URIS: usize = 256;

/// What a listen request asks to hear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs.
    pub uris: Vec<String>,
}

impl Filter {
    /// The filter of a listen request's `params`; what cannot be read one
    /// way is an error, never a guess.
    pub fn read(params: &Value) -> Result<Filter, &'static str> {
        let n = params
            .get("notifications")
            .and_then(Value::as_object)
            .ok_or("notifications is not an object")?;
        let flag = |key: &str| match n.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err("a notifications flag is not a boolean"),
        };
        let uris = match n.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_URIS => a
                .iter()
                .map(|u| u.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("a resource subscription is not a string")?,
            Some(Value::Array(_)) => return Err("too many resource subscriptions"),
            Some(_) => return Err("resourceSubscriptions is not an array"),
        };
        Ok(Filter {
            tools: flag("toolsListChanged")?,
            prompts: flag("promptsListChanged")?,
            resources: flag("resourcesListChanged")?,
            uris,
        })
    }

    /// The same flags, with `uris` (one source's part).
    pub fn part(&self, uris: Vec<String>) -> Filter {
        Filter {
            uris,
            ..self.clone()
        }
    }

    /// Nothing asked for.
    pub fn is_empty(&self) -> bool {
        !(self.tools || self.prompts || self.resources) && self.uris.is_empty()
    }

    /// As the wire writes it: the flags asked for, and the URIs if any.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                m.insert(key.into(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), self.uris.clone().into());
        }
        Value::Object(m)
    }

    /// Does the filter name this notification (`method`, `params`)?
    fn admits(&self, method: &str, params: &Value) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => params
                .get("uri")
                .and_then(Value::as_str)
                .is_some_and(|u| self.uris.iter().any(|s| s == u)),
            _ => false,
        }
    }
}

/// What one message on a source's stream is to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Sent on, as these bytes.
    Forward(Vec<u8>),
    /// Not for the client: an acknowledgement, a request (a listen stream
    /// carries none), a notification the filter does not name, what cannot
    /// be read.
    Skip,
    /// The source's answer to its listen request: its part has ended.
    Ended,
}

/// A source's message `msg` for the client's stream: a notification the
/// source's `filter` names, stamped with `subscription` (the client's
/// listen request id, JSON) in `params._meta`.
pub fn reframe(msg: &[u8], filter: &Filter, subscription: &Value) -> Frame {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(msg) else {
        return Frame::Skip;
    };
    let method = match m.get("method") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Frame::Skip,
        None if m.contains_key("id") => return Frame::Ended,
        None => return Frame::Skip,
    };
    if m.contains_key("id") {
        return Frame::Skip;
    }
    let params = m
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    if !params.is_object() || !filter.admits(&method, params) {
        return Frame::Skip;
    }
    let Some(p) = params.as_object_mut() else {
        return Frame::Skip;
    };
    let meta = p
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(SUBSCRIPTION_ID.into(), subscription.clone());
    }
    match serde_json::to_vec(&m) {
        Ok(out) => Frame::Forward(out),
        Err(_) => Frame::Skip,
    }
}

/// The first message on the client's stream: what will be delivered.
pub fn acknowledged(filter: &Filter, subscription: &Value) -> Vec<u8> {
    let ack = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {
            "notifications": filter.to_json(),
            "_meta": {SUBSCRIPTION_ID: subscription},
        },
    });
    ack.to_string().into_bytes()
}

/// The last message on the client's stream when every source's part has
/// ended: the listen request's result.
pub fn ended(subscription: &Value) -> Vec<u8> {
    let end = serde_json::json!({
        "jsonrpc": "2.0",
        "id": subscription,
        "result": {"_meta": {SUBSCRIPTION_ID: subscription}, "resultType": "complete"},
    });
    end.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter() -> Filter {
        Filter::read(&json!({"notifications": {
            "toolsListChanged": true, "resourceSubscriptions": ["file:///a"]}}))
        .expect("a filter")
    }

    #[test]
    fn a_filter_is_read_one_way_or_refused() {
        let f = filter();
        assert!(f.tools && !f.prompts && !f.resources);
        assert_eq!(f.uris, ["file:///a"]);
        for bad in [
            json!({}),
            json!({"notifications": []}),
            json!({"notifications": {"toolsListChanged": "yes"}}),
            json!({"notifications": {"resourceSubscriptions": "file:///a"}}),
            json!({"notifications": {"resourceSubscriptions": [1]}}),
            json!({"notifications": {"resourceSubscriptions": vec!["u"; MAX_URIS + 1]}}),
        ] {
            assert!(Filter::read(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            f.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]})
        );
        assert!(f
            .part(Vec::new())
            .to_json()
            .get("resourceSubscriptions")
            .is_none());
    }

    #[test]
    fn only_what_the_filter_names_is_sent_on_stamped() {
        let f = filter();
        let sub = json!("l-1");
        let tools = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":9}}}"#;
        let Frame::Forward(out) = reframe(tools, &f, &sub) else {
            panic!("forwarded")
        };
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["params"]["_meta"][SUBSCRIPTION_ID], "l-1", "{v}");
        let bare = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert!(matches!(reframe(bare, &f, &sub), Frame::Forward(_)));
        let updated = |uri: &str| {
            json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                   "params": {"uri": uri}})
            .to_string()
        };
        assert!(matches!(
            reframe(updated("file:///a").as_bytes(), &f, &sub),
            Frame::Forward(_)
        ));
        for skipped in [
            updated("file:///b"),
            json!({"jsonrpc": "2.0", "method": "notifications/prompts/list_changed"}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                   "params": {"notifications": {}}})
            .to_string(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}).to_string(),
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed", "params": 3})
                .to_string(),
            "not json".into(),
        ] {
            assert_eq!(
                reframe(skipped.as_bytes(), &f, &sub),
                Frame::Skip,
                "{skipped}"
            );
        }
        let result = json!({"jsonrpc": "2.0", "id": "l-1", "result": {}}).to_string();
        assert_eq!(reframe(result.as_bytes(), &f, &sub), Frame::Ended);
    }
}
