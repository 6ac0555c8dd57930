//! Who is calling control: gateways (one shared bearer token), people
//! (a personal token, exchanged at sign-in for a session cookie) and Slack
//! (signed requests, see `slack`). Tokens are compared by SHA-256 in
//! constant time; control stores only their hashes, and a session only as
//! the hash of its id, in the store every control process shares.

use std::time::Duration;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{now_ms, Db, DbError};
use crate::settings::User;

pub const SESSION_COOKIE: &str = "sluice_session";

pub struct Auth {
    gateway_token_hash: [u8; 32],
    users: Vec<User>,
    db: Db,
    ttl: Duration,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl Auth {
    pub fn new(gateway_token: &str, users: Vec<User>, db: Db, ttl: Duration) -> Self {
        Self {
            gateway_token_hash: hash(gateway_token),
            users,
            db,
            ttl,
        }
    }

    pub fn is_gateway(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| bool::from(hash(t).ct_eq(&self.gateway_token_hash)))
    }

    /// The user a personal token belongs to.
    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        let h = hex::encode(hash(token));
        self.users.iter().find(|u| {
            bool::from(
                u.token_sha256
                    .to_ascii_lowercase()
                    .as_bytes()
                    .ct_eq(h.as_bytes()),
            )
        })
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// A person, from a bearer token or a session cookie.
    pub async fn user(&self, headers: &HeaderMap) -> Result<Option<User>, DbError> {
        if let Some(t) = bearer(headers) {
            return Ok(self.user_by_token(t).cloned());
        }
        let Some(sid) = cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let id_hash = hex::encode(hash(sid));
        let row = self
            .db
            .call(move |c| {
                c.query_opt(
                    "SELECT user_name, profile FROM sessions WHERE id_hash = ?1 AND expires_ms > ?2",
                    crate::params![id_hash, now_ms()],
                )?
                .map(|r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?)))
                .transpose()
            })
            .await?;
        Ok(match row {
            // Signed in through the identity provider: as it vouched.
            Some((_, Some(profile))) => serde_json::from_str(&profile).ok(),
            Some((name, None)) => self.user_by_name(&name).cloned(),
            None => None,
        })
    }

    /// Sign in: a new session for the token's user.
    pub async fn sign_in(&self, token: &str) -> Result<Option<(String, User)>, DbError> {
        let Some(user) = self.user_by_token(token).cloned() else {
            return Ok(None);
        };
        let sid = self.new_session(&user.name, None).await?;
        Ok(Some((sid, user)))
    }

    /// Sign in someone the identity provider vouched for.
    pub async fn sign_in_as(&self, user: &User) -> Result<String, DbError> {
        let profile = serde_json::to_string(user).unwrap_or_default();
        self.new_session(&user.name, Some(profile)).await
    }

    async fn new_session(&self, name: &str, profile: Option<String>) -> Result<String, DbError> {
        let sid = crate::db::random_id();
        let (id_hash, name) = (hex::encode(hash(&sid)), name.to_owned());
        let now = now_ms();
        let expires = now + self.ttl.as_millis() as i64;
        self.db
            .call(move |c| {
                c.execute(
                    "DELETE FROM sessions WHERE expires_ms <= ?1",
                    crate::params![now],
                )?;
                c.execute(
                    "INSERT INTO sessions (id_hash, user_name, expires_ms, profile) VALUES (?1, ?2, ?3, ?4)",
                    crate::params![id_hash, name, expires, profile],
                )
            })
            .await?;
        Ok(sid)
    }

    pub async fn sign_out(&self, headers: &HeaderMap) -> Result<(), DbError> {
        if let Some(sid) = cookie(headers, SESSION_COOKIE) {
            let id_hash = hex::encode(hash(sid));
            self.db
                .call(move |c| {
                    c.execute(
                        "DELETE FROM sessions WHERE id_hash = ?1",
                        crate::params![id_hash],
                    )
                })
                .await?;
        }
        Ok(())
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
