//! Client authentication (API keys, bearer JWTs) and the gateway's own
//! identity assertions for upstreams. Pure building blocks: no Pingora types;
//! the proxy passes header bytes in and gets a `Principal` or an `AuthError`.

pub mod apikey;
pub mod assertion;
mod error;
pub mod jwks;
pub mod jwt;
pub mod metadata;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

pub use apikey::{hash_key, ApiKeyEntry, ApiKeys};
pub use assertion::{AssertionCache, AssertionClaims, AssertionSigner, DEFAULT_ASSERTION_TTL};
pub use error::{AuthError, IdentityError};
pub use jsonwebtoken::Algorithm;
pub use jwks::{http_client, JwksCache, KeySet, RefreshSchedule};
pub use jwt::{IssuerConfig, JwtVerifier, KeySource, RefreshTask};
pub use metadata::{metadata_url, protected_resource_metadata, www_authenticate};

/// Who is calling, as authenticated: every tenant the credential names.
/// Admission resolves one tenant and makes it a `Caller`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub tenants: Vec<String>,
    pub roles: Vec<String>,
    pub method: AuthMethod,
}

/// Who is calling, in one tenant: the `Principal` once admission resolved
/// its tenant. What policy, limits, audit and assertions see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: Box<str>,
    pub tenant: Option<Box<str>>,
    pub roles: Vec<Box<str>>,
    /// Came in on an `auth: anonymous` route without credentials.
    pub anonymous: bool,
}

impl Caller {
    pub fn roles(&self) -> impl Iterator<Item = &str> + Clone {
        self.roles.iter().map(|r| &**r)
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// The configured key's id (never the key).
    ApiKey {
        id: String,
    },
    Jwt {
        issuer: String,
    },
    /// No authentication configured for this route.
    Anonymous,
}

impl Principal {
    /// The caller when authentication is off.
    pub fn anonymous() -> Self {
        Principal {
            subject: "anonymous".into(),
            tenants: Vec::new(),
            roles: Vec::new(),
            method: AuthMethod::Anonymous,
        }
    }
}

/// API keys and JWT issuers together: turns request headers into a caller.
#[derive(Debug)]
pub struct Authenticator {
    pub api_keys: ApiKeys,
    pub jwt: JwtVerifier,
}

impl Authenticator {
    /// `authorization` is the `Authorization` header value, `api_key_header`
    /// the `X-Api-Key` value (raw bytes).
    ///
    /// `Authorization: Bearer <x>` wins when present: `x` is verified as a
    /// JWT if it has the JWT shape (two dots), else as an API key; any other
    /// scheme is refused rather than silently falling back to `X-Api-Key`.
    /// Without `Authorization`, `X-Api-Key` is checked. Neither → `Missing`.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        api_key_header: Option<&[u8]>,
    ) -> Result<Principal, AuthError> {
        if let Some(value) = authorization {
            let token = bearer_token(value)?;
            return if looks_like_jwt(token) {
                self.jwt.verify(token)
            } else {
                self.api_key(token)
            };
        }
        if let Some(value) = api_key_header {
            let key = std::str::from_utf8(value)
                .map_err(|_| AuthError::Malformed)?
                .trim();
            if key.is_empty() {
                return Err(AuthError::Malformed);
            }
            return self.api_key(key);
        }
        Err(AuthError::Missing)
    }

    fn api_key(&self, key: &str) -> Result<Principal, AuthError> {
        self.api_keys
            .authenticate(key)
            .ok_or(AuthError::InvalidApiKey)
    }
}

/// The credential of an `Authorization: Bearer …` value (scheme is
/// case-insensitive, RFC 9110 §11.1).
fn bearer_token(value: &[u8]) -> Result<&str, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed)?;
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::UnsupportedScheme);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || has_whitespace(token) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// `char::is_whitespace` over the token, bytewise for the usual ASCII token
/// (the per-char walk was the larger part of authenticating a cached JWT).
fn has_whitespace(token: &str) -> bool {
    if token.is_ascii() {
        token
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r'))
    } else {
        token.contains(char::is_whitespace)
    }
}

fn looks_like_jwt(token: &str) -> bool {
    memchr::memchr_iter(b'.', token.as_bytes()).take(3).count() == 2
}
