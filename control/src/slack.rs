//! A Slack-compatible interaction endpoint: a decision made with a message
//! button. Requests are verified with the app's signing secret (v0 scheme:
//! HMAC-SHA256 of `v0:<timestamp>:<body>`, timestamp within five minutes);
//! the Slack user is mapped to a control user, who must be allowed to
//! decide like anywhere else.
//!
//! Buttons carry `action_id` `approve` or `deny` and the approval id as
//! `value`; see the README for a message payload that posts them.

use http::HeaderMap;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from now (replay window).
const MAX_SKEW_S: i64 = 300;

#[derive(Debug, Deserialize)]
pub struct Interaction {
    pub user: SlackUser,
    #[serde(default)]
    pub actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
pub struct SlackUser {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlackError {
    #[error("missing or malformed signature headers")]
    Headers,
    #[error("request timestamp outside the replay window")]
    Stale,
    #[error("bad signature")]
    Signature,
    #[error("malformed interaction payload")]
    Payload,
}

/// Verify the request and parse its `payload` form field.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<Interaction, SlackError> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let ts = h("x-slack-request-timestamp").ok_or(SlackError::Headers)?;
    let sig = h("x-slack-signature")
        .and_then(|s| s.strip_prefix("v0="))
        .ok_or(SlackError::Headers)?;
    let ts_n: i64 = ts.parse().map_err(|_| SlackError::Headers)?;
    if (now_s - ts_n).abs() > MAX_SKEW_S {
        return Err(SlackError::Stale);
    }
    let mut base = Vec::with_capacity(body.len() + ts.len() + 4);
    base.extend_from_slice(b"v0:");
    base.extend_from_slice(ts.as_bytes());
    base.push(b':');
    base.extend_from_slice(body);
    let want = crate::webhook::sign(secret, &base);
    if !bool::from(want.as_bytes().ct_eq(sig.to_ascii_lowercase().as_bytes())) {
        return Err(SlackError::Signature);
    }
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| SlackError::Payload)?;
    let payload = form
        .iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or(SlackError::Payload)?;
    serde_json::from_str(payload).map_err(|_| SlackError::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, ts: i64, body: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let sig = crate::webhook::sign(secret, format!("v0:{ts}:{body}").as_bytes());
        h.insert(
            "x-slack-request-timestamp",
            ts.to_string().parse().expect("hv"),
        );
        h.insert(
            "x-slack-signature",
            format!("v0={sig}").parse().expect("hv"),
        );
        h
    }

    fn body() -> String {
        let payload = r#"{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"approve","value":"abc"}]}"#;
        serde_urlencoded::to_string([("payload", payload)]).expect("form")
    }

    #[test]
    fn a_signed_request_is_accepted_and_parsed() {
        let b = body();
        let i = verify("s3cret", &signed("s3cret", 1000, &b), b.as_bytes(), 1010).expect("valid");
        assert_eq!(i.user.id, "U1");
        assert_eq!(i.actions[0].action_id, "approve");
        assert_eq!(i.actions[0].value, "abc");
    }

    #[test]
    fn wrong_secret_tampering_and_replays_are_refused() {
        let b = body();
        assert_eq!(
            verify("s3cret", &signed("other", 1000, &b), b.as_bytes(), 1000).err(),
            Some(SlackError::Signature)
        );
        let tampered = b.replace("approve", "deny__");
        assert_eq!(
            verify(
                "s3cret",
                &signed("s3cret", 1000, &b),
                tampered.as_bytes(),
                1000
            )
            .err(),
            Some(SlackError::Signature)
        );
        assert_eq!(
            verify(
                "s3cret",
                &signed("s3cret", 1000, &b),
                b.as_bytes(),
                1000 + 301
            )
            .err(),
            Some(SlackError::Stale)
        );
        assert_eq!(
            verify("s3cret", &HeaderMap::new(), b.as_bytes(), 1000).err(),
            Some(SlackError::Headers)
        );
    }
}
