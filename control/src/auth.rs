//! Who is calling control: gateways (one shared bearer token), people
//! (a personal token, exchanged at sign-in for a session cookie) and Slack
//! (signed requests, see `slack`). Tokens are compared by SHA-256 in
//! constant time; control stores only their hashes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::settings::User;
use sluice_config::locks::Recover;

pub const SESSION_COOKIE: &str = "sluice_session";

pub struct Auth {
    gateway_token_hash: [u8; 32],
    users: Vec<User>,
    /// Session id → (user index, expiry).
    sessions: Mutex<HashMap<String, (usize, Instant)>>,
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
    pub fn new(gateway_token: &str, users: Vec<User>, ttl: Duration) -> Self {
        Self {
            gateway_token_hash: hash(gateway_token),
            users,
            sessions: Mutex::new(HashMap::new()),
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
    pub fn user(&self, headers: &HeaderMap) -> Option<&User> {
        if let Some(t) = bearer(headers) {
            return self.user_by_token(t);
        }
        let sid = cookie(headers, SESSION_COOKIE)?;
        let mut s = self.sessions.lock().recover();
        match s.get(sid) {
            Some((idx, exp)) if *exp > Instant::now() => self.users.get(*idx),
            Some(_) => {
                s.remove(sid);
                None
            }
            None => None,
        }
    }

    /// Sign in: a new session for the token's user.
    pub fn sign_in(&self, token: &str) -> Option<(String, &User)> {
        let user = self.user_by_token(token)?;
        let idx = self.users.iter().position(|u| u.name == user.name)?;
        let sid = crate::db::random_id();
        let mut s = self.sessions.lock().recover();
        let now = Instant::now();
        s.retain(|_, (_, exp)| *exp > now);
        s.insert(sid.clone(), (idx, now + self.ttl));
        Some((sid, user))
    }

    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(sid) = cookie(headers, SESSION_COOKIE) {
            self.sessions.lock().recover().remove(sid);
        }
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
