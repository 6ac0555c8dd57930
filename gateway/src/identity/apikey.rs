//! API key authentication: config holds only SHA-256 hashes of keys; a
//! presented key is hashed once and compared against every entry in
//! constant time.

use std::collections::HashSet;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{AuthMethod, IdentityError, Principal};

/// One configured key. `sha256_hex` is the hex SHA-256 of the key (see
/// [`hash_key`]); the key itself never appears in config.
#[derive(Clone)]
pub struct ApiKeyEntry {
    pub id: String,
    pub sha256_hex: String,
    pub subject: String,
    pub tenants: Vec<String>,
    pub roles: Vec<String>,
}

// A hash of a low-entropy key can be brute-forced offline: keep it out of logs.
impl fmt::Debug for ApiKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyEntry")
            .field("id", &self.id)
            .field("sha256_hex", &"[redacted]")
            .field("subject", &self.subject)
            .field("tenants", &self.tenants)
            .field("roles", &self.roles)
            .finish()
    }
}

struct Stored {
    digest: [u8; 32],
    principal: Principal,
}

/// The validated key table.
pub struct ApiKeys {
    entries: Vec<Stored>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self
            .entries
            .iter()
            .map(|e| match &e.principal.method {
                AuthMethod::ApiKey { id } => id.as_str(),
                _ => "",
            })
            .collect();
        f.debug_struct("ApiKeys").field("ids", &ids).finish()
    }
}

impl ApiKeys {
    /// Validates every entry: non-empty unique id, 64 hex characters, no two
    /// entries with the same hash (a key must map to exactly one principal).
    pub fn new(entries: Vec<ApiKeyEntry>) -> Result<ApiKeys, IdentityError> {
        let mut ids = HashSet::new();
        let mut digests = HashSet::new();
        let mut stored = Vec::with_capacity(entries.len());
        for e in entries {
            if e.id.is_empty() {
                return Err(IdentityError::ApiKey {
                    id: e.id,
                    reason: "id must not be empty",
                });
            }
            if e.subject.is_empty() {
                return Err(IdentityError::ApiKey {
                    id: e.id,
                    reason: "subject must not be empty",
                });
            }
            let Some(digest) = decode_hex32(&e.sha256_hex) else {
                return Err(IdentityError::ApiKeyHash { id: e.id });
            };
            if !ids.insert(e.id.clone()) {
                return Err(IdentityError::ApiKey {
                    id: e.id,
                    reason: "id is configured twice",
                });
            }
            if !digests.insert(digest) {
                return Err(IdentityError::ApiKey {
                    id: e.id,
                    reason: "the same key hash is configured for another id",
                });
            }
            stored.push(Stored {
                digest,
                principal: Principal {
                    subject: e.subject,
                    tenants: e.tenants,
                    roles: e.roles,
                    method: AuthMethod::ApiKey { id: e.id },
                },
            });
        }
        Ok(ApiKeys { entries: stored })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The principal for `presented`, if it is a configured key.
    ///
    /// Every entry is compared, match or not, and the match is recorded with
    /// a constant-time select, so timing does not reveal which entry (or how
    /// much of a hash) matched.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        if presented.is_empty() {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index: u64 = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            let eq = entry.digest.ct_eq(&digest);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let i = usize::try_from(index).ok()?;
            self.entries.get(i).map(|e| e.principal.clone())
        } else {
            None
        }
    }
}

/// Lower-case hex SHA-256 of `key`: the value to put in config.
pub fn hash_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Exactly 64 hex digits (either case) → 32 bytes.
fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0])?;
        let lo = nibble(pair[1])?;
        out[i] = (hi << 4) | lo;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str) -> ApiKeyEntry {
        ApiKeyEntry {
            id: id.into(),
            sha256_hex: hash_key(key),
            subject: format!("svc-{id}"),
            tenants: vec!["acme".into()],
            roles: vec!["reader".into()],
        }
    }

    #[test]
    fn hash_format() {
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let h = hash_key("sk-anything");
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn right_key_authenticates_and_wrong_key_does_not() {
        let keys = ApiKeys::new(vec![entry("a", "key-a"), entry("b", "key-b")]).expect("ok");
        let p = keys.authenticate("key-b").expect("ok");
        assert_eq!(p.subject, "svc-b");
        assert_eq!(p.tenants, vec!["acme".to_string()]);
        assert_eq!(p.roles, vec!["reader".to_string()]);
        assert_eq!(p.method, AuthMethod::ApiKey { id: "b".into() });
        assert_eq!(
            keys.authenticate("key-a").expect("ok").method,
            AuthMethod::ApiKey { id: "a".into() }
        );
        assert!(keys.authenticate("key-c").is_none());
        assert!(keys.authenticate("").is_none());
        assert!(keys.authenticate("key-b ").is_none());
    }

    #[test]
    fn upper_case_hash_is_accepted() {
        let mut e = entry("a", "key-a");
        e.sha256_hex = e.sha256_hex.to_uppercase();
        let keys = ApiKeys::new(vec![e]).expect("ok");
        assert!(keys.authenticate("key-a").is_some());
    }

    #[test]
    fn bad_hashes_and_duplicates_are_rejected() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            let mut e = entry("a", "k");
            e.sha256_hex = bad.to_string();
            assert!(matches!(
                ApiKeys::new(vec![e]),
                Err(IdentityError::ApiKeyHash { .. })
            ));
        }
        assert!(ApiKeys::new(vec![entry("a", "k1"), entry("a", "k2")]).is_err());
        assert!(ApiKeys::new(vec![entry("a", "k1"), entry("b", "k1")]).is_err());
    }

    #[test]
    fn debug_redacts_hashes() {
        let e = entry("a", "key-a");
        let h = e.sha256_hex.clone();
        assert!(!format!("{e:?}").contains(&h));
        let keys = ApiKeys::new(vec![e]).expect("ok");
        let d = format!("{keys:?}");
        assert!(!d.contains(&h) && d.contains("\"a\""));
    }
}
