//! Acting as the caller toward an upstream (`inject.token_exchange`),
//! against a real authorization server: oidc-provider (npm) with the RFC
//! 8693 token-exchange and the on-behalf-of `jwt-bearer` grants registered
//! through its extension API (`tests/peers/oauth_as.cjs`). The agent gets
//! its access token from the server; the gateway validates it against the
//! server's JWKS, exchanges it for the upstream's, and the upstream sees
//! only the exchanged token — one credential, never the agent's.

mod support;

use serde_json::{json, Value};
use support::oauth_server::{AuthServer, GATEWAY_SECRET};
use support::*;

/// Callers' JWTs from the server; `crm` exchanged for itself with
/// `exchange` (YAML of `token_exchange`'s fields after the endpoint).
fn config(auth: &AuthServer, recorder: &str, exchange: &str, routes: &str) -> String {
    format!(
        r#"listeners:
  - {{ name: main, address: "{{listen}}" }}
admin: {{ address: "{{admin}}" }}
tenants: [acme]
identity:
  audience: "urn:sluice:gateway"
  api_keys:
    - {{ id: bot, sha256: "{bot}", subject: bot, tenants: [acme], roles: [agent] }}
  jwt:
    - {{ issuer: "{issuer}", jwks_url: "{issuer}/jwks", algorithms: [RS256] }}
roles:
  - {{ name: agent, allow: ["tools:crm/*:call"] }}
upstreams:
  - name: crm
    url: "{recorder}"
    inject:
      token_exchange:
        token_endpoint: "{issuer}/token"
        client_id: sluice-gateway
        client_secret: {{ env: SLUICE_TEST_EXCHANGE_SECRET }}
{exchange}
{routes}"#,
        issuer = auth.url(""),
        bot = sluice_gateway::identity::hash_key("bot-key"),
    )
}

/// `crm` served on `/mcp` as it is.
const PLAIN_ROUTE: &str = "routes:\n  - { name: crm, path: /mcp, upstream: crm }\n";

/// A stateless tools/call as `bearer`; the JSON-RPC answer and status.
async fn call(client: &reqwest::Client, gw: &Gateway, bearer: &str, id: u64) -> (u16, Value) {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "lookup", "arguments": {"q": id},
                   "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let auth = format!("Bearer {bearer}");
    let (status, _, text) = post(
        client,
        &gw.url("/mcp"),
        body.to_string(),
        &[
            ("authorization", &auth),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "lookup"),
        ],
    )
    .await;
    (status, rpc_json(&text))
}

/// The claims of a JWT (unverified: the test reads what the upstream got).
fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_the_callers_exchanged_token_cached_and_never_the_original() {
    let auth = AuthServer::start(&[("REFUSE_SUBJECT", "nobody")]).await;
    let (addr, rec) = recording_upstream().await;
    let yaml = config(
        &auth,
        &format!("http://{addr}/mcp"),
        "        audience: crm-api\n        resource: \"https://crm.example/\"\n        scopes: [crm.read, crm.write]",
    PLAIN_ROUTE,
);
    let gw =
        Gateway::start_with_env(&yaml, &[("SLUICE_TEST_EXCHANGE_SECRET", GATEWAY_SECRET)]).await;
    let client = reqwest::Client::new();
    let token = auth.agent_token().await;

    // Eight calls at once: one exchange, the rest wait for it.
    let calls = (1..=8).map(|i| call(&client, &gw, &token, i));
    for (status, v) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"]["content"][0]["text"], "recorded", "{v}");
    }
    let stats = auth.stats().await;
    assert_eq!(
        stats["exchanges"], 1,
        "one exchange in flight per key: {stats}"
    );
    assert_eq!(stats["last"]["audience"], "crm-api", "{stats}");
    assert_eq!(stats["last"]["resource"], "https://crm.example/", "{stats}");
    assert_eq!(stats["last"]["scope"], "crm.read crm.write", "{stats}");
    assert_eq!(stats["last"]["client"], "sluice-gateway", "{stats}");

    // What the upstream saw: exactly one credential, the exchanged token
    // (for it, of the caller, naming the gateway as actor), never the
    // agent's own.
    let seen = rec.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 8);
    for h in &seen {
        let values: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(values.len(), 1, "one credential: {h:?}");
        let sent = values[0].to_str().expect("ascii");
        let jwt = sent.strip_prefix("Bearer ").expect("bearer");
        assert_ne!(jwt, token, "the caller's token never passes");
        let c = claims(jwt);
        assert_eq!(c["aud"], "crm-api", "{c}");
        assert_eq!(c["sub"], "agent", "{c}");
        assert_eq!(c["act"]["sub"], "sluice-gateway", "{c}");
    }
    assert_eq!(
        gw.metric(r#"sluice_token_exchanges_total{outcome="exchanged",upstream="crm"}"#)
            .await,
        1.0
    );
    assert_eq!(
        gw.metric(r#"sluice_token_exchanges_total{outcome="cached",upstream="crm"}"#)
            .await,
        7.0
    );
    // Nothing secret in the gateway's log.
    let log = gw.log();
    for secret in [GATEWAY_SECRET, token.as_str()] {
        assert!(!log.contains(secret), "a secret in the log");
    }

    // An API key cannot be exchanged: refused before the upstream, with why.
    let (status, v) = call(&client, &gw, "bot-key", 20).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["id"], 20, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("API key cannot be exchanged")),
        "{v}"
    );
    assert_eq!(
        rec.seen.lock().expect("lock").len(),
        8,
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_outages_of_the_identity_provider_are_clear_errors_that_leak_nothing() {
    // The server refuses to exchange the agent's tokens.
    let auth = AuthServer::start(&[("REFUSE_SUBJECT", "agent")]).await;
    let (addr, rec) = recording_upstream().await;
    let yaml = config(
        &auth,
        &format!("http://{addr}/mcp"),
        "        audience: crm-api",
        PLAIN_ROUTE,
    );
    let gw =
        Gateway::start_with_env(&yaml, &[("SLUICE_TEST_EXCHANGE_SECRET", GATEWAY_SECRET)]).await;
    let client = reqwest::Client::new();
    let token = auth.agent_token().await;
    let (status, v) = call(&client, &gw, &token, 1).await;
    assert_eq!(status, 403, "{v}");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("refused") && msg.contains("invalid_grant"),
        "{v}"
    );
    assert!(
        !msg.contains("may not be exchanged"),
        "the provider's description is not repeated: {v}"
    );
    assert_eq!(v["id"], 1);

    // A wrong client secret: the provider says invalid_client.
    let wrong = config(
        &auth,
        &format!("http://{addr}/mcp"),
        "        audience: crm-api",
        PLAIN_ROUTE,
    );
    let gw2 =
        Gateway::start_with_env(&wrong, &[("SLUICE_TEST_EXCHANGE_SECRET", "not-the-secret")]).await;
    let (status, v) = call(&client, &gw2, &token, 2).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid_client")),
        "{v}"
    );

    // The provider gone: 502, the reason named, nothing sent upstream.
    drop(auth);
    let (status, v) = call(&client, &gw, &token, 3).await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be reached")),
        "{v}"
    );
    assert!(rec.seen.lock().expect("lock").is_empty());
    for g in [&gw, &gw2] {
        assert!(!g.log().contains(GATEWAY_SECRET) && !g.log().contains(&token));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_behalf_of_form_and_client_secret_post_work_and_a_token_is_exchanged_again_when_it_expires(
) {
    // Tokens live 2 s; the gateway exchanges again 1 s before expiry.
    let auth = AuthServer::start(&[("GATEWAY_AUTH", "client_secret_post"), ("TTL", "2")]).await;
    let (addr, rec) = recording_upstream().await;
    let yaml = config(
        &auth,
        &format!("http://{addr}/mcp"),
        "        client_auth: post\n        grant: jwt_bearer\n        scopes: [\"api://crm/.default\"]\n        refresh_before_s: 1",
    PLAIN_ROUTE,
);
    let gw =
        Gateway::start_with_env(&yaml, &[("SLUICE_TEST_EXCHANGE_SECRET", GATEWAY_SECRET)]).await;
    let client = reqwest::Client::new();
    let token = auth.agent_token().await;
    let (status, v) = call(&client, &gw, &token, 1).await;
    assert_eq!(status, 200, "{v}");
    let stats = auth.stats().await;
    assert_eq!(stats["last"]["grant"], "jwt-bearer", "{stats}");
    assert_eq!(stats["last"]["scope"], "api://crm/.default", "{stats}");
    // Once the kept token is due for renewal, the next call exchanges again.
    let mut n = 1;
    eventually("a fresh exchange after the token's life", async || {
        n += 1;
        let (status, _) = call(&client, &gw, &token, n).await;
        assert_eq!(status, 200);
        auth.stats().await["exchanges"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let seen = rec.seen.lock().expect("lock").clone();
    let first = seen[0]["authorization"].to_str().expect("ascii").to_owned();
    let last = seen[seen.len() - 1]["authorization"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(first, last, "the renewed token is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_server_source_is_called_with_the_callers_exchanged_token() {
    let auth = AuthServer::start(&[]).await;
    let sdk = support::peers::SdkServer::start_with_env(&[("SDK_WHOAMI", "1")]).await;
    let yaml = config(
        &auth,
        &format!("http://127.0.0.1:{}/mcp", sdk.port),
        "        audience: crm-api",
        "routes:\n  - { name: fed, path: /fed, server: fed }\nservers:\n  - { name: fed, sources: [{ upstream: crm, prefix: \"\" }] }\n",
    );
    let gw =
        Gateway::start_with_env(&yaml, &[("SLUICE_TEST_EXCHANGE_SECRET", GATEWAY_SECRET)]).await;
    let token = auth.agent_token().await;
    let v = stateless_rpc(
        &gw.url("/fed"),
        Some(&token),
        (
            "tools/call",
            json!(7),
            json!({"name": "whoami", "arguments": {}}),
        ),
    )
    .await;
    assert_eq!(v["id"], 7, "{v}");
    let seen = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    let jwt = seen
        .strip_prefix("Bearer ")
        .expect("the source got a bearer token");
    assert_ne!(jwt, token, "the caller's token never passes");
    let c = claims(jwt);
    assert_eq!(c["aud"], "crm-api", "{c}");
    assert_eq!(c["sub"], "agent", "{c}");
    assert_eq!(sdk.ran(), vec![json!({"tool": "whoami"})]);
    assert!(auth.stats().await["exchanges"].as_u64().unwrap_or(0) >= 1);
}
