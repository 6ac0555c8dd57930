//! Identity injection toward upstreams: the client's credentials never
//! leave the gateway; the upstream gets its own credential (read from a
//! secret reference at snapshot load) and, where configured, an identity
//! assertion the gateway signs for this one request.

use http::HeaderValue;
use pingora::http::RequestHeader;
use sluice_config::SecretRef;

/// Headers that carry the caller's credentials or claims about identity.
const CLIENT_IDENTITY_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-tenant-id",
    "x-forwarded-user",
];

/// An upstream's credential header, ready to insert.
#[derive(Clone)]
pub struct UpstreamCredential {
    pub header: http::HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamCredential({}: [REDACTED])", self.header)
    }
}

/// Read a secret. Errors name the reference, never the value.
pub fn read_secret(r: &SecretRef) -> Result<String, String> {
    match r {
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
        }
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| format!("{path}: {e}")),
    }
}

/// Build the credential for an upstream from its config.
pub fn credential(c: &sluice_config::Credential) -> Result<UpstreamCredential, String> {
    let secret = read_secret(&c.secret)?;
    let header = http::HeaderName::from_bytes(c.header.as_bytes()).map_err(|e| e.to_string())?;
    let mut value = HeaderValue::from_str(&format!("{}{secret}", c.prefix))
        .map_err(|_| "the secret is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(UpstreamCredential { header, value })
}

/// Every user's credential for one upstream, read from `dir/<subject>` at
/// snapshot load (no disk reads on the request path).
pub struct UserCredentialSet {
    pub header: http::HeaderName,
    by_subject: std::collections::HashMap<String, HeaderValue>,
}

impl std::fmt::Debug for UserCredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UserCredentialSet({} users, [REDACTED])",
            self.by_subject.len()
        )
    }
}

impl UserCredentialSet {
    pub fn get(&self, subject: &str) -> Option<&HeaderValue> {
        self.by_subject.get(subject)
    }
}

/// Most per-user files read for one upstream.
const MAX_USERS: usize = 100_000;

pub fn user_credentials(u: &sluice_config::UserCredentials) -> Result<UserCredentialSet, String> {
    let header = http::HeaderName::from_bytes(u.header.as_bytes()).map_err(|e| e.to_string())?;
    let mut by_subject = std::collections::HashMap::new();
    let entries = std::fs::read_dir(&u.dir).map_err(|e| format!("{}: {e}", u.dir))?;
    for entry in entries.flatten().take(MAX_USERS) {
        let path = entry.path();
        let Some(subject) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if subject.starts_with('.') || !path.is_file() {
            continue;
        }
        let secret =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut value = HeaderValue::from_str(&format!(
            "{}{}",
            u.prefix,
            secret.trim_end_matches(['\n', '\r'])
        ))
        .map_err(|_| format!("{}: not a valid header value", path.display()))?;
        value.set_sensitive(true);
        by_subject.insert(subject, value);
    }
    Ok(UserCredentialSet { header, by_subject })
}

/// Remove every client identity header (and any header the gateway itself
/// sets, so a client cannot forge it), then add the upstream's own.
pub fn apply(
    req: &mut RequestHeader,
    assertion_header: Option<&str>,
    credential: Option<&UpstreamCredential>,
    user: Option<(&http::HeaderName, &HeaderValue)>,
    assertion: Option<&str>,
) -> pingora::Result<()> {
    for h in CLIENT_IDENTITY_HEADERS {
        req.remove_header(h);
    }
    if let Some(h) = assertion_header {
        req.remove_header(h);
        if let Some(a) = assertion {
            let mut v = HeaderValue::from_str(a).map_err(|_| {
                pingora::Error::explain(
                    pingora::ErrorType::InternalError,
                    "assertion is not a header value",
                )
            })?;
            v.set_sensitive(true);
            req.insert_header(h.to_owned(), v)?;
        }
    }
    if let Some(c) = credential {
        req.insert_header(c.header.clone(), c.value.clone())?;
    }
    if let Some((h, v)) = user {
        req.insert_header(h.clone(), v.clone())?;
    }
    Ok(())
}
