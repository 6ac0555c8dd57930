//! Test-only key generation and token minting. Tokens are assembled and
//! signed here with aws-lc-rs directly, independently of the `jsonwebtoken`
//! code under test, so tampered and hostile tokens are easy to build.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub(crate) enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

pub(crate) struct TestSigner {
    pub kid: String,
    pub key: Key,
}

impl TestSigner {
    /// RSA key generation is slow: share one 2048-bit key across tests.
    pub fn rsa() -> &'static TestSigner {
        static RSA: OnceLock<TestSigner> = OnceLock::new();
        RSA.get_or_init(|| TestSigner {
            kid: "rsa-1".into(),
            key: Key::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("ok")),
        })
    }

    pub fn ec(kid: &str) -> TestSigner {
        TestSigner {
            kid: kid.into(),
            key: Key::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ok")),
        }
    }

    pub fn ed(kid: &str) -> TestSigner {
        TestSigner {
            kid: kid.into(),
            key: Key::Ed(Ed25519KeyPair::generate().expect("ok")),
        }
    }

    pub fn hmac(secret: &[u8]) -> TestSigner {
        TestSigner {
            kid: "hs".into(),
            key: Key::Hmac(secret.to_vec()),
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
            Key::Ed(_) => "EdDSA",
            Key::Hmac(_) => "HS256",
        }
    }

    /// The public JWK (no `alg` member, as many IdPs publish them).
    pub fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa(k) => {
                let c =
                    aws_lc_rs::signature::RsaPublicKeyComponents::<Vec<u8>>::from(k.public_key());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "kid": self.kid, "crv": "P-256",
                       "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            Key::Ed(k) => {
                json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519",
                       "x": b64(k.public_key().as_ref())})
            }
            Key::Hmac(s) => json!({"kty": "oct", "kid": self.kid, "k": b64(s)}),
        }
    }

    /// Raw public key bytes (what an attacker would use as an HMAC secret).
    pub fn public_bytes(&self) -> Vec<u8> {
        match &self.key {
            Key::Rsa(k) => k.public_key().as_ref().to_vec(),
            Key::Ec(k) => k.public_key().as_ref().to_vec(),
            Key::Ed(k) => k.public_key().as_ref().to_vec(),
            Key::Hmac(s) => s.clone(),
        }
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut sig)
                    .expect("ok");
                sig
            }
            Key::Ec(k) => k
                .sign(&SystemRandom::new(), input)
                .expect("ok")
                .as_ref()
                .to_vec(),
            Key::Ed(k) => k.sign(input).as_ref().to_vec(),
            Key::Hmac(s) => hmac_sha256(s, input),
        }
    }

    /// A token with header `{alg, typ, kid}`.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(
            &json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }
}

pub(crate) fn hmac_sha256(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, input).as_ref().to_vec()
}

/// An HS256 token signed with `secret`, any header.
pub(crate) fn hs256_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    TestSigner::hmac(secret).token_with_header(header, claims)
}

pub(crate) fn jwks(signers: &[&TestSigner]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
}
