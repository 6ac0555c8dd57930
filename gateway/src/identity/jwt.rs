//! Bearer JWT verification: pick the issuer from the unverified `iss`, pin
//! the algorithm to that issuer's allow-list and key type, find the key by
//! `kid`, then let `jsonwebtoken` check signature, `iss`, `aud`, `exp`, `nbf`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::jwks::{JwksCache, KeySet, RefreshSchedule};
use super::{AuthError, AuthMethod, IdentityError, Principal};

/// Tokens longer than this are refused before any decoding work.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Shortest accepted HS256 secret: RFC 7518 §3.2 requires at least the hash
/// size (256 bits).
const MIN_HS256_SECRET: usize = 32;

/// Clock skew beyond a few minutes is a broken clock, not skew; the cap also
/// keeps the time arithmetic far from overflow.
const MAX_LEEWAY_S: u64 = 600;

pub const DEFAULT_TENANT_CLAIM: &str = "tenant";
pub const DEFAULT_ROLES_CLAIM: &str = "roles";
pub const DEFAULT_LEEWAY_S: u64 = 30;
pub const DEFAULT_REFRESH_S: u64 = 300;

/// Where an issuer's verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// A JWKS document on disk, read when the verifier is built.
    JwksFile(PathBuf),
    /// A JWKS URL (https, or http to a loopback address), fetched by the
    /// background refresher.
    JwksUrl(String),
    /// A shared HS256 secret (at least 32 bytes).
    Hs256Secret(Vec<u8>),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::JwksFile(p) => f.debug_tuple("JwksFile").field(p).finish(),
            KeySource::JwksUrl(u) => f.debug_tuple("JwksUrl").field(u).finish(),
            KeySource::Hs256Secret(_) => f.debug_tuple("Hs256Secret").field(&"[redacted]").finish(),
        }
    }
}

impl KeySource {
    fn is_symmetric(&self) -> bool {
        matches!(self, KeySource::Hs256Secret(_))
    }
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (the gateway's own resource identifiers); a
    /// token must name at least one. Never empty: accepting any audience
    /// would accept tokens minted for other services.
    pub audiences: Vec<String>,
    pub keys: KeySource,
    /// Accepted `alg` values. Empty means the default for the key source:
    /// `[HS256]` for a secret, `[RS256, ES256, EdDSA]` for a JWKS.
    pub algorithms: Vec<Algorithm>,
    /// Claim with the tenants (string or array of strings). A name starting
    /// with `/` is a JSON pointer into the claims (e.g. `/org/tenants`).
    pub tenant_claim: String,
    /// Claim with the roles (string or array of strings; the `scope`/`scp`
    /// claims are split on spaces). `/`-prefixed names are JSON pointers.
    pub roles_claim: String,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway_s: u64,
    /// JWKS URL refresh period.
    pub refresh_s: u64,
}

impl IssuerConfig {
    /// A config with the defaults for everything but issuer, audiences, keys.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>, keys: KeySource) -> Self {
        IssuerConfig {
            issuer: issuer.into(),
            audiences,
            keys,
            algorithms: Vec::new(),
            tenant_claim: DEFAULT_TENANT_CLAIM.into(),
            roles_claim: DEFAULT_ROLES_CLAIM.into(),
            leeway_s: DEFAULT_LEEWAY_S,
            refresh_s: DEFAULT_REFRESH_S,
        }
    }
}

/// A boxed background task (see [`JwtVerifier::refreshers`]).
pub type RefreshTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

struct Issuer {
    name: String,
    keys: Arc<JwksCache>,
    url: Option<String>,
    schedule: RefreshSchedule,
    /// One prepared `Validation` per accepted algorithm, each listing only
    /// that algorithm, so nothing is cloned per request.
    validations: Vec<(Algorithm, Validation)>,
    tenant_claim: String,
    roles_claim: String,
}

/// Verifies bearer JWTs from the configured issuers.
pub struct JwtVerifier {
    issuers: HashMap<String, Issuer>,
    /// Tokens verified recently: a caller's repeated token costs a lookup
    /// instead of a signature check and two JSON parses. Keyed with a
    /// randomly seeded foldhash: SipHash over a whole token was most of the
    /// lookup.
    verified: dashmap::DashMap<Box<str>, Verified, foldhash::quality::RandomState>,
}

/// A verified token's outcome, good until the token's own `exp` and only
/// while its issuer's key set is the one that verified it (a JWKS refresh
/// that drops a key drops what it verified).
struct Verified {
    principal: Principal,
    exp: u64,
    issuer: String,
    keys_generation: u64,
}

/// Most verified tokens kept, and the longest token kept: bounded memory
/// (at most ~8 MB of tokens) whatever callers send.
const MAX_VERIFIED: usize = 4096;
const MAX_VERIFIED_TOKEN_BYTES: usize = 2048;

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.issuers.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("JwtVerifier")
            .field("issuers", &names)
            .finish()
    }
}

impl JwtVerifier {
    /// Validates the configs and loads file and secret keys (synchronously:
    /// JWKS files are read here). URL-sourced issuers start with no keys;
    /// run [`refreshers`](Self::refreshers) or [`refresh_all`](Self::refresh_all).
    pub fn new(configs: Vec<IssuerConfig>) -> Result<JwtVerifier, IdentityError> {
        let mut issuers = HashMap::with_capacity(configs.len());
        for cfg in configs {
            let issuer = build_issuer(cfg)?;
            if issuers.contains_key(&issuer.name) {
                return Err(issuer_err(&issuer.name, "configured twice"));
            }
            issuers.insert(issuer.name.clone(), issuer);
        }
        Ok(JwtVerifier {
            issuers,
            verified: dashmap::DashMap::with_hasher(Default::default()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The key cache of `issuer` (e.g. to inspect or prime it).
    pub fn cache(&self, issuer: &str) -> Option<&Arc<JwksCache>> {
        self.issuers.get(issuer).map(|i| &i.keys)
    }

    /// After a config reload: seed this (new) verifier's still-empty URL
    /// caches with the keys the previous verifier had for the same issuer
    /// and URL, so tokens keep verifying until the first fetch completes.
    pub fn inherit_keys(&self, previous: &JwtVerifier) {
        for (name, issuer) in &self.issuers {
            let (Some(url), Some(prev)) = (&issuer.url, previous.issuers.get(name)) else {
                continue;
            };
            if prev.url.as_ref() == Some(url) && issuer.keys.current().is_empty() {
                let keys = prev.keys.current();
                if !keys.is_empty() {
                    issuer.keys.store(KeySet::clone(&keys));
                }
            }
        }
    }

    /// One refresh loop per URL-sourced issuer, each to be spawned on a
    /// tokio runtime (or joined). Each loop ends by itself once this
    /// verifier is dropped; see [`JwksCache::refresher`].
    pub fn refreshers(&self, client: &reqwest::Client) -> Vec<RefreshTask> {
        self.issuers
            .values()
            .filter_map(|i| {
                let url = i.url.clone()?;
                let task: RefreshTask = Box::pin(i.keys.refresher(client.clone(), url, i.schedule));
                Some(task)
            })
            .collect()
    }

    /// Fetches every JWKS URL once, e.g. at start-up before serving. Every
    /// issuer is attempted; the first error is returned.
    pub async fn refresh_all(&self, client: &reqwest::Client) -> Result<(), IdentityError> {
        let mut first_err = None;
        for i in self.issuers.values() {
            if let Some(url) = &i.url {
                if let Err(e) = i.keys.refresh_url(client, url).await {
                    let e = IdentityError::Issuer {
                        issuer: i.name.clone(),
                        reason: e.to_string(),
                    };
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Verifies `token` (the bearer value, without `Bearer `).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let now = unix_now();
        if let Some(v) = self.verified.get(token) {
            let fresh = now < v.exp
                && self
                    .issuers
                    .get(&v.issuer)
                    .is_some_and(|i| i.keys.generation() == v.keys_generation);
            if fresh {
                return Ok(v.principal.clone());
            }
        }
        let (principal, exp, issuer, generation) = self.verify_signed(token)?;
        if token.len() <= MAX_VERIFIED_TOKEN_BYTES && exp > now {
            if self.verified.len() >= MAX_VERIFIED {
                self.verified.retain(|_, v| v.exp > now);
                if self.verified.len() >= MAX_VERIFIED {
                    self.verified.clear();
                }
            }
            self.verified.insert(
                token.into(),
                Verified {
                    principal: principal.clone(),
                    exp,
                    issuer,
                    keys_generation: generation,
                },
            );
        }
        Ok(principal)
    }

    /// The full check: signature, issuer, algorithm, audience, times.
    /// Also returns `exp`, the issuer and its key generation, for the cache.
    fn verify_signed(&self, token: &str) -> Result<(Principal, u64, String, u64), AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };

        // Unverified reads, used only to choose issuer, algorithm and key;
        // everything is re-checked against the signature below.
        let header: RawHeader = decode_segment(header_b64)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must be refused.
            return Err(AuthError::Malformed);
        }
        let peek: PeekClaims = decode_segment(payload_b64)?;
        let iss = peek.iss.ok_or(AuthError::UnknownIssuer)?;
        let issuer = self.issuers.get(&iss).ok_or(AuthError::UnknownIssuer)?;

        // `none`, unknown names, and anything off this issuer's list all stop
        // here; the list itself never mixes HMAC with public keys.
        let alg = Algorithm::from_str(&header.alg).map_err(|_| AuthError::BadAlgorithm)?;
        let validation = issuer
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(AuthError::BadAlgorithm)?;

        let generation = issuer.keys.generation();
        let claims = issuer.keys.with_current(|set| {
            if set.is_empty() {
                issuer.request_refresh();
                return Err(AuthError::KeysUnavailable);
            }
            let Some(key) = set.find(header.kid.as_deref(), alg) else {
                issuer.request_refresh();
                return Err(AuthError::UnknownKey);
            };
            jsonwebtoken::decode::<Value>(token, KeySet::decoding_key(key), validation)
                .map(|data| data.claims)
                .map_err(map_jwt_error)
        })?;

        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(AuthError::MissingClaim("sub")),
        };
        let principal = Principal {
            subject,
            tenants: claim_strings(&claims, &issuer.tenant_claim),
            roles: claim_strings(&claims, &issuer.roles_claim),
            method: AuthMethod::Jwt {
                issuer: issuer.name.clone(),
            },
        };
        // Validation requires `exp`; 0 (never cached) if it is odd.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok((principal, exp, issuer.name.clone(), generation))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Issuer {
    fn request_refresh(&self) {
        if self.url.is_some() {
            self.keys.request_refresh();
        }
    }
}

fn issuer_err(issuer: &str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Issuer {
        issuer: issuer.to_string(),
        reason: reason.into(),
    }
}

fn build_issuer(cfg: IssuerConfig) -> Result<Issuer, IdentityError> {
    let name = cfg.issuer;
    if name.is_empty() {
        return Err(issuer_err(&name, "issuer must not be empty"));
    }
    if cfg.audiences.is_empty() || cfg.audiences.iter().any(String::is_empty) {
        return Err(issuer_err(
            &name,
            "at least one non-empty audience is required",
        ));
    }
    if cfg.leeway_s > MAX_LEEWAY_S {
        return Err(issuer_err(
            &name,
            format!("leeway_s must be at most {MAX_LEEWAY_S}"),
        ));
    }
    let algorithms = if cfg.algorithms.is_empty() {
        if cfg.keys.is_symmetric() {
            vec![Algorithm::HS256]
        } else {
            vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        }
    } else {
        cfg.algorithms
    };
    for alg in &algorithms {
        let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
        // Algorithm confusion: an HMAC alg with public keys would let anyone
        // holding the (public) key mint tokens; the reverse makes no sense.
        if cfg.keys.is_symmetric() && *alg != Algorithm::HS256 {
            return Err(issuer_err(
                &name,
                format!("{alg:?} is not allowed with an HS256 secret"),
            ));
        }
        if !cfg.keys.is_symmetric() && hmac {
            return Err(issuer_err(
                &name,
                format!("{alg:?} is not allowed with public (JWKS) keys"),
            ));
        }
    }

    let (keys, url) = match &cfg.keys {
        KeySource::Hs256Secret(secret) => {
            if secret.len() < MIN_HS256_SECRET {
                return Err(issuer_err(
                    &name,
                    format!("HS256 secret must be at least {MIN_HS256_SECRET} bytes"),
                ));
            }
            (
                JwksCache::with_keys(&name, KeySet::from_hmac_secret(secret)),
                None,
            )
        }
        KeySource::JwksFile(path) => {
            let cache = JwksCache::new(&name);
            cache
                .load_file(path)
                .map_err(|e| issuer_err(&name, e.to_string()))?;
            (cache, None)
        }
        KeySource::JwksUrl(url) => {
            check_jwks_url(url).map_err(|r| issuer_err(&name, r))?;
            if cfg.refresh_s == 0 {
                return Err(issuer_err(&name, "refresh_s must be at least 1"));
            }
            (JwksCache::new(&name), Some(url.clone()))
        }
    };

    let audiences: Vec<&str> = cfg.audiences.iter().map(String::as_str).collect();
    let validations = algorithms
        .iter()
        .map(|&alg| {
            let mut v = Validation::new(alg);
            v.leeway = cfg.leeway_s;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_audience(&audiences);
            v.set_issuer(&[name.as_str()]);
            // `jsonwebtoken` skips the `aud`/`iss` checks when the claim is
            // absent unless it is required, so require all four.
            v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            (alg, v)
        })
        .collect();

    Ok(Issuer {
        keys: Arc::new(keys),
        url,
        schedule: RefreshSchedule {
            interval: Duration::from_secs(cfg.refresh_s.max(1)),
            ..RefreshSchedule::default()
        },
        validations,
        tenant_claim: cfg.tenant_claim,
        roles_claim: cfg.roles_claim,
        name,
    })
}

/// https anywhere; plain http only to a loopback host (tests, sidecars):
/// over the network it would let anyone on the path substitute the keys.
fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad JWKS URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("JWKS URL must be https (http only to a loopback address)".into())
            }
        }
        _ => Err("JWKS URL must be https".into()),
    }
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct PeekClaims {
    #[serde(default)]
    iss: Option<String>,
}

/// One JWS segment: base64url (no padding) → JSON.
fn decode_segment<T: serde::de::DeserializeOwned>(seg: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidIssuer => AuthError::UnknownIssuer,
        ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            "nbf" => "nbf",
            _ => "unknown",
        }),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::BadAlgorithm,
        // A key we hold that cannot check this signature: treat as invalid.
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        _ => AuthError::Malformed,
    }
}

/// The claim `name` as a list of strings: a string (split on spaces for the
/// OAuth `scope`/`scp` claims) or an array of strings (non-strings ignored:
/// dropping them can only grant less).
fn claim_strings(claims: &Value, name: &str) -> Vec<String> {
    let value = if name.starts_with('/') {
        claims.pointer(name)
    } else {
        claims.get(name)
    };
    let split = matches!(name, "scope" | "scp" | "/scope" | "/scp");
    match value {
        Some(Value::String(s)) if split => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
