//! Tests of JWT verification (every algorithm, every rejection reason), JWKS
//! caching and URL refresh, and the `Authenticator` front door.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::test_keys::{b64, hs256_token, jwks, now, TestSigner};
use super::*;

const AUD: &str = "https://gw.example/mcp";
const IDP: &str = "https://idp.example";
const HS_ISS: &str = "https://hs.example";
const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256";

struct Fixture {
    verifier: JwtVerifier,
    ec: TestSigner,
    ed: TestSigner,
    hs: TestSigner,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let ec = TestSigner::ec("ec-1");
        let ed = TestSigner::ed("ed-1");
        let hs = TestSigner::hmac(HS_SECRET);
        let dir = tempfile::tempdir().expect("ok");
        let path = dir.path().join("idp.jwks.json");
        std::fs::write(&path, jwks(&[TestSigner::rsa(), &ec, &ed])).expect("ok");
        let verifier = JwtVerifier::new(vec![
            IssuerConfig::new(IDP, vec![AUD.into()], KeySource::JwksFile(path)),
            IssuerConfig::new(
                HS_ISS,
                vec![AUD.into()],
                KeySource::Hs256Secret(HS_SECRET.to_vec()),
            ),
        ])
        .expect("ok");
        Fixture {
            verifier,
            ec,
            ed,
            hs,
            _dir: dir,
        }
    }

    /// (signer, its issuer) for every algorithm.
    fn signers(&self) -> Vec<(&TestSigner, &'static str)> {
        vec![
            (TestSigner::rsa(), IDP),
            (&self.ec, IDP),
            (&self.ed, IDP),
            (&self.hs, HS_ISS),
        ]
    }
}

fn claims(iss: &str) -> Value {
    let t = now();
    json!({
        "iss": iss, "sub": "alice", "aud": AUD,
        "iat": t, "nbf": t - 5, "exp": t + 300,
        "tenant": "acme", "roles": ["reader", "writer"],
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("ok").remove(key);
    v
}

/// Flip one character in the middle of segment `i` (0 header, 1 payload,
/// 2 signature); the middle so base64 padding bits cannot hide the change.
fn tamper(token: &str, i: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let seg = &mut parts[i];
    let mid = seg.len() / 2;
    let c = seg.as_bytes()[mid];
    let repl = if c == b'A' { "B" } else { "A" };
    seg.replace_range(mid..=mid, repl);
    parts.join(".")
}

#[test]
fn valid_tokens_for_every_algorithm() {
    let f = Fixture::new();
    for (signer, iss) in f.signers() {
        let p = f
            .verifier
            .verify(&signer.token(&claims(iss)))
            .unwrap_or_else(|e| panic!("{}: {e:?}", signer.alg()));
        assert_eq!(p.subject, "alice");
        assert_eq!(p.tenants, vec!["acme".to_string()]);
        assert_eq!(p.roles, vec!["reader".to_string(), "writer".to_string()]);
        assert_eq!(
            p.method,
            AuthMethod::Jwt {
                issuer: iss.to_string()
            }
        );
    }
}

#[test]
fn claim_failures_for_every_algorithm() {
    let f = Fixture::new();
    let t = now();
    for (signer, iss) in f.signers() {
        let alg = signer.alg();
        let check = |c: Value, want: Result<(), AuthError>, what: &str| {
            let got = f.verifier.verify(&signer.token(&c)).map(|_| ());
            assert_eq!(got, want, "{alg}: {what}");
        };
        let base = claims(iss);
        check(
            with(base.clone(), "aud", json!("https://other.example")),
            Err(AuthError::WrongAudience),
            "wrong aud",
        );
        check(
            with(base.clone(), "aud", json!(["https://other.example", AUD])),
            Ok(()),
            "aud array containing ours",
        );
        check(
            with(base.clone(), "exp", json!(t - 120)),
            Err(AuthError::Expired),
            "expired",
        );
        check(
            with(base.clone(), "exp", json!(t - 10)),
            Ok(()),
            "expired within leeway",
        );
        check(
            with(base.clone(), "nbf", json!(t + 120)),
            Err(AuthError::NotYetValid),
            "nbf beyond leeway",
        );
        check(
            with(base.clone(), "nbf", json!(t + 10)),
            Ok(()),
            "nbf within leeway",
        );
        check(
            with(base.clone(), "iss", json!("https://evil.example")),
            Err(AuthError::UnknownIssuer),
            "wrong issuer",
        );
        check(
            without(base.clone(), "iss"),
            Err(AuthError::UnknownIssuer),
            "no issuer",
        );
        check(
            without(base.clone(), "sub"),
            Err(AuthError::MissingClaim("sub")),
            "no sub",
        );
        check(
            with(base.clone(), "sub", json!("")),
            Err(AuthError::MissingClaim("sub")),
            "empty sub",
        );
        check(
            without(base.clone(), "aud"),
            Err(AuthError::MissingClaim("aud")),
            "no aud",
        );
        check(
            without(base.clone(), "exp"),
            Err(AuthError::MissingClaim("exp")),
            "no exp",
        );

        let good = signer.token(&base);
        assert_eq!(
            f.verifier.verify(&tamper(&good, 2)),
            Err(AuthError::BadSignature),
            "{alg}: tampered signature"
        );
        // Swap in a different (well-formed) payload under the old signature.
        let (head, rest) = good.split_once('.').expect("jws");
        let (_, sig) = rest.split_once('.').expect("jws");
        let forged = with(base.clone(), "sub", json!("mallory"));
        let forged = format!("{head}.{}.{sig}", b64(forged.to_string()));
        assert_eq!(
            f.verifier.verify(&forged),
            Err(AuthError::BadSignature),
            "{alg}: changed payload"
        );
        // Bit-flipped payload: refused one way or another.
        assert!(f.verifier.verify(&tamper(&good, 1)).is_err());
    }
}

#[test]
fn unknown_kid_fails() {
    let f = Fixture::new();
    let stranger = TestSigner::ed("ed-2");
    assert_eq!(
        f.verifier.verify(&stranger.token(&claims(IDP))),
        Err(AuthError::UnknownKey)
    );
    // A known kid with a different key's signature is a bad signature.
    let impostor = TestSigner::ed("ed-1");
    assert_eq!(
        f.verifier.verify(&impostor.token(&claims(IDP))),
        Err(AuthError::BadSignature)
    );
    // No kid and several candidate keys: never guess.
    let h = json!({"alg": "EdDSA"});
    assert!(
        f.verifier
            .verify(&f.ed.token_with_header(&h, &claims(IDP)))
            .is_ok(),
        "exactly one Ed25519 key: kid may be omitted"
    );
    let two_ed = TestSigner::ed("ed-x");
    let dir = tempfile::tempdir().expect("ok");
    let path = dir.path().join("j.json");
    std::fs::write(&path, jwks(&[&f.ed, &two_ed])).expect("ok");
    let v = JwtVerifier::new(vec![IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        KeySource::JwksFile(path),
    )])
    .expect("ok");
    assert_eq!(
        v.verify(&f.ed.token_with_header(&h, &claims(IDP))),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new();
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "none", "kid": "ed-1"}),
    ] {
        let token = format!(
            "{}.{}.",
            b64(header.to_string()),
            b64(claims(IDP).to_string())
        );
        assert_eq!(f.verifier.verify(&token), Err(AuthError::BadAlgorithm));
        // Also with some garbage signature.
        assert_eq!(
            f.verifier.verify(&format!("{token}c2ln")),
            Err(AuthError::BadAlgorithm)
        );
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    let f = Fixture::new();
    let rsa = TestSigner::rsa();
    // The classic attack: HS256 "signed" with the issuer's RSA public key.
    let secrets = [
        rsa.public_bytes(),
        rsa.jwk()["n"].as_str().expect("ok").as_bytes().to_vec(),
    ];
    for secret in secrets {
        let token = hs256_token(
            &secret,
            &json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}),
            &claims(IDP),
        );
        assert_eq!(f.verifier.verify(&token), Err(AuthError::BadAlgorithm));
    }
    // The same with the EC and Ed25519 public keys.
    for s in [&f.ec, &f.ed] {
        let token = hs256_token(
            &s.public_bytes(),
            &json!({"alg": "HS256", "kid": s.kid}),
            &claims(IDP),
        );
        assert_eq!(f.verifier.verify(&token), Err(AuthError::BadAlgorithm));
    }
    // An asymmetric alg against the HMAC issuer is refused too.
    let token = f.ed.token(&claims(HS_ISS));
    assert_eq!(f.verifier.verify(&token), Err(AuthError::BadAlgorithm));
    // Header alg that does not fit the kid's key type: no such key.
    let token =
        f.ed.token_with_header(&json!({"alg": "RS256", "kid": "ed-1"}), &claims(IDP));
    assert_eq!(f.verifier.verify(&token), Err(AuthError::UnknownKey));

    // And the config cannot ask for it.
    let bad = IssuerConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::HS256],
        ..IssuerConfig::new(
            IDP,
            vec![AUD.into()],
            KeySource::JwksUrl("https://idp.example/jwks".into()),
        )
    };
    assert!(JwtVerifier::new(vec![bad]).is_err());
    let bad = IssuerConfig {
        algorithms: vec![Algorithm::RS256],
        ..IssuerConfig::new(
            HS_ISS,
            vec![AUD.into()],
            KeySource::Hs256Secret(HS_SECRET.to_vec()),
        )
    };
    assert!(JwtVerifier::new(vec![bad]).is_err());
}

#[test]
fn algorithm_allow_list_is_per_issuer() {
    let ed = TestSigner::ed("ed-1");
    let dir = tempfile::tempdir().expect("ok");
    let path = dir.path().join("j.json");
    std::fs::write(&path, jwks(&[TestSigner::rsa(), &ed])).expect("ok");
    let v = JwtVerifier::new(vec![IssuerConfig {
        algorithms: vec![Algorithm::RS256],
        ..IssuerConfig::new(IDP, vec![AUD.into()], KeySource::JwksFile(path))
    }])
    .expect("ok");
    assert!(v.verify(&TestSigner::rsa().token(&claims(IDP))).is_ok());
    assert_eq!(
        v.verify(&ed.token(&claims(IDP))),
        Err(AuthError::BadAlgorithm)
    );
}

#[test]
fn malformed_tokens() {
    let f = Fixture::new();
    let good = f.ed.token(&claims(IDP));
    let long = format!("{good}{}", "A".repeat(20_000));
    for bad in [
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.???.sig",
        &format!("{}.{}.x", b64("[]"), b64("{}")),
        &format!("{}.{}.x", b64(r#"{"alg":"EdDSA"}"#), b64("not json")),
        &long,
    ] {
        assert_eq!(
            f.verifier.verify(bad),
            Err(AuthError::Malformed),
            "{bad:.40}"
        );
    }
    // `crit` extensions we do not implement must be refused.
    let token = f.ed.token_with_header(
        &json!({"alg": "EdDSA", "kid": "ed-1", "crit": ["b64"], "b64": false}),
        &claims(IDP),
    );
    assert_eq!(f.verifier.verify(&token), Err(AuthError::Malformed));
    // Tampered header: decodes to something else or to garbage.
    assert!(f.verifier.verify(&tamper(&good, 0)).is_err());
}

#[test]
fn tenant_and_role_claim_shapes() {
    let ed = TestSigner::ed("ed-1");
    let dir = tempfile::tempdir().expect("ok");
    let path = dir.path().join("j.json");
    std::fs::write(&path, jwks(&[&ed])).expect("ok");
    let mk = |tenant_claim: &str, roles_claim: &str| {
        JwtVerifier::new(vec![IssuerConfig {
            tenant_claim: tenant_claim.into(),
            roles_claim: roles_claim.into(),
            ..IssuerConfig::new(IDP, vec![AUD.into()], KeySource::JwksFile(path.clone()))
        }])
        .expect("ok")
    };
    let c = json!({
        "iss": IDP, "sub": "bob", "aud": [AUD], "exp": now() + 60,
        "tenants": ["t1", "t2", 7], "scope": "tools:read  tools:call",
        "org": {"id": "o-1", "roles": "admin"},
    });
    let token = ed.token(&c);

    let p = mk("tenants", "scope").verify(&token).expect("ok");
    assert_eq!(p.tenants, vec!["t1", "t2"]);
    assert_eq!(p.roles, vec!["tools:read", "tools:call"]);

    let p = mk("/org/id", "/org/roles").verify(&token).expect("ok");
    assert_eq!(p.tenants, vec!["o-1"]);
    assert_eq!(p.roles, vec!["admin"]);

    // Absent claims are empty lists, not errors.
    let p = mk("tenant", "roles").verify(&token).expect("ok");
    assert!(p.tenants.is_empty() && p.roles.is_empty());
}

#[test]
fn config_is_validated() {
    let url = |u: &str| KeySource::JwksUrl(u.into());
    let ok = |c: IssuerConfig| JwtVerifier::new(vec![c]).is_ok();
    assert!(ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("https://idp.example/jwks")
    )));
    assert!(ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("http://127.0.0.1:9/jwks")
    )));
    assert!(ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("http://localhost/jwks")
    )));
    assert!(ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("http://[::1]:8/jwks")
    )));
    assert!(!ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("http://idp.example/jwks")
    )));
    assert!(!ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        url("not a url")
    )));
    assert!(!ok(IssuerConfig::new(
        IDP,
        vec![],
        url("https://idp.example/jwks")
    )));
    assert!(!ok(IssuerConfig::new(
        "",
        vec![AUD.into()],
        url("https://idp.example/jwks")
    )));
    assert!(!ok(IssuerConfig::new(
        HS_ISS,
        vec![AUD.into()],
        KeySource::Hs256Secret(b"short".to_vec())
    )));
    assert!(!ok(IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        KeySource::JwksFile("/nonexistent/jwks.json".into())
    )));
    assert!(!ok(IssuerConfig {
        leeway_s: u64::MAX,
        ..IssuerConfig::new(IDP, vec![AUD.into()], url("https://idp.example/jwks"))
    }));
    let twice = IssuerConfig::new(IDP, vec![AUD.into()], url("https://idp.example/jwks"));
    assert!(JwtVerifier::new(vec![twice.clone(), twice]).is_err());
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let secret = "super-secret-hmac-value-0123456789abcdef";
    let cfg = IssuerConfig::new(
        HS_ISS,
        vec![AUD.into()],
        KeySource::Hs256Secret(secret.as_bytes().to_vec()),
    );
    let d = format!("{cfg:?}");
    assert!(!d.contains(secret) && !d.contains(&format!("{:?}", secret.as_bytes())));
    let v = JwtVerifier::new(vec![cfg]).expect("ok");
    let d = format!("{v:?} {:?}", v.cache(HS_ISS).expect("ok"));
    assert!(!d.contains(secret) && !d.contains("115, 117, 112"), "{d}");
    // Errors carry labels, never token contents.
    let e = v
        .verify("eyJzZWNyZXQiOiJ4In0.eyJ4IjoxfQ.c2ln")
        .expect_err("should fail");
    assert!(!e.to_string().contains("eyJ"));
}

#[test]
fn jwks_parsing_skips_unusable_keys() {
    let ed = TestSigner::ed("ed-1");
    let doc = json!({"keys": [
        {"kty": "oct", "kid": "sym", "k": b64("0123456789abcdef0123456789abcdef")},
        {"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP",
         "n": TestSigner::rsa().jwk()["n"], "e": "AQAB"},
        {"kty": "EC", "kid": "k1", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "XYZ", "kid": "weird"},
        ed.jwk(),
    ]});
    let set = KeySet::from_jwks_json(doc.to_string().as_bytes()).expect("ok");
    assert_eq!(set.len(), 1);
    assert_eq!(set.jwks().keys[0].common.key_id.as_deref(), Some("ed-1"));
    // An `alg` pin on the JWK is honoured.
    let mut pinned = ed.jwk();
    pinned["alg"] = json!("ES256");
    assert!(KeySet::from_jwks_json(json!({"keys": [pinned]}).to_string().as_bytes()).is_err());

    assert!(KeySet::from_jwks_json(b"{\"keys\": []}").is_err());
    assert!(KeySet::from_jwks_json(b"not json").is_err());
    assert!(
        KeySet::from_jwks_json(json!({"keys": [doc["keys"][0]]}).to_string().as_bytes()).is_err()
    );
}

// ---- Authenticator -------------------------------------------------------

#[test]
fn authenticator_routes_credentials() {
    let f = Fixture::new();
    let api_keys = ApiKeys::new(vec![ApiKeyEntry {
        id: "ci".into(),
        sha256_hex: hash_key("sk-live-123"),
        subject: "ci-bot".into(),
        tenants: vec!["acme".into()],
        roles: vec!["deployer".into()],
    }])
    .expect("ok");
    let jwt = f.ed.token(&claims(IDP));
    let Fixture { verifier, _dir, .. } = f;
    let auth = Authenticator {
        api_keys,
        jwt: verifier,
    };
    let bearer = |v: &str| format!("Bearer {v}").into_bytes();

    let p = auth.authenticate(Some(&bearer(&jwt)), None).expect("ok");
    assert_eq!(p.subject, "alice");
    let p = auth
        .authenticate(Some(format!("bearer   {jwt}").as_bytes()), None)
        .expect("ok");
    assert_eq!(p.subject, "alice");

    let p = auth
        .authenticate(Some(&bearer("sk-live-123")), None)
        .expect("ok");
    assert_eq!(p.method, AuthMethod::ApiKey { id: "ci".into() });
    let p = auth.authenticate(None, Some(b"sk-live-123")).expect("ok");
    assert_eq!(p.subject, "ci-bot");

    assert_eq!(auth.authenticate(None, None), Err(AuthError::Missing));
    assert_eq!(
        auth.authenticate(None, Some(b"sk-wrong")),
        Err(AuthError::InvalidApiKey)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer("sk-wrong")), None),
        Err(AuthError::InvalidApiKey)
    );
    assert_eq!(
        auth.authenticate(Some(b"Basic YTpi"), Some(b"sk-live-123")),
        Err(AuthError::UnsupportedScheme)
    );
    assert_eq!(
        auth.authenticate(Some(b"Bearer"), None),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.authenticate(Some(b"Bearer a b"), None),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.authenticate(Some(b"Bearer \xff\xfe"), None),
        Err(AuthError::Malformed)
    );
    assert_eq!(
        auth.authenticate(Some(&bearer(&tamper(&jwt, 2))), None),
        Err(AuthError::BadSignature)
    );
    // Authorization wins over X-Api-Key; no fallback on failure.
    assert_eq!(
        auth.authenticate(Some(&bearer("sk-wrong")), Some(b"sk-live-123")),
        Err(AuthError::InvalidApiKey)
    );
}

#[test]
fn reasons_are_static_labels() {
    assert_eq!(AuthError::Expired.reason(), "expired");
    assert_eq!(AuthError::MissingClaim("sub").reason(), "missing_claim");
    assert_eq!(AuthError::Missing.bearer_error(), None);
    assert_eq!(
        AuthError::BadSignature.bearer_error(),
        Some("invalid_token")
    );
}

// ---- JWKS URL refresh ----------------------------------------------------

struct JwksServer {
    body: Mutex<String>,
    status: AtomicU16,
    hits: AtomicUsize,
}

async fn serve_jwks(state: Arc<JwksServer>) -> String {
    use axum::extract::State;
    use axum::http::StatusCode;
    async fn handler(State(s): State<Arc<JwksServer>>) -> (StatusCode, String) {
        s.hits.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(s.status.load(Ordering::SeqCst)).expect("ok");
        (status, s.body.lock().expect("ok").clone())
    }
    let app = axum::Router::new()
        .route("/jwks", axum::routing::get(handler))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("ok");
    let addr = listener.local_addr().expect("ok");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("ok") });
    format!("http://{addr}/jwks")
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn jwks_url_refresh_keeps_last_good_and_refreshes_early_on_unknown_kid() {
    let a = TestSigner::ed("key-a");
    let b = TestSigner::ed("key-b");
    let server = Arc::new(JwksServer {
        body: Mutex::new(jwks(&[&a])),
        status: AtomicU16::new(200),
        hits: AtomicUsize::new(0),
    });
    let url = serve_jwks(server.clone()).await;
    let verifier = JwtVerifier::new(vec![IssuerConfig::new(
        IDP,
        vec![AUD.into()],
        KeySource::JwksUrl(url.clone()),
    )])
    .expect("ok");
    let client = jwks::http_client().expect("client");
    let cache = verifier.cache(IDP).expect("ok").clone();

    // Before any fetch there are no keys.
    assert_eq!(
        verifier.verify(&a.token(&claims(IDP))),
        Err(AuthError::KeysUnavailable)
    );

    // One-shot refresh, then failures keep the last good set.
    verifier.refresh_all(&client).await.expect("ok");
    assert!(verifier.verify(&a.token(&claims(IDP))).is_ok());
    server.status.store(500, Ordering::SeqCst);
    assert!(cache.refresh_url(&client, &url).await.is_err());
    server.status.store(200, Ordering::SeqCst);
    *server.body.lock().expect("ok") = "{\"keys\": \"nope\"}".into();
    assert!(cache.refresh_url(&client, &url).await.is_err());
    *server.body.lock().expect("ok") = json!({"keys": []}).to_string();
    assert!(cache.refresh_url(&client, &url).await.is_err());
    assert!(verifier.verify(&a.token(&claims(IDP))).is_ok());

    // Background refresher: long period, 1 s early-refresh gap.
    *server.body.lock().expect("ok") = jwks(&[&a]);
    let gap = Duration::from_secs(1);
    let schedule = RefreshSchedule {
        interval: Duration::from_secs(3600),
        early_min_gap: gap,
    };
    // Start from empty so the refresher fetches at once.
    cache.store(KeySet::empty());
    let hits0 = server.hits.load(Ordering::SeqCst);
    let task = tokio::spawn(cache.refresher(client.clone(), url.clone(), schedule));
    eventually("initial fetch", || !cache.current().is_empty()).await;
    let t_first = tokio::time::Instant::now();
    assert_eq!(server.hits.load(Ordering::SeqCst), hits0 + 1);

    // The IdP rotates in key B; a token with kid B fails once and asks
    // for an early refresh, which happens no sooner than `gap` after the
    // last fetch.
    *server.body.lock().expect("ok") = jwks(&[&a, &b]);
    let token_b = b.token(&claims(IDP));
    assert_eq!(verifier.verify(&token_b), Err(AuthError::UnknownKey));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // `t_*` are observed just after a fetch, so allow some slack.
    let slack = Duration::from_millis(100);
    if t_first.elapsed() + slack < gap {
        assert_eq!(server.hits.load(Ordering::SeqCst), hits0 + 1, "rate limit");
    }
    eventually("early refresh", || verifier.verify(&token_b).is_ok()).await;
    assert!(t_first.elapsed() + slack >= gap);
    let t_second = tokio::time::Instant::now();
    assert_eq!(server.hits.load(Ordering::SeqCst), hits0 + 2);

    // A flood of unknown kids causes at most one fetch per gap.
    let stranger = TestSigner::ed("key-zzz").token(&claims(IDP));
    for _ in 0..50 {
        assert_eq!(verifier.verify(&stranger), Err(AuthError::UnknownKey));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if t_second.elapsed() + slack < gap {
        assert_eq!(server.hits.load(Ordering::SeqCst), hits0 + 2, "rate limit");
    }
    eventually("rate-limited refresh", || {
        server.hits.load(Ordering::SeqCst) == hits0 + 3
    })
    .await;
    assert!(t_second.elapsed() + slack >= gap);
    for _ in 0..50 {
        let _ = verifier.verify(&stranger);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.hits.load(Ordering::SeqCst) <= hits0 + 4);

    // Dropping the verifier (e.g. after a reload) ends the refresher.
    drop(cache);
    drop(verifier);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("refresher should stop once its cache is gone")
        .expect("ok");
}

#[tokio::test]
async fn reload_inherits_keys_and_refreshers_cover_url_issuers() {
    let a = TestSigner::ed("key-a");
    let server = Arc::new(JwksServer {
        body: Mutex::new(jwks(&[&a])),
        status: AtomicU16::new(200),
        hits: AtomicUsize::new(0),
    });
    let url = serve_jwks(server.clone()).await;
    let cfg = IssuerConfig::new(IDP, vec![AUD.into()], KeySource::JwksUrl(url.clone()));
    let client = jwks::http_client().expect("client");

    let old = JwtVerifier::new(vec![cfg.clone()]).expect("ok");
    let tasks = old.refreshers(&client);
    assert_eq!(tasks.len(), 1);
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let token = a.token(&claims(IDP));
    eventually("first fetch", || old.verify(&token).is_ok()).await;

    // Reload with the same issuer: keys carry over before any fetch.
    let new = JwtVerifier::new(vec![cfg]).expect("ok");
    assert_eq!(new.verify(&token), Err(AuthError::KeysUnavailable));
    new.inherit_keys(&old);
    assert!(new.verify(&token).is_ok());

    drop(old);
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("ok")
            .expect("ok");
    }
}

#[test]
fn verified_tokens_are_reused_only_while_their_keys_stand() {
    let f = Fixture::new();
    let token = f.ed.token(&claims(IDP));
    let first = f.verifier.verify(&token).expect("valid");
    assert_eq!(f.verifier.verify(&token), Ok(first.clone()), "served again");
    // A one-byte change is another token: checked in full, refused.
    assert_eq!(
        f.verifier.verify(&tamper(&token, 2)),
        Err(AuthError::BadSignature)
    );
    // The issuer's keys change (a rotation dropped the key): the cached
    // result is gone with them.
    let cache = f.verifier.cache(IDP).expect("issuer");
    cache.store(KeySet::empty());
    assert_eq!(f.verifier.verify(&token), Err(AuthError::KeysUnavailable));
    // An expired token is never served from the cache.
    let old = with(claims(IDP), "exp", json!(1));
    assert_eq!(
        f.verifier
            .verify(&f.hs.token(&with(old, "iss", json!(HS_ISS)))),
        Err(AuthError::Expired)
    );
}

#[test]
fn bearer_whitespace_check_agrees_with_unicode_whitespace() {
    for b in 0u8..=127 {
        let token = format!("abc{}def", b as char);
        assert_eq!(
            super::has_whitespace(&token),
            (b as char).is_whitespace(),
            "byte {b:#04x}"
        );
    }
    for (token, ws) in [
        ("ab\u{a0}cd", true),
        ("ab\u{2003}cd", true),
        ("ab\u{e9}cd", false),
    ] {
        assert_eq!(super::has_whitespace(token), ws, "{token:?}");
    }
}
