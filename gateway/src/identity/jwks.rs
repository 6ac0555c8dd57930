//! An issuer's verification keys: parsing a JWKS into ready-to-use keys, the
//! lock-free per-issuer cache the request path reads, and the background
//! loop that refreshes a JWKS URL (periodically, and early on an unknown
//! `kid`, rate-limited).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::IdentityError;

/// Largest JWKS document accepted (file or URL). Real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Per-fetch deadline, so a hung IdP cannot stall the refresher forever.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Which algorithms a key can verify; derived from the JWK's `kty`/`crv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::P256, ES256)
                | (KeyKind::P384, ES384)
                | (KeyKind::Ed25519, EdDSA)
                | (KeyKind::Hmac, HS256 | HS384 | HS512)
        )
    }
}

/// One usable verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    decoding: DecodingKey,
}

impl VerifyKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.verifies(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The keys of one issuer at one moment: the JWKS as published (minus keys
/// we cannot use) plus the decoded keys the verifier uses.
#[derive(Clone)]
pub struct KeySet {
    jwks: JwkSet,
    keys: Vec<VerifyKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // kids only: an HMAC secret must never be printed.
        let kids: Vec<Option<&str>> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    pub fn empty() -> Self {
        KeySet {
            jwks: JwkSet { keys: Vec::new() },
            keys: Vec::new(),
        }
    }

    /// Parses a JWKS, keeping only public signature keys we can verify with.
    /// A key we do not understand (other curve, `use: enc`, symmetric `oct`)
    /// is skipped rather than failing the whole set: IdPs publish such keys
    /// next to the ones we need. A set with no usable key at all is an error.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, IdentityError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| IdentityError::Jwks(format!("not a JWKS document: {e}")))?;
        let mut jwks = JwkSet { keys: Vec::new() };
        let mut keys = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if let Some(key) = usable_public_key(&jwk) {
                keys.push(key);
                jwks.keys.push(jwk);
            }
        }
        if keys.is_empty() {
            return Err(IdentityError::Jwks(
                "no usable public signature key (RSA, EC P-256/P-384, Ed25519)".into(),
            ));
        }
        Ok(KeySet { jwks, keys })
    }

    /// A single shared HMAC secret (no `kid`).
    pub fn from_hmac_secret(secret: &[u8]) -> Self {
        KeySet {
            jwks: JwkSet { keys: Vec::new() },
            keys: vec![VerifyKey {
                kid: None,
                kind: KeyKind::Hmac,
                alg: None,
                decoding: DecodingKey::from_secret(secret),
            }],
        }
    }

    /// The JWKS as published, minus skipped keys. Empty for an HMAC secret.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token's `kid` and `alg`: the key with that `kid`, or
    /// when there is no such key (or no `kid`), the only kid-less key that
    /// can verify `alg`. Never guesses between several candidates.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyKey> {
        if let Some(kid) = kid {
            if let Some(k) = self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.accepts(alg))
            {
                return Some(k);
            }
        }
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.accepts(alg) && (kid.is_none() || k.kid.is_none()));
        match (candidates.next(), candidates.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    pub(crate) fn decoding_key(key: &VerifyKey) -> &DecodingKey {
        &key.decoding
    }
}

fn usable_public_key(jwk: &Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // Symmetric keys are never taken from a JWKS: a published `oct` key
        // would let anyone who can read it mint tokens.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(ka) => Some(signature_alg(ka)?),
    };
    if alg.is_some_and(|a| !kind.verifies(a)) {
        return None;
    }
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        decoding,
    })
}

/// A JWK `alg` that names a signature algorithm; `None` for encryption
/// algorithms and unknown names (the key is then skipped).
fn signature_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// An HTTP client suited to JWKS fetches: a few redirects at most and never
/// from https to plain http (which would let the path substitute keys), a
/// short connect timeout. Build one and share it across issuers.
pub fn http_client() -> Result<reqwest::Client, IdentityError> {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() != "https"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.error("redirect away from https")
        } else if attempt.previous().len() > 3 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("sluice-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| IdentityError::Fetch(e.without_url().to_string()))
}

/// When the refresher fetches a JWKS URL.
#[derive(Debug, Clone, Copy)]
pub struct RefreshSchedule {
    /// Regular refresh period.
    pub interval: Duration,
    /// Minimum gap between fetches triggered by unknown `kid`s, and the retry
    /// delay after a failed fetch. Tokens carry attacker-chosen `kid`s, so
    /// without this an attacker could make us hammer the IdP.
    pub early_min_gap: Duration,
}

impl Default for RefreshSchedule {
    fn default() -> Self {
        RefreshSchedule {
            interval: Duration::from_secs(300),
            early_min_gap: Duration::from_secs(30),
        }
    }
}

/// The current keys of one issuer. Readers (`current`) never block; a load
/// or refresh swaps in a whole new `KeySet`, and a failed one leaves the last
/// good set in place.
pub struct JwksCache {
    issuer: String,
    keys: ArcSwap<KeySet>,
    /// Bumped on every swap: results verified with an older set are stale.
    generation: std::sync::atomic::AtomicU64,
    /// Asks the refresher for an early fetch. Held in its own `Arc` so the
    /// refresher can wait on it without keeping the cache alive.
    wake: Arc<Notify>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("keys", &*self.keys.load())
            .finish()
    }
}

impl Drop for JwksCache {
    fn drop(&mut self) {
        // Lets a refresher waiting on us notice at once that we are gone.
        self.wake.notify_one();
    }
}

impl JwksCache {
    /// An empty cache (every lookup fails with `KeysUnavailable` until a
    /// load or refresh succeeds). `issuer` is only used in logs.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self::with_keys(issuer, KeySet::empty())
    }

    pub fn with_keys(issuer: impl Into<String>, keys: KeySet) -> Self {
        JwksCache {
            issuer: issuer.into(),
            keys: ArcSwap::from_pointee(keys),
            generation: std::sync::atomic::AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current key set (cheap: one atomic load and refcount bump).
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Borrow the current key set without touching the refcount (hot path).
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(&KeySet) -> R) -> R {
        f(&self.keys.load())
    }

    pub fn store(&self, keys: KeySet) {
        self.keys.store(Arc::new(keys));
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Changes whenever the key set is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Parses `bytes` as a JWKS and swaps it in; on error the cache is
    /// unchanged. Returns the number of usable keys.
    pub fn load_json(&self, bytes: &[u8]) -> Result<usize, IdentityError> {
        let set = KeySet::from_jwks_json(bytes)?;
        let n = set.len();
        self.store(set);
        Ok(n)
    }

    /// Reads and loads a JWKS file; on error the cache is unchanged.
    pub fn load_file(&self, path: &Path) -> Result<usize, IdentityError> {
        let bytes = std::fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(IdentityError::Jwks(format!(
                "{} is larger than {MAX_JWKS_BYTES} bytes",
                path.display()
            )));
        }
        self.load_json(&bytes)
    }

    /// Fetches `url` once and swaps in the result; on any error (network,
    /// status, size, parse, no usable key) the last good set stays.
    pub async fn refresh_url(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> Result<usize, IdentityError> {
        // `without_url`: the URL is in config already, and keeping it out of
        // the message avoids echoing any credentials embedded in it.
        let fetch_err = |e: reqwest::Error| IdentityError::Fetch(e.without_url().to_string());
        let mut resp = client
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(fetch_err)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(IdentityError::Fetch(format!("HTTP status {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(IdentityError::Fetch(format!(
                    "response larger than {MAX_JWKS_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        self.load_json(&body)
    }

    /// Called from the request path when a token names a `kid` we do not
    /// have: asks the refresher (if any) for an early fetch. Cheap and
    /// non-blocking; repeated calls coalesce, and the refresher enforces
    /// `early_min_gap`.
    pub fn request_refresh(&self) {
        self.wake.notify_one();
    }

    /// The refresh loop for a JWKS URL, to run as a background task. It
    /// fetches at once if the cache is empty (else after `interval`), then
    /// every `interval`; an early fetch on `request_refresh` at most once per
    /// `early_min_gap`; after a failure, a retry after `early_min_gap`.
    ///
    /// The future holds the cache only weakly: it ends by itself soon after
    /// the cache (i.e. the `JwtVerifier` owning it) is dropped, e.g. after a
    /// config reload, so the caller needs no cancellation handle.
    pub fn refresher(
        self: &Arc<Self>,
        client: reqwest::Client,
        url: String,
        schedule: RefreshSchedule,
    ) -> impl Future<Output = ()> + Send + 'static {
        let weak = Arc::downgrade(self);
        let wake = Arc::clone(&self.wake);
        let start_empty = self.keys.load().is_empty();
        refresh_loop(weak, wake, client, url, schedule, start_empty)
    }
}

async fn refresh_loop(
    weak: Weak<JwksCache>,
    wake: Arc<Notify>,
    client: reqwest::Client,
    url: String,
    schedule: RefreshSchedule,
    start_empty: bool,
) {
    let mut last_fetch: Option<Instant> = None;
    let mut next_due = if start_empty {
        Instant::now()
    } else {
        Instant::now() + schedule.interval
    };
    loop {
        let early = tokio::select! {
            () = tokio::time::sleep_until(next_due) => false,
            () = wake.notified() => true,
        };
        if weak.strong_count() == 0 {
            return;
        }
        if early {
            if let Some(last) = last_fetch {
                let allowed = last + schedule.early_min_gap;
                if allowed > Instant::now() {
                    tokio::time::sleep_until(allowed.min(next_due)).await;
                }
            }
        }
        let Some(cache) = weak.upgrade() else {
            return;
        };
        let ok = match cache.refresh_url(&client, &url).await {
            Ok(n) => {
                tracing::debug!(issuer = %cache.issuer, keys = n, "JWKS refreshed");
                true
            }
            Err(e) => {
                tracing::warn!(
                    issuer = %cache.issuer,
                    error = %e,
                    "JWKS refresh failed; keeping the last good key set"
                );
                false
            }
        };
        drop(cache);
        let now = Instant::now();
        last_fetch = Some(now);
        next_due = now
            + if ok {
                schedule.interval
            } else {
                schedule.early_min_gap.min(schedule.interval)
            };
    }
}
