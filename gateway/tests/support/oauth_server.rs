//! The authorization server for tests (`tests/peers/oauth_as.cjs`):
//! oidc-provider from npm on a free port of 127.0.0.1, killed when dropped.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{answers_ok, eventually, free_port, peers, test_peer};

/// The gateway's client secret at the server (`sluice-gateway`).
pub const GATEWAY_SECRET: &str = "gw-exchange-secret-7f1c";

/// The authorization server on a free port; killed when dropped.
pub struct AuthServer {
    child: Child,
    pub port: u16,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl AuthServer {
    pub async fn start(env: &[(&str, &str)]) -> AuthServer {
        Self::start_on(free_port(), env).await
    }

    /// On `port` (chosen before whoever must name the issuer starts).
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> AuthServer {
        let child = Command::new(super::peers::node22())
            .arg(test_peer("oauth_as.cjs"))
            .env("NODE_PATH", peers().join("node_modules"))
            .env("PORT", port.to_string())
            .env("GATEWAY_SECRET", GATEWAY_SECRET)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node oauth_as.cjs");
        let server = AuthServer { child, port };
        let client = reqwest::Client::new();
        let url = server.url("/.well-known/openid-configuration");
        eventually("the authorization server", async || {
            answers_ok(&client, &url).await
        })
        .await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The agent's access token for the gateway (client credentials).
    pub async fn agent_token(&self) -> String {
        let r: Value = reqwest::Client::new()
            .post(self.url("/token"))
            .basic_auth("agent", Some("agent-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=mcp&resource=urn%3Asluice%3Agateway")
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        r["access_token"].as_str().expect("access token").to_owned()
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(self.url("/stats"))
            .await
            .expect("stats")
            .json()
            .await
            .expect("stats json")
    }
}
