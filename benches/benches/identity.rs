//! The identity steps of a policy-checked request and the snapshot swap:
//! taking the current snapshot, verifying the caller's JWT (first sight vs
//! seen before), and the identity assertion (signed per request vs reused
//! with `inject.assertion_reuse_s`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use sluice_gateway::identity::{
    AssertionCache, AssertionClaims, AssertionSigner, IssuerConfig, JwtVerifier, KeySource,
};
use sluice_gateway::state::{Runtime, Shared};

const SECRET: &[u8] = b"bench-hs256-secret-0123456789abcdef";

/// An HS256 token for subject `sub`.
fn hs256(sub: &str) -> String {
    let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": "https://idp.bench", "aud": "sluice-bench", "sub": sub,
        "tenant": "acme", "roles": ["agent"], "exp": 4_000_000_000u64,
    });
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{sig}")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("identity");

    let snap = sluice_config::load(
        "listeners: [{ name: main, address: \"127.0.0.1:8080\" }]\n\
         upstreams: [{ name: up, url: \"http://127.0.0.1:9000/mcp\" }]\n\
         routes: [{ name: r, path: /mcp, upstream: up }]\n",
        1,
    )
    .expect("config");
    let shared = Shared::new(
        Runtime::empty(snap.clone()),
        AssertionSigner::generate().expect("key"),
        None,
        sluice_gateway::metrics::Metrics::new(),
        None,
    );
    g.bench_function("snapshot_take", |b| b.iter(|| black_box(shared.current())));
    g.bench_function("snapshot_publish", |b| {
        b.iter(|| shared.publish(Runtime::empty(snap.clone())))
    });

    let verifier = JwtVerifier::new(vec![IssuerConfig::new(
        "https://idp.bench",
        vec!["sluice-bench".into()],
        KeySource::Hs256Secret(SECRET.to_vec()),
    )])
    .expect("verifier");
    let token = hs256("agent-1");
    assert!(verifier.verify(&token).is_ok());
    g.bench_function("jwt_verify_seen_before", |b| {
        b.iter(|| verifier.verify(black_box(&token)))
    });
    // More distinct tokens than the cache keeps: every verify is a full check.
    let tokens: Vec<String> = (0..10_000).map(|i| hs256(&format!("agent-{i}"))).collect();
    let mut i = 0;
    g.bench_function("jwt_verify_first_sight", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            verifier.verify(black_box(&tokens[i]))
        })
    });

    let signer = AssertionSigner::generate().expect("key");
    let claims = AssertionClaims {
        iss: "sluice".into(),
        sub: "agent-1".into(),
        tenant: "acme".into(),
        roles: vec!["agent".into()],
        session: None,
        request_id: Some("0123456789abcdef0123456789abcdef".into()),
        aud: "up".into(),
        iat: 1_800_000_000,
        exp: 1_800_000_060,
        jti: "0123456789abcdef".into(),
    };
    g.bench_function("assertion_signed_per_request", |b| {
        b.iter(|| signer.sign(black_box(&claims)))
    });
    let cache = AssertionCache::default();
    g.bench_function("assertion_reused", |b| {
        b.iter(|| {
            cache.get_or_sign(
                "up\0agent-1\0acme\0\0agent,",
                Duration::from_secs(30),
                || signer.sign(&claims),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
