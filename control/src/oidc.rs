//! Signing in to control's pages with the organisation's identity provider
//! (OpenID Connect): authorization code with PKCE, `state` and `nonce` kept
//! in the store (one-time, ten minutes, any control process may finish
//! what another began); the ID token verified against the provider's keys,
//! issuer, audience, expiry and nonce; the person's name, subject, roles
//! and tenants taken from its claims. Personal tokens keep working beside
//! it, for automation.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::db::{now_ms, random_id, Db, DbError};
use crate::settings::{OidcSettings, User};

/// How long a sign-in may take between leaving and coming back.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the identity provider's answer was not usable: {0}")]
    BadAnswer(&'static str),
    #[error("this sign-in link is unknown, used or expired; start again")]
    UnknownState,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the ID token is not valid: {0}")]
    BadToken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

pub struct Oidc {
    settings: OidcSettings,
    secret: Option<String>,
    http: reqwest::Client,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let secret = match &settings.client_secret {
            Some(s) => Some(
                s.read()
                    .map_err(|e| anyhow::anyhow!("oidc.client_secret: {e}"))?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            settings,
            secret,
            http,
        })
    }

    /// The provider's name for the sign-in button.
    pub fn label(&self) -> &str {
        self.settings
            .label
            .as_deref()
            .unwrap_or(&self.settings.issuer)
    }

    async fn discover(&self) -> Result<Discovery, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|_| OidcError::BadAnswer("discovery document"))?;
        if d.issuer.trim_end_matches('/') != self.settings.issuer.trim_end_matches('/') {
            return Err(OidcError::BadAnswer(
                "the discovery document names another issuer",
            ));
        }
        Ok(d)
    }

    /// Begin a sign-in: where to send the browser.
    pub async fn start(&self, db: &Db, redirect_uri: &str) -> Result<String, OidcError> {
        let d = self.discover().await?;
        let state = random_id();
        let nonce = random_id();
        let verifier = b64(&rand::random::<[u8; 32]>());
        let challenge = b64(&Sha256::digest(verifier.as_bytes()));
        let (state_hash, v, n) = (sha256_hex(&state), verifier, nonce.clone());
        let now = now_ms();
        db.call(move |c| {
            c.execute(
                "DELETE FROM oidc_logins WHERE expires_ms <= ?1",
                crate::params![now],
            )?;
            c.execute(
                "INSERT INTO oidc_logins (state_hash, verifier, nonce, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                crate::params![state_hash, v, n, now + LOGIN_TTL_MS],
            )
        })
        .await?;
        let scope = self.settings.scopes.join(" ");
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if d.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{sep}{query}", d.authorization_endpoint))
    }

    /// Finish a sign-in: the person the provider vouches for.
    pub async fn finish(
        &self,
        db: &Db,
        code: &str,
        state: &str,
        redirect_uri: &str,
    ) -> Result<User, OidcError> {
        // One-time: taken from the store whichever way this ends.
        let state_hash = sha256_hex(state);
        let now = now_ms();
        let login = db
            .call(move |c| {
                c.transaction(|tx| {
                    let row = tx.query_opt(
                        "SELECT verifier, nonce FROM oidc_logins WHERE state_hash = ?1 AND expires_ms > ?2",
                        crate::params![state_hash, now],
                    )?;
                    tx.execute(
                        "DELETE FROM oidc_logins WHERE state_hash = ?1",
                        crate::params![state_hash],
                    )?;
                    row.map(|r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)))
                        .transpose()
                })
            })
            .await?;
        let (verifier, nonce) = login.ok_or(OidcError::UnknownState)?;
        let d = self.discover().await?;
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", &verifier);
            if self.secret.is_none() {
                form.append_pair("client_id", &self.settings.client_id);
            }
            form.finish()
        };
        let mut req = self
            .http
            .post(&d.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        if let Some(secret) = &self.secret {
            req = req.basic_auth(
                form_urlencoded::byte_serialize(self.settings.client_id.as_bytes())
                    .collect::<String>(),
                Some(form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()),
            );
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?;
        let ok = resp.status().is_success();
        let answer: serde_json::Value = resp
            .json()
            .await
            .map_err(|_| OidcError::BadAnswer("token response"))?;
        if !ok {
            let code = answer["error"]
                .as_str()
                .filter(|e| {
                    e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .unwrap_or("invalid_response");
            return Err(OidcError::Refused(code.to_owned()));
        }
        let id_token = answer["id_token"]
            .as_str()
            .ok_or(OidcError::BadAnswer("no id_token"))?;
        let claims = self.verify(&d, id_token, &nonce).await?;
        self.person(&claims)
    }

    async fn verify(
        &self,
        d: &Discovery,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Value, OidcError> {
        let bad = |e: &dyn std::fmt::Display| OidcError::BadToken(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(&e))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::PS256
                | Algorithm::EdDSA
        ) {
            return Err(OidcError::BadToken("unsupported algorithm".into()));
        }
        let keys: JwkSet = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|_| OidcError::BadAnswer("key set"))?;
        let jwk = match header.kid.as_deref() {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| {
            OidcError::BadToken("signed with a key the provider does not publish".into())
        })?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[d.issuer.as_str()]);
        v.set_audience(&[self.settings.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 60;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| bad(&e))?
            .claims;
        if claims["nonce"].as_str() != Some(nonce) {
            return Err(OidcError::BadToken("nonce mismatch".into()));
        }
        Ok(claims)
    }

    /// Control's user for verified `claims`.
    fn person(&self, claims: &serde_json::Value) -> Result<User, OidcError> {
        let s = &self.settings;
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        let list = |name: &str| -> Vec<String> {
            match &claims[name] {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::String(v) => v.split_whitespace().map(str::to_owned).collect(),
                _ => Vec::new(),
            }
        };
        let sub = text("sub").ok_or(OidcError::BadToken("no sub".into()))?;
        let name = text(&s.name_claim).unwrap_or_else(|| sub.clone());
        Ok(User {
            name,
            token_sha256: String::new(),
            subject: Some(text(&s.subject_claim).unwrap_or(sub)),
            roles: list(&s.roles_claim),
            tenants: list(&s.tenants_claim),
        })
    }
}
