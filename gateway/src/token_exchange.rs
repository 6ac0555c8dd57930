//! Acting as the caller toward an upstream: the caller's access token is
//! exchanged at the identity provider (RFC 8693 token exchange, or the
//! on-behalf-of `jwt-bearer` form) for a token meant for that upstream. The
//! result is cached per upstream, tenant and subject until shortly before
//! it expires, with one exchange in flight per key. Failures name their
//! reason; of the provider's answer only its `error` code is kept, so
//! nothing it echoes (a token, a secret) reaches a log or a client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderName, HeaderValue};
use sluice_config::locks::Recover;
use sluice_config::{ClientAuth, ExchangeGrant, TokenExchange, Upstream};

use crate::metrics::Metrics;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Most exchanged tokens kept; past it, expired ones are dropped first.
const MAX_KEPT: usize = 100_000;
/// Most bytes of the provider's answer read.
const MAX_ANSWER: usize = 64 * 1024;
/// Kept this long when the answer says nothing of when it expires.
const DEFAULT_LIFE: Duration = Duration::from_secs(60);

/// One upstream's exchange, ready for the request path: the client secret
/// read at snapshot load.
pub struct Exchanger {
    pub upstream: String,
    config: TokenExchange,
    secret: String,
    pub header: HeaderName,
    /// Part of every cache key: the upstream and what it is exchanged for,
    /// so a changed config never serves a token made for the old one.
    key: String,
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exchanger({}, [REDACTED])", self.upstream)
    }
}

/// The exchange for `up`, if it has one. Errors name the setting, never a
/// secret.
pub fn exchanger(up: &Upstream) -> Result<Option<Arc<Exchanger>>, String> {
    let Some(t) = &up.token_exchange else {
        return Ok(None);
    };
    let secret = crate::inject::read_secret(&t.client_secret)?;
    let header = HeaderName::from_bytes(t.header.as_bytes()).map_err(|e| e.to_string())?;
    let key = format!(
        "{}\0{}\0{}\0{}\0{}\0{:?}\0{}",
        up.name,
        t.token_endpoint,
        t.client_id,
        t.audience.as_deref().unwrap_or(""),
        t.resource.as_deref().unwrap_or(""),
        t.grant,
        t.scope.as_deref().unwrap_or("")
    );
    Ok(Some(Arc::new(Exchanger {
        upstream: up.name.clone(),
        config: t.clone(),
        secret,
        header,
        key,
    })))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    #[error("acting as the caller toward `{0}` needs the caller's access token from the identity provider; an API key cannot be exchanged")]
    NoSubjectToken(String),
    #[error(
        "the identity provider refused to exchange the caller's token for `{upstream}`: {code}"
    )]
    Refused { upstream: String, code: String },
    #[error("the identity provider could not be reached to act as the caller toward `{upstream}`: {why}")]
    Unreachable { upstream: String, why: String },
    #[error("the identity provider's answer for `{0}` is not a token")]
    BadAnswer(String),
}

impl ExchangeError {
    /// Refused for who the caller is (counts against them), rather than
    /// failed.
    pub fn is_access_decision(&self) -> bool {
        matches!(self, Self::NoSubjectToken(_) | Self::Refused { .. })
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoSubjectToken(_) => "exchange_no_subject_token",
            Self::Refused { .. } => "exchange_refused",
            Self::Unreachable { .. } => "exchange_unreachable",
            Self::BadAnswer(_) => "exchange_bad_answer",
        }
    }
}

struct Held {
    value: HeaderValue,
    fresh_until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

/// Exchanged tokens, across snapshots.
pub struct Tokens {
    slots: Mutex<HashMap<String, Slot>>,
    client: reqwest::Client,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

/// The caller, as the cache knows them.
pub struct Subject<'a> {
    pub tenant: Option<&'a str>,
    pub subject: &'a str,
    /// The access token the caller presented (validated by identity).
    pub token: Option<&'a str>,
}

impl Tokens {
    /// The header value `ex`'s upstream gets for `who`: kept, or exchanged
    /// now (one exchange per key at a time; others wait for it).
    pub async fn get(
        &self,
        ex: &Exchanger,
        who: Subject<'_>,
        metrics: &Metrics,
    ) -> Result<HeaderValue, ExchangeError> {
        let count = |outcome: &str| {
            metrics
                .token_exchanges
                .with_label_values(&[ex.upstream.as_str(), outcome])
                .inc();
        };
        let Some(token) = who.token else {
            count("no_subject_token");
            return Err(ExchangeError::NoSubjectToken(ex.upstream.clone()));
        };
        let key = format!("{}\0{}\0{}", ex.key, who.tenant.unwrap_or(""), who.subject);
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        let now = Instant::now();
        if let Some(h) = held.as_ref().filter(|h| h.fresh_until > now) {
            count("cached");
            return Ok(h.value.clone());
        }
        match self.exchange(ex, token).await {
            Ok((value, life)) => {
                count("exchanged");
                let keep = life.saturating_sub(ex.config.refresh_before);
                *held = Some(Held {
                    value: value.clone(),
                    fresh_until: now + keep,
                });
                Ok(value)
            }
            Err(e) => {
                count(e.reason());
                tracing::warn!(upstream = %ex.upstream, error = %e, "token exchange failed");
                Err(e)
            }
        }
    }

    fn slot(&self, key: String) -> Slot {
        let mut slots = self.slots.lock().recover();
        if slots.len() >= MAX_KEPT && !slots.contains_key(&key) {
            let now = Instant::now();
            slots.retain(|_, s| {
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .map_or(true, |h| h.as_ref().is_some_and(|h| h.fresh_until > now))
            });
        }
        slots.entry(key).or_default().clone()
    }

    /// One request to the token endpoint: the header value and how long
    /// the token lives.
    async fn exchange(
        &self,
        ex: &Exchanger,
        subject_token: &str,
    ) -> Result<(HeaderValue, Duration), ExchangeError> {
        let c = &ex.config;
        let (body, basic) = request_body(ex, subject_token);
        let mut req = self
            .client
            .post(&c.token_endpoint)
            .timeout(c.timeout)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(v) = basic {
            req = req.header(http::header::AUTHORIZATION, v);
        }
        let unreachable = |e: reqwest::Error| ExchangeError::Unreachable {
            upstream: ex.upstream.clone(),
            // Without the URL: it may carry what it should not.
            why: e.without_url().to_string(),
        };
        let resp = req.body(body).send().await.map_err(unreachable)?;
        let status = resp.status();
        let body = read_capped(resp).await.map_err(unreachable)?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| ExchangeError::BadAnswer(ex.upstream.clone()))?;
        if !status.is_success() {
            if status.is_server_error() {
                return Err(ExchangeError::Unreachable {
                    upstream: ex.upstream.clone(),
                    why: format!("HTTP {}", status.as_u16()),
                });
            }
            return Err(ExchangeError::Refused {
                upstream: ex.upstream.clone(),
                code: error_code(&answer),
            });
        }
        let token = answer["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ExchangeError::BadAnswer(ex.upstream.clone()))?;
        let mut value = HeaderValue::from_str(&format!("{}{token}", c.prefix))
            .map_err(|_| ExchangeError::BadAnswer(ex.upstream.clone()))?;
        value.set_sensitive(true);
        let life = answer["expires_in"]
            .as_u64()
            .map_or(DEFAULT_LIFE, Duration::from_secs);
        Ok((value, life))
    }
}

/// The token request's form, and the client's Basic credentials when it
/// authenticates that way (else they are in the form).
fn request_body(ex: &Exchanger, subject_token: &str) -> (String, Option<HeaderValue>) {
    let c = &ex.config;
    let mut form =
        form_urlencoded::Serializer::new(String::with_capacity(512 + subject_token.len()));
    match c.grant {
        ExchangeGrant::TokenExchange => {
            form.append_pair("grant_type", TOKEN_EXCHANGE)
                .append_pair("subject_token", subject_token)
                .append_pair("subject_token_type", ACCESS_TOKEN)
                .append_pair("requested_token_type", ACCESS_TOKEN);
            if let Some(a) = &c.audience {
                form.append_pair("audience", a);
            }
            if let Some(r) = &c.resource {
                form.append_pair("resource", r);
            }
        }
        ExchangeGrant::JwtBearer => {
            form.append_pair("grant_type", JWT_BEARER)
                .append_pair("assertion", subject_token)
                .append_pair("requested_token_use", "on_behalf_of");
        }
    }
    if let Some(s) = &c.scope {
        form.append_pair("scope", s);
    }
    let basic = match c.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part form-encoded, then Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&c.client_id), enc(&ex.secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            HeaderValue::from_str(&format!("Basic {b64}"))
                .ok()
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
        }
        ClientAuth::Post => {
            form.append_pair("client_id", &c.client_id)
                .append_pair("client_secret", &ex.secret);
            None
        }
    };
    (form.finish(), basic)
}

/// The bearer token of a request, when it is a JWT (the form identity
/// validated as an access token; an API key is not exchanged).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.split('.').count() == 3).then_some(token)
}

/// The provider's `error`, if it is a plain code (RFC 6749 §5.2 keeps it
/// to printable ASCII without quotes or backslashes); its description is
/// never repeated.
fn error_code(answer: &serde_json::Value) -> String {
    answer["error"]
        .as_str()
        .filter(|e| {
            !e.is_empty()
                && e.len() <= 64
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        })
        .unwrap_or("invalid_response")
        .to_owned()
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_plain_error_code_is_repeated() {
        let code = |v: serde_json::Value| super::error_code(&v);
        assert_eq!(
            code(serde_json::json!({"error": "invalid_grant"})),
            "invalid_grant"
        );
        assert_eq!(
            code(serde_json::json!({"error": "bad token eyJhbGci...", "error_description": "x"})),
            "invalid_response"
        );
        assert_eq!(code(serde_json::json!({})), "invalid_response");
    }
}
