//! The gateway's own identity assertion for upstreams: a short-lived EdDSA
//! JWT saying who the caller is, signed with the gateway's Ed25519 key, and
//! the JWKS upstreams use to verify it.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IdentityError, Principal};

/// Suggested assertion lifetime: long enough for one upstream call, short
/// enough that a leaked assertion is near-useless.
pub const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(60);

/// The claims of one assertion. `aud` is the upstream's name, so an
/// assertion sent to one upstream cannot be replayed to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The gateway's own identifier.
    pub iss: String,
    pub sub: String,
    pub tenant: String,
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The request this assertion was minted for; absent on assertions
    /// reused across requests (`inject.assertion_reuse_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

impl AssertionClaims {
    /// Claims for `principal` acting in `tenant`: `iat` now, `exp` = `iat` +
    /// `ttl`, a fresh random `jti`.
    pub fn new(
        issuer: &str,
        principal: &Principal,
        tenant: &str,
        audience: &str,
        request_id: &str,
        session: Option<&str>,
        ttl: Duration,
    ) -> Self {
        let caller = super::Caller {
            subject: principal.subject.as_str().into(),
            tenant: Some(tenant.into()),
            roles: principal.roles.iter().map(|r| r.as_str().into()).collect(),
            anonymous: false,
        };
        let request_id = Some(request_id.to_owned());
        Self::for_caller(issuer, &caller, audience, request_id, session, ttl)
    }

    /// Claims for `caller` toward `audience`: `iat` now, `exp` = `iat` +
    /// `ttl`, a fresh random `jti`. `request_id` is `None` on an assertion
    /// reused across requests.
    pub fn for_caller(
        issuer: &str,
        caller: &super::Caller,
        audience: &str,
        request_id: Option<String>,
        session: Option<&str>,
        ttl: Duration,
    ) -> Self {
        let iat = unix_now();
        AssertionClaims {
            iss: issuer.to_owned(),
            sub: caller.subject.to_string(),
            tenant: caller.tenant.as_deref().unwrap_or("").to_owned(),
            roles: caller.roles().map(str::to_owned).collect(),
            session: session.map(str::to_owned),
            request_id,
            aud: audience.to_owned(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
            jti: new_jti(),
        }
    }
}

fn unix_now() -> u64 {
    // A clock before 1970 is a broken host; 0 makes every assertion look
    // expired, which fails closed.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 128 random bits, base64url. If the system RNG ever fails, fall back to a
/// process-unique counter: `jti` needs uniqueness, not secrecy.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&unix_now().to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs assertions with the gateway's Ed25519 key.
pub struct AssertionSigner {
    key: Ed25519KeyPair,
    /// RFC 7638 thumbprint of the public key.
    kid: String,
    /// base64url public key (`x` of the JWK).
    x: String,
    /// base64url of the fixed JOSE header, computed once.
    header_b64: String,
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AssertionSigner {
    /// A fresh key pair (e.g. at start-up; upstreams fetch the JWKS). Fails
    /// only if the system RNG does.
    pub fn generate() -> Result<Self, IdentityError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| IdentityError::Key("could not generate an Ed25519 key"))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A PEM file with a `PRIVATE KEY` (PKCS#8 v1 or v2) Ed25519 key, e.g.
    /// from `openssl genpkey -algorithm ed25519`.
    pub fn from_pkcs8_pem_file(path: &Path) -> Result<Self, IdentityError> {
        let pem = std::fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = pem.as_slice();
        for item in rustls_pemfile::read_all(&mut reader) {
            match item {
                Ok(rustls_pemfile::Item::Pkcs8Key(der)) => {
                    return Self::from_pkcs8_der(der.secret_pkcs8_der());
                }
                Ok(_) => continue,
                Err(_) => return Err(IdentityError::Key("the file is not valid PEM")),
            }
        }
        Err(IdentityError::Key(
            "no PKCS#8 \"PRIVATE KEY\" block in the file",
        ))
    }

    /// A PKCS#8 (v1 or v2) DER Ed25519 private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, IdentityError> {
        let key = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| IdentityError::Key("not a PKCS#8 Ed25519 private key"))?;
        let x = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
        // RFC 7638: members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(AssertionSigner {
            key,
            kid,
            x,
            header_b64,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The compact JWS for `claims`.
    pub fn sign(&self, claims: &AssertionClaims) -> Result<String, IdentityError> {
        let payload = serde_json::to_vec(claims).map_err(|_| IdentityError::Sign)?;
        let mut jws = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header_b64);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jws);
        let sig = self.key.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut jws);
        Ok(jws)
    }

    /// The public key as a JWKS document, for upstreams to verify with.
    pub fn jwks_json(&self) -> String {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.x,
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::AuthMethod;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn principal() -> Principal {
        Principal {
            subject: "alice".into(),
            tenants: vec!["acme".into()],
            roles: vec!["reader".into(), "writer".into()],
            method: AuthMethod::Anonymous,
        }
    }

    fn verify(
        jwks_json: &str,
        token: &str,
        aud: &str,
    ) -> jsonwebtoken::errors::Result<AssertionClaims> {
        let set: JwkSet = serde_json::from_str(jwks_json).expect("ok");
        let header = jsonwebtoken::decode_header(token).expect("ok");
        let jwk = set.find(header.kid.as_deref().expect("ok")).expect("ok");
        let key = DecodingKey::from_jwk(jwk).expect("ok");
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[aud]);
        v.set_issuer(&["sluice"]);
        v.leeway = 0;
        jsonwebtoken::decode::<AssertionClaims>(token, &key, &v).map(|d| d.claims)
    }

    #[test]
    fn signed_assertion_verifies_with_published_jwks() {
        let signer = AssertionSigner::generate().expect("ok");
        let claims = AssertionClaims::new(
            "sluice",
            &principal(),
            "acme",
            "files-upstream",
            "req-1",
            Some("sess-9"),
            DEFAULT_ASSERTION_TTL,
        );
        assert_eq!(claims.exp, claims.iat + 60);
        let token = signer.sign(&claims).expect("ok");
        let jwks = signer.jwks_json();

        let v: serde_json::Value = serde_json::from_str(&jwks).expect("ok");
        let k = &v["keys"][0];
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["kid"], signer.kid());

        let got = verify(&jwks, &token, "files-upstream").expect("ok");
        assert_eq!(got, claims);

        // Bound to its audience.
        assert!(verify(&jwks, &token, "other-upstream").is_err());
        // Another gateway's key does not verify it.
        let other = AssertionSigner::generate().expect("ok");
        let forged = other.sign(&claims).expect("ok");
        let swapped = format!(
            "{}.{}",
            token.rsplit_once('.').expect("ok").0,
            forged.rsplit_once('.').expect("ok").1
        );
        assert!(verify(&jwks, &swapped, "files-upstream").is_err());
    }

    #[test]
    fn session_is_omitted_when_absent_and_jtis_differ() {
        let a = AssertionClaims::new(
            "gw",
            &principal(),
            "t",
            "up",
            "r",
            None,
            DEFAULT_ASSERTION_TTL,
        );
        let b = AssertionClaims::new(
            "gw",
            &principal(),
            "t",
            "up",
            "r",
            None,
            DEFAULT_ASSERTION_TTL,
        );
        assert_ne!(a.jti, b.jti);
        let json = serde_json::to_string(&a).expect("ok");
        assert!(!json.contains("session"));
    }

    #[test]
    fn pem_file_round_trip_and_debug_redacts() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8v1(&rng).expect("ok");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        let dir = tempfile::tempdir().expect("ok");
        let path = dir.path().join("gw.pem");
        std::fs::write(&path, pem).expect("ok");

        let a = AssertionSigner::from_pkcs8_pem_file(&path).expect("ok");
        let b = AssertionSigner::from_pkcs8_der(der.as_ref()).expect("ok");
        assert_eq!(a.kid(), b.kid());
        let d = format!("{a:?}");
        assert!(d.contains(a.kid()) && !d.contains(&b64));

        let claims = AssertionClaims::new(
            "sluice",
            &principal(),
            "acme",
            "up",
            "r",
            None,
            DEFAULT_ASSERTION_TTL,
        );
        let token = a.sign(&claims).expect("ok");
        assert_eq!(verify(&b.jwks_json(), &token, "up").expect("ok"), claims);

        std::fs::write(&path, "not a key").expect("ok");
        assert!(AssertionSigner::from_pkcs8_pem_file(&path).is_err());
        assert!(AssertionSigner::from_pkcs8_pem_file(&dir.path().join("missing.pem")).is_err());
    }
}

/// Signed assertions kept for reuse (`inject.assertion_reuse_s`), keyed by
/// everything they assert: upstream, subject, tenant, roles and session.
/// Signing is the larger part of a policy-checked request's cost (Ed25519:
/// ~120k instructions); reuse trades the per-request `jti` for it.
pub struct AssertionCache {
    map: dashmap::DashMap<Box<str>, (String, std::time::Instant)>,
}

/// Most assertions kept; past it, expired ones go, then all.
const MAX_CACHED_ASSERTIONS: usize = 65_536;

impl Default for AssertionCache {
    fn default() -> Self {
        Self {
            map: dashmap::DashMap::new(),
        }
    }
}

impl AssertionCache {
    /// The assertion for `key` if one was signed less than `reuse` ago, else
    /// a fresh one from `sign`, kept for the next request.
    pub fn get_or_sign<E>(
        &self,
        key: &str,
        reuse: Duration,
        sign: impl FnOnce() -> Result<String, E>,
    ) -> Result<String, E> {
        let now = std::time::Instant::now();
        if let Some(hit) = self.map.get(key) {
            if now.duration_since(hit.1) < reuse {
                return Ok(hit.0.clone());
            }
        }
        let token = sign()?;
        if self.map.len() >= MAX_CACHED_ASSERTIONS {
            self.map
                .retain(|_, (_, at)| now.duration_since(*at) < reuse);
            if self.map.len() >= MAX_CACHED_ASSERTIONS {
                self.map.clear();
            }
        }
        self.map.insert(key.into(), (token.clone(), now));
        Ok(token)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod cache_tests {
    use std::time::Duration;

    #[test]
    fn reuse_within_the_window_and_sign_anew_after_it() {
        let c = super::AssertionCache::default();
        let mut signed = 0;
        let sign = |n: &mut i32| -> Result<String, ()> {
            *n += 1;
            Ok(format!("t{n}"))
        };
        let a = c
            .get_or_sign("k", Duration::from_secs(30), || sign(&mut signed))
            .expect("sign");
        let b = c
            .get_or_sign("k", Duration::from_secs(30), || sign(&mut signed))
            .expect("sign");
        assert_eq!(a, b);
        let other = c
            .get_or_sign("k2", Duration::from_secs(30), || sign(&mut signed))
            .expect("sign");
        assert_ne!(a, other);
        // A zero window never reuses.
        let z = c
            .get_or_sign("k", Duration::ZERO, || sign(&mut signed))
            .expect("sign");
        assert_ne!(z, a);
        assert_eq!(signed, 3);
    }
}
