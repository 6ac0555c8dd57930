//! Shared test plumbing: starting a demo server on port 0 and speaking HTTP/SSE to it with a plain client.

#![allow(dead_code)] // Each test file uses a different subset.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sluice_demo::{DemoOptions, DemoServer};

pub const BOTH: &str = "application/json, text/event-stream";
pub const SESSION: &str = "mcp-session-id";

pub async fn start(opts: DemoOptions) -> DemoServer {
    sluice_demo::spawn("127.0.0.1:0".parse().expect("literal"), opts)
        .await
        .expect("demo server binds")
}

pub fn json_mode() -> DemoOptions {
    DemoOptions {
        json_response: true,
        ..DemoOptions::default()
    }
}

pub fn client() -> Client {
    Client::builder().build().expect("client")
}

pub fn initialize_body(version: &str) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": { "sampling": {}, "elicitation": {} },
            "clientInfo": { "name": "sluice-demo-tests", "version": "0" },
        },
    })
}

pub fn call(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// POSTs `body` with the given Accept and extra headers.
pub async fn post(
    url: &str,
    accept: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> Response {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(accept) = accept {
        map.insert(ACCEPT, HeaderValue::from_str(accept).expect("accept"));
    }
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name");
        map.insert(name, HeaderValue::from_str(value).expect("value"));
    }
    client()
        .post(url)
        .headers(map)
        .body(body.to_string())
        .send()
        .await
        .expect("request sent")
}

/// A session opened with `initialize` + `notifications/initialized`.
pub struct Session {
    pub url: String,
    pub id: String,
    pub version: String,
}

impl Session {
    pub async fn open(url: &str, version: &str) -> Session {
        let response = post(url, Some(BOTH), &[], &initialize_body(version)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let id = response
            .headers()
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .expect("Mcp-Session-Id on the initialize response")
            .to_owned();
        let version = first_message(response).await["result"]["protocolVersion"]
            .as_str()
            .expect("negotiated version")
            .to_owned();
        let session = Session {
            url: url.to_owned(),
            id,
            version,
        };
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        assert_eq!(session.post(&note).await.status(), StatusCode::ACCEPTED);
        session
    }

    pub async fn post(&self, body: &Value) -> Response {
        self.post_accepting(BOTH, body).await
    }

    pub async fn post_accepting(&self, accept: &str, body: &Value) -> Response {
        let headers = [
            (SESSION, self.id.as_str()),
            ("mcp-protocol-version", self.version.as_str()),
        ];
        post(&self.url, Some(accept), &headers, body).await
    }

    /// Calls a method and returns the final response message, whatever the body type.
    pub async fn request(&self, id: u64, method: &str, params: Value) -> Value {
        first_message(self.post(&call(id, method, params)).await).await
    }
}

/// The first JSON-RPC message of a response, JSON or SSE.
pub async fn first_message(response: Response) -> Value {
    let is_sse = is_event_stream(&response);
    if is_sse {
        let events = read_all_events(response).await;
        events
            .into_iter()
            .find_map(|event| event.json())
            .expect("a message event")
    } else {
        response.json().await.expect("JSON body")
    }
}

pub fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut event = Event::default();
    let mut data = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        // A block of only `retry:` (or unknown fields) is not an event.
        match field {
            "event" => event.event = Some(value.to_owned()),
            "id" => event.id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => continue,
        }
        any = true;
    }
    event.data = data.join("\n");
    any.then_some(event)
}

/// Reads an SSE body event by event, as the server sends them.
pub struct EventReader {
    response: Response,
    /// Bytes, not text: a chunk may end inside a multi-byte character.
    buffer: Vec<u8>,
}

impl EventReader {
    pub fn new(response: Response) -> Self {
        assert!(is_event_stream(&response), "expected text/event-stream");
        Self {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("utf-8 events");
                match parse_event(&block) {
                    Some(event) => return Some(event),
                    None => continue, // a comment (keep-alive)
                }
            }
            let chunk = self.response.chunk().await.expect("stream readable")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// The next event that carries a JSON-RPC message.
    pub async fn next_message(&mut self) -> Option<Value> {
        loop {
            if let Some(message) = self.next().await?.json() {
                return Some(message);
            }
        }
    }
}

pub async fn read_all_events(response: Response) -> Vec<Event> {
    let mut reader = EventReader::new(response);
    let mut events = Vec::new();
    while let Some(event) = reader.next().await {
        events.push(event);
    }
    events
}

/// The text of the first content block of a tools/call response.
pub fn tool_text(response: &Value) -> &str {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content in {response}"))
}
