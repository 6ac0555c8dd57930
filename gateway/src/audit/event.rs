//! The audit record itself, plus the helpers that fill its derived fields:
//! event ids, timestamps, argument digests and argument redaction.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the gateway decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

/// One audit record, serialized as one JSON object per line. Absent optional
/// fields are written as `null` rather than skipped so every line has the
/// same shape for whatever ingests them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 32 hex chars: 48-bit millisecond timestamp then 80 random bits, so ids
    /// are unique and sort by creation time.
    pub event_id: String,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-01-02T03:04:05.678Z`.
    pub time: String,
    pub tenant: Option<String>,
    pub subject: Option<String>,
    pub session: Option<String>,
    pub route: String,
    pub upstream: Option<String>,
    /// The JSON-RPC method.
    pub method: String,
    /// Tool, resource or prompt name, when the method has one.
    pub target: Option<String>,
    /// A virtual server's call: the tool's name on the upstream (`target`
    /// is the name the client called).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_target: Option<String>,
    pub decision: Decision,
    pub reason: Option<String>,
    pub policy_version: String,
    /// Hex SHA-256 of the raw argument bytes (see [`digest`]).
    pub arguments_digest: Option<String>,
    /// Only when config asks for arguments, and only after [`redact`].
    pub arguments: Option<serde_json::Value>,
    /// e.g. `ok`, `tool_error`, `error`, `no_response`, `refused`.
    pub outcome: Option<String>,
    pub status: u16,
    pub latency_ms: f64,
    pub request_id: String,
    /// Model calls: what was asked, what answered, what it cost.
    #[serde(default)]
    pub llm: Option<LlmAudit>,
    /// The approval a held call went through on.
    #[serde(default)]
    pub approval: Option<String>,
    /// A call of a catalog tool in a state worth recording: `deprecated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_state: Option<String>,
    /// The trace this request belongs to (`traces`), to join the event
    /// with its spans and access-log line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// On a `definition_*` event, the digest of the definition seen
    /// (`sluice_config::definition_digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition_digest: Option<String>,
    /// Its place in this gateway's hash chain, set as it is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<sluice_config::chain::Link>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmAudit {
    /// The model the client asked for (the alias).
    pub model: String,
    /// The model the upstream was asked for.
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    /// Prompt tokens served from the provider's cache, where reported.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// Completion tokens spent on reasoning, where reported.
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// Targets tried (more than one after a fallback).
    pub attempts: u32,
    /// Only with `llm.audit_text`: the prompt (after `audit.redact`) and
    /// the answer's text.
    #[serde(default)]
    pub prompt: Option<serde_json::Value>,
    #[serde(default)]
    pub completion: Option<String>,
}

impl AuditEvent {
    /// An event stamped with a fresh id and the current time; every other
    /// field starts empty for the caller to fill in.
    pub fn new(
        route: impl Into<String>,
        method: impl Into<String>,
        decision: Decision,
        policy_version: impl Into<String>,
        request_id: impl Into<String>,
    ) -> Self {
        Self {
            event_id: new_event_id(),
            time: format_rfc3339_millis(SystemTime::now()),
            tenant: None,
            subject: None,
            session: None,
            route: route.into(),
            upstream: None,
            method: method.into(),
            target: None,
            upstream_target: None,
            decision,
            reason: None,
            policy_version: policy_version.into(),
            arguments_digest: None,
            arguments: None,
            outcome: None,
            status: 0,
            latency_ms: 0.0,
            request_id: request_id.into(),
            llm: None,
            approval: None,
            definition_digest: None,
            tool_state: None,
            trace_id: None,
            chain: None,
        }
    }
}

/// A unique, time-ordered id (ULID-like layout, hex encoded): the leading
/// millisecond timestamp makes ids from one clock sort by time, and 80 random
/// bits make collisions within a millisecond negligible.
pub fn new_event_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let ts = (millis as u64) & 0xffff_ffff_ffff;
    let random = rand::random::<u128>() & ((1u128 << 80) - 1);
    format!("{ts:012x}{random:020x}")
}

/// RFC 3339 UTC with milliseconds. Hand-rolled (Hinnant's civil-from-days)
/// because it is the only date formatting the gateway needs and a date crate
/// would be a large dependency for it.
pub fn format_rfc3339_millis(t: SystemTime) -> String {
    // A clock before 1970 is a broken clock; the epoch is a visible stand-in.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = sluice_config::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Lowercase hex SHA-256 of the raw argument bytes: lets auditors match
/// identical calls without the log holding the arguments themselves.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(hash.len() * 2);
    for b in hash {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A copy of `args` with the value at each RFC 6901 pointer (e.g. `/password`,
/// `/auth/token`, `/items/0/secret`) replaced by `"[REDACTED]"`. Pointers that
/// don't resolve are ignored: configured redactions name fields that only
/// some tools' arguments have.
pub fn redact(args: &serde_json::Value, pointers: &[String]) -> serde_json::Value {
    let mut out = args.clone();
    for pointer in pointers {
        if let Some(v) = out.pointer_mut(pointer) {
            *v = serde_json::Value::String("[REDACTED]".to_owned());
        }
    }
    out
}
