//! The identity module's two error types: `IdentityError` for building
//! things (config, key files, JWKS, signing) and `AuthError` for one request's
//! failed authentication. Neither ever carries a secret or a presented token.

use std::path::PathBuf;

/// Setting up or running the identity machinery failed. Messages name the
/// offending config entry or file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("api key {id:?}: sha256 must be 64 hex characters")]
    ApiKeyHash { id: String },
    #[error("api key {id:?}: {reason}")]
    ApiKey { id: String, reason: &'static str },
    #[error("jwt issuer {issuer:?}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("fetching JWKS: {0}")]
    Fetch(String),
    #[error("signing key: {0}")]
    Key(&'static str),
    #[error("signing the identity assertion failed")]
    Sign,
}

/// Why a request's credentials were not accepted. `reason()` is a short
/// static label for metrics and logs; `Display` is a short human sentence.
/// Neither includes the token, key, or any claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("malformed credentials")]
    Malformed,
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    #[error("invalid api key")]
    InvalidApiKey,
    #[error("token issuer not accepted")]
    UnknownIssuer,
    #[error("token algorithm not accepted")]
    BadAlgorithm,
    #[error("token signing key not known")]
    UnknownKey,
    #[error("issuer keys not available yet")]
    KeysUnavailable,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token lacks required claim {0}")]
    MissingClaim(&'static str),
}

impl AuthError {
    /// Stable, low-cardinality label (metrics, logs).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::UnsupportedScheme => "unsupported_scheme",
            AuthError::InvalidApiKey => "invalid_api_key",
            AuthError::UnknownIssuer => "unknown_issuer",
            AuthError::BadAlgorithm => "bad_algorithm",
            AuthError::UnknownKey => "unknown_key",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
        }
    }

    /// The RFC 6750 `error` attribute for `WWW-Authenticate`. `None` when no
    /// credentials were sent: RFC 6750 §3.1 says not to include an error then.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Malformed | AuthError::UnsupportedScheme => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}
